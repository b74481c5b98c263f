"""Expert grading: the queue, grades and "cannot judge" answers, progress and sessions.

Locks: every write that touches a clip's vote counts or its assignments holds that Clip row's
lock (SELECT ... FOR UPDATE) until its transaction ends. Hence the vote counts on Clip always
equal a recount of its Rating rows, and a count of a clip's live assignments read under the lock
cannot be overtaken by another expert's queue request.

Blind grading: nothing here hands an expert the votes of a clip they have not graded;
`clip_panel_for_expert` is the one place that decides when they may see them.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import (
    Q,
)
from django.utils import timezone

from annotation.access.audit import audit_record
from annotation.aggregation.retirement_service import clip_retire_if_settled
from annotation.errors import ConflictError, ServiceError
from annotation.grades import GRADES
from annotation.grading import sql as grading_sql
from annotation.grading.checks import (
    MAX_TIME_SPENT_MS,
    cannot_judge_note_check,
    cannot_judge_reason_check,
    grade_check,
    telemetry_clean,
    telemetry_merge,
    time_spent_check,
)
from annotation.grading.repeats import repeat_candidate_for_expert, repeat_submit
from annotation.models import (
    CannotJudge,
    Clip,
    ClipAssignment,
    Rating,
    RatingChange,
    RepeatRating,
    Video,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import User

T = TypeVar("T")


class NotOfferedError(ConflictError):
    """An answer to a clip the queue does not hold for this expert (retired, held for another
    expert, past the vote target or never offered): answers go only to the clip on offer."""

    # The refusal's audit event (`_answer_refused_audited`) must commit with the 409.
    rolls_back = False


class AlreadyAnsweredError(ConflictError):
    """The expert already answered this clip (a grade or "cannot judge"): `answer` is it.
    The 409 names the rating (`rating_id`) when the answer was a grade."""

    def __init__(self, message: str, *, answer: Rating | CannotJudge) -> None:
        super().__init__(message)
        self.answer = answer

    def response_body(self) -> dict[str, object]:
        body = super().response_body()
        if isinstance(self.answer, Rating):
            body["rating_id"] = self.answer.pk
        return body


# --- the queue ------------------------------------------------------------------------------


def vote_target() -> int:
    """Votes a clip needs; the queue offers it while votes + clips held for others stay below."""
    return settings.MAX_VOTES


def _assignment_ttl() -> timedelta:
    return timedelta(minutes=settings.ASSIGNMENT_MINUTES)


def clip_hidden_repeat_for_expert(*, expert: User, now: datetime) -> Clip | None:
    """Now and then a clip the expert graded long ago, offered again blinded (a hidden repeat,
    `annotation.grading.repeats`), else None. The offer is a ClipAssignment on a clip the
    expert already rated; `rating_submit` stores its answer apart, as a RepeatRating."""
    clip = repeat_candidate_for_expert(expert=expert)
    if clip is None:
        return None
    ClipAssignment.objects.bulk_create(
        [
            ClipAssignment(
                clip=clip, expert=expert, assigned_at=now, expires_at=now + _assignment_ttl()
            )
        ],
        update_conflicts=True,
        unique_fields=["clip", "expert"],
        update_fields=["assigned_at", "expires_at"],
    )
    return clip


def _repeat_pending(*, expert: User, clip_id: int) -> bool:
    """Whether this expert was offered the clip as a hidden repeat and has not answered it:
    a live hold on a clip they already rated (normal holds end when the clip is answered)."""
    now = timezone.now()
    return grading_sql.answer_state(expert_id=expert.pk, clip_id=clip_id, now=now).repeat_pending()


def clip_next_for_expert(*, expert: User, now: datetime | None = None) -> Clip | None:
    """The clip this expert should grade now, held for them for ASSIGNMENT_MINUTES; None when
    their queue is empty.

    An expert keeps getting the clip held for them until they answer it. Otherwise the queue
    offers the open clip (READY video, not retired) they have not answered with the fewest
    votes, among clips whose votes plus live assignments to other experts are below the vote
    target, and holds it for them. Takes the lock of the Clip it assigns.
    """
    now = now or timezone.now()
    outermost = not transaction.get_connection().in_atomic_block
    with transaction.atomic():
        if outermost:  # this transaction writes holds only (never a vote or an audit event)
            grading_sql.commit_without_flush()
        held = _assignment_held(expert=expert, now=now)
        if isinstance(held, Clip):
            return held
        repeat = clip_hidden_repeat_for_expert(expert=expert, now=now)
        if repeat is not None:
            return repeat
        return _clip_assign_next(expert=expert, now=now, has_stale_holds=held)


def _assignment_held(*, expert: User, now: datetime) -> Clip | bool:
    """The clip held for the expert (its hold renewed: they are still looking at it), else
    whether they have stale holds (expired, or on a clip retired or answered since)."""
    holds = grading_sql.holds_of(expert_id=expert.pk, now=now)
    for hold in holds:
        if hold.usable:
            ClipAssignment.objects.filter(pk=hold.pk).update(expires_at=now + _assignment_ttl())
            return Clip.objects.select_related("video").get(pk=hold.clip_id)
    return bool(holds)


def _clip_assign_next(*, expert: User, now: datetime, has_stale_holds: bool) -> Clip | None:
    target = vote_target()
    passed_over: list[int] = []
    while True:
        # SKIP LOCKED: a clip another expert is being assigned (or is voting on) right now is
        # passed over instead of waited for, so concurrent requests spread over clips.
        choose = partial(
            grading_sql.next_candidate,
            expert_id=expert.pk,
            now=now,
            target=target,
            passed_over=passed_over,
        )
        clip_id = choose(skip_locked=True)
        if clip_id is None:
            # Every open candidate may be locked by someone else's assignment: wait for one
            # instead of reporting an empty queue, then count its load again below.
            clip_id = choose(skip_locked=False)
        if clip_id is None:
            return None
        # The candidate query read assignments from a snapshot older than our lock; count again
        # now that we hold it (assignments of this clip are only written under this lock).
        clip = grading_sql.clip_with_holds_of_others(clip_id=clip_id, expert_id=expert.pk, now=now)
        if clip.votes_total + clip.live_holds_of_others >= target:
            passed_over.append(clip.pk)
            continue
        if has_stale_holds:  # an expert holds one clip at a time
            ClipAssignment.objects.filter(expert=expert).exclude(clip=clip).delete()
        hold = ClipAssignment(
            clip=clip, expert=expert, assigned_at=now, expires_at=now + _assignment_ttl()
        )
        # One statement: INSERT ... ON CONFLICT (clip, expert) DO UPDATE (an expired hold).
        ClipAssignment.objects.bulk_create(
            [hold],
            update_conflicts=True,
            unique_fields=["clip", "expert"],
            update_fields=["assigned_at", "expires_at"],
        )
        return clip


# --- answers --------------------------------------------------------------------------------


def _answer_offered_check(*, clip: Clip, state: grading_sql.AnswerState) -> None:
    """Refuse an answer to a clip the queue is not offering this expert. Call with the Clip
    row lock held and `state` read under it.

    Accepted: the clip held for the expert (a normal offer or a pending hidden repeat). A hold
    that lapsed while the expert looked is still honoured while nobody else's hold would push
    the clip past the vote target. Everything else is a NotOfferedError that says what to do.
    """
    if clip.retired_at is not None:
        raise NotOfferedError(
            f"clip {clip.external_id} is settled and takes no more answers; "
            "ask for your next clip (GET /api/grading/next/)"
        )
    if state.held_live:
        return
    if state.held and clip.votes_total + state.others < vote_target():
        return
    if state.others:
        raise NotOfferedError(
            f"clip {clip.external_id} is held for another expert; "
            "grade the clip your queue gives you (GET /api/grading/next/)"
        )
    raise NotOfferedError(
        f"clip {clip.external_id} is not the clip your queue offered you; "
        "grade the clip your queue gives you (GET /api/grading/next/)"
    )


def _clip_lock(clip_id: int) -> Clip:
    """Lock a clip's row for the rest of the transaction (vote counts, assignments)."""
    return Clip.objects.select_for_update().select_related("video").get(pk=clip_id)


def _clip_votes_add(clip: Clip, deltas: Mapping[str, int]) -> None:
    """Add votes to a clip's counts, and retire or reopen it as its new counts say. Call with
    the Clip row lock held, `clip` read under it."""
    if any(deltas.values()):
        counts = grading_sql.votes_add(clip_id=clip.pk, deltas=deltas)
        clip_retire_if_settled(clip=clip, counts=counts)  # same transaction, Clip lock held


def _answer_existing(
    *, expert: User, clip: Clip, state: grading_sql.AnswerState | None = None
) -> AlreadyAnsweredError | None:
    """The error to raise when the expert already answered the clip, else None."""
    if state is None:
        state = grading_sql.answer_state(expert_id=expert.pk, clip_id=clip.pk, now=timezone.now())
    if state.rating_pk is not None:
        return AlreadyAnsweredError(
            f"you already graded clip {clip.external_id}; "
            f"change your grade (rating {state.rating_pk}) instead of grading it again",
            answer=Rating.objects.get(pk=state.rating_pk),
        )
    if state.skipped:
        return AlreadyAnsweredError(
            f"you already answered clip {clip.external_id} with 'cannot judge'",
            answer=CannotJudge.objects.get(clip=clip, rater=expert),
        )
    return None


def _answer_once(*, expert: User, clip: Clip, write: Callable[[], T]) -> T:
    """Run `write` atomically (a savepoint inside an outer transaction); a concurrent duplicate
    answer becomes AlreadyAnsweredError.

    The Clip lock taken inside `write` already serialises answers to one clip; the unique
    constraints are the last guard (and the only one where locks are no-ops, as on SQLite).
    """
    try:
        with transaction.atomic():
            return write()
    except IntegrityError:
        existing = _answer_existing(expert=expert, clip=clip)
        if existing is None:
            raise
        raise existing from None


def _assignment_clear(*, expert: User, clip_id: int) -> None:
    grading_sql.hold_clear(expert_id=expert.pk, clip_id=clip_id)


def rating_submit(
    *,
    expert: User,
    clip: Clip,
    grade: str,
    time_spent_ms: int,
    telemetry: Mapping[str, object] | None,
) -> Rating:
    """Record an expert's first grade for a clip and count it, in one transaction.

    Takes the Clip row lock; retires the clip when its distribution is settled; stores the
    answer to a pending hidden repeat apart (RepeatRating). Raises AlreadyAnsweredError
    (carrying the existing answer) when the expert already graded or skipped the clip, also
    when two submits race.
    """
    grade = grade_check(grade)
    time_spent_ms = time_spent_check(time_spent_ms)
    clean_telemetry = telemetry_clean(telemetry)

    def write() -> Rating:
        locked = _clip_lock(clip.pk)
        if locked.video.status != Video.Status.READY:
            raise ServiceError(f"clip {locked.external_id} is not ready for grading")
        now = timezone.now()
        state = grading_sql.answer_state(expert_id=expert.pk, clip_id=locked.pk, now=now)
        if not state.repeat_pending():
            existing = _answer_existing(expert=expert, clip=locked, state=state)
            if existing is not None:
                raise existing
            _answer_offered_check(clip=locked, state=state)
        else:
            # A hidden repeat: stored apart, never a second vote; the counts stay as they are.
            repeat = repeat_submit(
                expert=expert, clip=locked, grade=grade, time_spent_ms=time_spent_ms
            )
            _assignment_clear(expert=expert, clip_id=locked.pk)
            original = Rating.objects.get(clip=locked, rater=expert)
            audit_record(
                action="grade_submit", user=expert, obj=original,
                detail={"grade": grade, "repeat": True},
            )  # fmt: skip
            return _as_repeat_answer(original, repeat, telemetry=clean_telemetry)
        rating = Rating.objects.create(
            clip=locked,
            rater=expert,
            grade=grade,
            time_spent_ms=time_spent_ms,
            telemetry=clean_telemetry,
        )
        RatingChange.objects.create(rating=rating, grade=grade, previous_grade="")
        _clip_votes_add(locked, {grade: 1})
        _assignment_clear(expert=expert, clip_id=locked.pk)
        audit_record(action="grade_submit", user=expert, obj=rating, detail={"grade": grade})
        return rating

    return _answer_refused_audited(
        expert=expert, clip=clip, answer="grade", run=lambda: _answer_once(
            expert=expert, clip=clip, write=write
        ),
    )  # fmt: skip


def _as_repeat_answer(
    original: Rating, repeat: RepeatRating, *, telemetry: Mapping[str, object]
) -> Rating:
    """The expert's Rating, unsaved, dressed as the answer they just gave to a hidden repeat:
    this grade, time and telemetry, and the repeat's time stamps. The answer to a repeat then
    reads like the answer to any other clip (no earlier grade, no old date); the id stays the
    Rating's, so that a change (U) finds it (`rating_change` routes it to the repeat)."""
    original.grade = repeat.grade
    original.time_spent_ms = repeat.time_spent_ms
    original.telemetry = dict(telemetry)
    original.created_at = original.updated_at = repeat.created_at
    return original


def _repeat_answered_last(*, expert: User, rating: Rating) -> RepeatRating | None:
    """The expert's answer to a hidden repeat of this rating's clip when it is newer than
    their last grade or change of the rating (a change then means the repeat answer)."""
    return (
        RepeatRating.objects.select_for_update()
        .filter(clip_id=rating.clip_id, rater=expert, created_at__gt=rating.updated_at)
        .first()
    )


def _answer_refused_audited(*, expert: User, clip: Clip, answer: str, run: Callable[[], T]) -> T:
    """Run an answer's write; a NotOfferedError is recorded in the audit log (after the
    write's savepoint rolled back, so the event survives) and raised again."""
    try:
        return run()
    except NotOfferedError as exc:
        audit_record(
            action="answer_refused", user=expert, obj=clip,
            detail={"answer": answer, "reason": str(exc)},
        )  # fmt: skip
        raise


def rating_change(
    *,
    expert: User,
    rating: Rating,
    grade: str,
    time_spent_ms: int = 0,
    telemetry: Mapping[str, object] | None = None,
) -> Rating:
    """Change an expert's own grade: counts move from the old grade to the new one and a
    RatingChange records it. Time and telemetry of this visit add to the rating's.

    Takes the Clip row lock, then the Rating row's. Only the rating's owner may change it.
    """
    if rating.rater_id != expert.pk:
        raise PermissionDenied("only the expert who gave a grade may change it")
    grade = grade_check(grade)
    time_spent_ms = time_spent_check(time_spent_ms)
    clean_telemetry = telemetry_clean(telemetry)
    with transaction.atomic():
        clip = _clip_lock(rating.clip_id)
        locked = Rating.objects.select_for_update().get(pk=rating.pk)
        previous = locked.grade
        repeat = _repeat_answered_last(expert=expert, rating=locked)
        if repeat is not None:
            return _repeat_change(expert=expert, rating=locked, repeat=repeat, grade=grade)
        if locked.panel_seen_at is not None:
            # The expert has seen the panel: the counted grade stays the independent one; the
            # change is kept apart for curators and never counted anywhere.
            if grade != previous:
                RatingChange.objects.create(
                    rating=locked, grade=grade, previous_grade=previous, after_panel=True
                )
                audit_record(
                    action="grade_change_after_panel", user=expert, obj=locked,
                    detail={"grade": grade, "counted_grade": previous},
                )  # fmt: skip
            return locked
        if grade != previous:
            RatingChange.objects.create(rating=locked, grade=grade, previous_grade=previous)
            _clip_votes_add(clip, {previous: -1, grade: 1})  # may settle or unsettle the clip
        locked.grade = grade
        locked.time_spent_ms = min(locked.time_spent_ms + time_spent_ms, MAX_TIME_SPENT_MS)
        locked.telemetry = telemetry_merge(locked.telemetry, clean_telemetry)
        locked.save(update_fields=["grade", "time_spent_ms", "telemetry", "updated_at"])
        audit_record(
            action="grade_change", user=expert, obj=locked,
            detail={"grade": grade, "previous_grade": previous},
        )  # fmt: skip
    return locked


def _repeat_change(*, expert: User, rating: Rating, repeat: RepeatRating, grade: str) -> Rating:
    """A change of the answer just given to a hidden repeat: the repeat's grade moves (never a
    count), unless the lab shows the panel after a vote, when the repeat answer stays the one
    given blind. Call inside rating_change's transaction."""
    if grade != repeat.grade:
        if settings.SHOW_PANEL_AFTER_VOTE:
            audit_record(
                action="grade_change_after_panel", user=expert, obj=rating,
                detail={"grade": grade, "counted_grade": repeat.grade, "repeat": True},
            )  # fmt: skip
        else:
            previous = repeat.grade
            repeat.grade = grade
            repeat.save(update_fields=["grade"])
            audit_record(
                action="grade_change", user=expert, obj=rating,
                detail={"grade": grade, "previous_grade": previous, "repeat": True},
            )  # fmt: skip
    return _as_repeat_answer(rating, repeat, telemetry={})


def _repeat_cannot_judge(
    *, expert: User, clip: Clip, reason: str, note: str, time_spent_ms: int
) -> CannotJudge:
    """ "Cannot judge" as the answer to a pending hidden repeat: the hold ends and the answer
    is audited; nothing is stored as a grade or a repeat. The answer reads like any other
    cannot-judge answer (unsaved: no row, the expert's Rating stands)."""
    _assignment_clear(expert=expert, clip_id=clip.pk)
    audit_record(
        action="cannot_judge", user=expert, obj=clip, detail={"reason": reason, "repeat": True}
    )
    answer = CannotJudge(
        clip=clip, rater=expert, reason=reason, note=note, time_spent_ms=time_spent_ms
    )
    answer.created_at = timezone.now()
    return answer


def cannot_judge_submit(
    *, expert: User, clip: Clip, reason: str, note: str = "", time_spent_ms: int = 0
) -> CannotJudge:
    """Record that the expert cannot judge a clip (with the reason "other", their note says
    why). Never counted as a grade; the clip leaves their queue. Takes the Clip row lock (the
    clip's assignment is cleared)."""
    reason = cannot_judge_reason_check(reason)
    note = cannot_judge_note_check(reason, note)
    time_spent_ms = time_spent_check(time_spent_ms)

    def write() -> CannotJudge:
        locked = _clip_lock(clip.pk)
        now = timezone.now()
        state = grading_sql.answer_state(expert_id=expert.pk, clip_id=locked.pk, now=now)
        if state.repeat_pending():
            return _repeat_cannot_judge(
                expert=expert, clip=locked, reason=reason, note=note, time_spent_ms=time_spent_ms
            )
        existing = _answer_existing(expert=expert, clip=locked, state=state)
        if existing is not None:
            raise existing
        _answer_offered_check(clip=locked, state=state)
        answer = CannotJudge.objects.create(
            clip=locked, rater=expert, reason=reason, note=note, time_spent_ms=time_spent_ms
        )
        _assignment_clear(expert=expert, clip_id=locked.pk)
        audit_record(action="cannot_judge", user=expert, obj=answer, detail={"reason": reason})
        return answer

    return _answer_refused_audited(
        expert=expert, clip=clip, answer="cannot_judge", run=lambda: _answer_once(
            expert=expert, clip=clip, write=write
        ),
    )  # fmt: skip


# --- reads ----------------------------------------------------------------------------------


def clip_panel_for_expert(*, expert: User, clip: Clip) -> dict[str, int] | None:
    """The panel's vote counts A..E on a clip, for an expert who has graded it and only when
    SHOW_PANEL_AFTER_VOTE is on; otherwise None (blind grading)."""
    if not settings.SHOW_PANEL_AFTER_VOTE or _repeat_pending(expert=expert, clip_id=clip.pk):
        return None
    # The join on the expert's own rating is the blindness check: no rating, no row.
    counts = (
        Clip.objects.filter(pk=clip.pk, ratings__rater=expert)
        .values_list("votes_a", "votes_b", "votes_c", "votes_d", "votes_e")
        .first()
    )
    if counts is None:
        return None
    ratings_mark_panel_seen(expert=expert, clip_ids=[clip.pk])
    return dict(zip(GRADES, counts, strict=True))


def ratings_mark_panel_seen(*, expert: User, clip_ids: list[int]) -> None:
    """Record that the expert now sees the panel of these clips: their counted grades for
    them are fixed from here on (`rating_change`). One UPDATE; a first sighting only."""
    Rating.objects.filter(rater=expert, clip_id__in=clip_ids, panel_seen_at__isnull=True).update(
        panel_seen_at=timezone.now()
    )


@dataclass(frozen=True)
class GradingProgress:
    rated: int
    cannot_judge: int
    remaining: int  # clips the queue could still offer this expert


def grading_progress(*, expert: User) -> GradingProgress:
    """The expert's answers so far and the clips their queue could still offer (one query)."""
    rated, cannot_judge, remaining = grading_sql.progress_counts(
        expert_id=expert.pk, target=vote_target()
    )
    return GradingProgress(rated=rated, cannot_judge=cannot_judge, remaining=remaining)


@dataclass(frozen=True)
class GradingSession:
    started_at: datetime | None  # None: nothing answered yet this session
    grade_counts: dict[str, int]
    n_graded: int
    n_changed: int
    n_cannot_judge: int
    median_time_ms: int | None


def grading_session_start(*, expert: User, now: datetime | None = None) -> datetime | None:
    """When the expert's current grading session began: their first answer after their last
    login and after the last idle gap of GRADING_SESSION_IDLE_HOURS. None when they have not
    answered anything in the current session."""
    now = now or timezone.now()
    idle = timedelta(hours=settings.GRADING_SESSION_IDLE_HOURS)
    since = Q(created_at__gte=expert.last_login) if expert.last_login else Q()
    changed_since = Q(changed_at__gte=expert.last_login) if expert.last_login else Q()
    times = sorted(
        [
            *Rating.objects.filter(since, rater=expert).values_list("created_at", flat=True),
            *RatingChange.objects.filter(changed_since, rating__rater=expert)
            .exclude(previous_grade="")
            .values_list("changed_at", flat=True),
            *CannotJudge.objects.filter(since, rater=expert).values_list("created_at", flat=True),
        ],
        reverse=True,
    )
    start, later = None, now
    for moment in times:
        if later - moment > idle:
            break
        start, later = moment, moment
    return start


def grading_session_summary(*, expert: User, now: datetime | None = None) -> GradingSession:
    start = grading_session_start(expert=expert, now=now)
    if start is None:
        return GradingSession(None, dict.fromkeys(GRADES, 0), 0, 0, 0, None)
    ratings = list(
        Rating.objects.filter(rater=expert, created_at__gte=start).values_list(
            "grade", "time_spent_ms"
        )
    )
    counts = dict.fromkeys(GRADES, 0)
    for grade, _ in ratings:
        counts[grade] += 1
    times = [ms for _, ms in ratings]
    return GradingSession(
        started_at=start,
        grade_counts=counts,
        n_graded=len(ratings),
        n_changed=RatingChange.objects.filter(rating__rater=expert, changed_at__gte=start)
        .exclude(previous_grade="")
        .count(),
        n_cannot_judge=CannotJudge.objects.filter(rater=expert, created_at__gte=start).count(),
        median_time_ms=round(statistics.median(times)) if times else None,
    )
