"""Trainee practice: practice sets, trainee grades, the feedback after each grade, progress.

A trainee grades clips of a practice set (model TrainingSet: the trainee models and
their tables keep their first names) (clips of a frozen dataset version) and is scored
against the frozen expert distribution of each clip (DatasetClip.p). Trainee grades live in
TraineeRating only: Clip.votes_*, agreement, retirement and exports read Rating, so a trainee
never moves what the experts built.

Feedback is given after a grade, never before: nothing here hands out a clip's distribution
except `trainee_feedback`, which needs the trainee's own TraineeRating of it.

Scores (pure functions below, grade scores A=1 .. E=5 as in annotation.grades):
- share: the share of experts who gave the trainee's grade, p[grade];
- deviation: trainee's score minus the panel's mean score (positive = harsher);
- the panel grade of a clip is its mean score rounded half up, as
  annotation.aggregation.agreement does for its leave-one-out panel, and kappa is that
  module's quadratic-weighted kappa.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from annotation.access.audit import audit_record
from annotation.access.roles import TRAINEE
from annotation.aggregation.agreement import expert_agreement, quadratic_kappa_per_group
from annotation.aggregation.distributions import SCORES
from annotation.errors import ConflictError, ServiceError
from annotation.grades import GRADE_DESCRIPTIONS, GRADE_INDEX, GRADES, N_GRADES
from annotation.grading.checks import grade_check, time_spent_check
from datasets.models import DatasetClip, DatasetVersion, TraineeRating, TrainingSet

if TYPE_CHECKING:
    from django.contrib.auth.models import User


class AlreadyGradedError(ConflictError):
    """The trainee already graded this clip of this practice set."""

    def __init__(self, message: str, *, rating: TraineeRating) -> None:
        super().__init__(message)
        self.rating = rating


# --- pure scoring ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipScore:
    share: float  # share of experts who gave the trainee's grade
    deviation: float  # trainee's score - panel mean score; positive = harsher
    panel_mean: float  # the panel's mean score, A=1 .. E=5
    panel_grade: str  # the panel's mean score rounded half up


def panel_grade_index(p: np.ndarray) -> np.ndarray:
    """(..., 5) distributions -> grade index of the rounded-half-up mean score (as agreement)."""
    mean = np.asarray(p, dtype=float) @ SCORES
    return np.floor(mean + 0.5).astype(np.int64) - 1


def clip_score(p: Sequence[float], grade: str) -> ClipScore:
    """How a trainee's grade compares with a clip's expert distribution p (A..E, sums to 1)."""
    dist = np.asarray(p, dtype=float)
    mean = float(dist @ SCORES)
    return ClipScore(
        share=float(dist[GRADE_INDEX[grade]]),
        deviation=float(SCORES[GRADE_INDEX[grade]] - mean),
        panel_mean=mean,
        panel_grade=GRADES[int(panel_grade_index(dist))],
    )


@dataclass(frozen=True)
class Performance:
    n: int
    mean_share: float | None  # mean of the per-clip shares
    kappa: float | None  # quadratic-weighted kappa against the panel grade
    tendency: float | None  # mean deviation; positive = harsher than the panel
    confusion: list[list[int]]  # [trainee grade][panel grade], A..E


def _number(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


def performance(grade_idx: np.ndarray, p: np.ndarray) -> Performance:
    """Scores of n grades (grade indices, (n,)) against their clips' distributions (n, 5)."""
    grade_idx = np.asarray(grade_idx, dtype=np.int64)
    p = np.asarray(p, dtype=float).reshape(-1, N_GRADES)
    n = int(grade_idx.size)
    panel = panel_grade_index(p)
    confusion = np.zeros((N_GRADES, N_GRADES), dtype=np.int64)
    np.add.at(confusion, (grade_idx, panel), 1)
    if n == 0:
        return Performance(0, None, None, None, confusion.tolist())
    kappa = quadratic_kappa_per_group(np.zeros(n, dtype=np.int64), grade_idx, panel, n_groups=1)
    return Performance(
        n=n,
        mean_share=float(p[np.arange(n), grade_idx].mean()),
        kappa=_number(kappa[0]),
        tendency=float((SCORES[grade_idx] - p @ SCORES).mean()),
        confusion=confusion.tolist(),
    )


# --- practice sets --------------------------------------------------------------------------


def practice_set_create(
    *,
    name: str,
    version: DatasetVersion,
    created_by: User | None,
    min_votes: int = 1,
    clip_ids: Sequence[str] | None = None,
) -> TrainingSet:
    """A practice set of a ready version's clips with at least `min_votes` expert votes
    (optionally only the clips named by `clip_ids`, their external ids)."""
    name = name.strip()
    if not name:
        raise ServiceError("give the practice set a name")
    if TrainingSet.objects.filter(name=name).exists():
        raise ServiceError(f"a practice set named {name!r} exists; choose another name")
    if version.status != DatasetVersion.Status.READY:
        raise ServiceError(f"dataset version {version.name!r} is not built yet")
    if min_votes < 1:
        raise ServiceError("a practice clip needs at least one expert vote")
    # Settled clips only (retired: out of the expert queue for good). A trainee sees each
    # clip's panel and the model's prediction, and may later grade as an expert: an open
    # clip would reach the queue of someone who has already seen its answer.
    clips = DatasetClip.objects.filter(
        version=version, n__gte=min_votes, clip__retired_at__isnull=False
    )
    if clip_ids is not None:
        clips = clips.filter(clip_external_id__in=list(clip_ids))
    chosen = list(clips.values_list("pk", flat=True))
    if not chosen:
        raise ServiceError(
            f"no settled (retired) clip of {version.name!r} has {min_votes} or more votes; "
            "wait until clips retire from the expert queue, or lower the minimum"
        )
    with transaction.atomic():
        practice_set = TrainingSet.objects.create(
            name=name, version=version, min_votes=min_votes, created_by=created_by
        )
        practice_set.clips.set(chosen)
    return practice_set


def practice_sets_active() -> QuerySet[TrainingSet]:
    return TrainingSet.objects.filter(active=True).annotate(n_clips=Count("clips"))


def trainee_clip_next(*, trainee: User, practice_set: TrainingSet) -> DatasetClip | None:
    """The next clip of the set the trainee has not graded (in the set's frozen order)."""
    graded = TraineeRating.objects.filter(
        trainee=trainee, training_set=practice_set, dataset_clip=OuterRef("pk")
    )
    return (
        practice_set.clips.filter(~Exists(graded))
        .select_related("clip__video")
        .order_by("pk")
        .first()
    )


def practice_set_remaining(*, trainee: User, practice_set: TrainingSet) -> int:
    """How many clips of the set the trainee has not graded yet."""
    graded = TraineeRating.objects.filter(trainee=trainee, training_set=practice_set)
    return practice_set.clips.exclude(pk__in=graded.values("dataset_clip_id")).count()


def trainee_set_current(*, trainee: User, set_id: int | None = None) -> TrainingSet | None:
    """The set asked for (active ones only), else the first active set with clips left."""
    sets = practice_sets_active().order_by("created_at", "pk")
    if set_id is not None:
        return sets.filter(pk=set_id).first()
    for practice_set in sets:
        if trainee_clip_next(trainee=trainee, practice_set=practice_set) is not None:
            return practice_set
    return sets.first()


def _session_number(*, trainee: User, now: datetime) -> int:
    """The trainee's sitting: the last one, unless they were idle longer than the limit."""
    last = TraineeRating.objects.filter(trainee=trainee).order_by("-created_at", "-pk").first()
    if last is None:
        return 1
    idle = timedelta(hours=settings.GRADING_SESSION_IDLE_HOURS)
    return last.session + 1 if now - last.created_at > idle else last.session


def trainee_rating_submit(
    *,
    trainee: User,
    practice_set: TrainingSet,
    dataset_clip: DatasetClip,
    grade: str,
    time_spent_ms: int,
) -> TraineeRating:
    """Record a trainee's grade of a practice clip. Raises AlreadyGradedError on a second
    grade of the same clip (also when two submits race: the unique constraint decides)."""
    grade = grade_check(grade)
    time_spent_ms = time_spent_check(time_spent_ms)
    if not practice_set.active:
        raise ServiceError(f"practice set {practice_set.name!r} is closed")
    if not practice_set.clips.filter(pk=dataset_clip.pk).exists():
        raise ServiceError(f"clip {dataset_clip.clip_external_id} is not in this practice set")
    try:
        with transaction.atomic():
            rating = TraineeRating.objects.create(
                trainee=trainee,
                training_set=practice_set,
                dataset_clip=dataset_clip,
                grade=grade,
                time_spent_ms=time_spent_ms,
                session=_session_number(trainee=trainee, now=timezone.now()),
            )
            # Same transaction: a refused second grade leaves no event either. The detail key
            # keeps the model's first name, so old and new events read alike.
            audit_record(
                action="grade_submit", user=trainee, obj=rating,
                detail={"grade": grade, "training_set": practice_set.name,
                        "clip": dataset_clip.clip_external_id},
            )  # fmt: skip
            return rating
    except IntegrityError:
        existing = TraineeRating.objects.filter(
            trainee=trainee, training_set=practice_set, dataset_clip=dataset_clip
        ).first()
        if existing is None:
            raise
        raise AlreadyGradedError(
            f"you already graded clip {dataset_clip.clip_external_id}",
            rating=existing,
        ) from None


# --- reads ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Feedback:
    """What a trainee sees after grading a clip (the model's prediction is added by
    modeling.feedback, which may read training runs)."""

    rating: TraineeRating
    p: dict[str, float]  # frozen expert distribution
    n_experts: int
    score: ClipScore
    descriptions: dict[str, str]


def trainee_feedback(*, rating: TraineeRating) -> Feedback:
    """The feedback on one of the trainee's own grades (callers fetch the rating by owner)."""
    dclip = rating.dataset_clip
    return Feedback(
        rating=rating,
        p=dict(zip(GRADES, map(float, dclip.p), strict=True)),
        n_experts=dclip.n,
        score=clip_score(dclip.p, rating.grade),
        descriptions=dict(GRADE_DESCRIPTIONS),
    )


def trainee_ratings_for(*, trainee: User) -> QuerySet[TraineeRating]:
    return (
        TraineeRating.objects.filter(trainee=trainee)
        .select_related("dataset_clip", "training_set")
        .order_by("created_at", "pk")
    )


@dataclass(frozen=True)
class SessionRow:
    session: int
    started_at: datetime
    performance: Performance


@dataclass(frozen=True)
class TraineeProgress:
    overall: Performance
    sessions: list[SessionRow]
    pass_kappa: float | None
    min_clips: int
    qualified: bool


def _arrays(rows: Sequence[tuple[str, list[float]]]) -> tuple[np.ndarray, np.ndarray]:
    grades = np.array([GRADE_INDEX[g] for g, _ in rows], dtype=np.int64)
    p = np.array([p for _, p in rows], dtype=float).reshape(-1, N_GRADES)
    return grades, p


def pass_kappa() -> float | None:
    """The kappa a trainee must reach: the setting, else the median expert's leave-one-out
    quadratic kappa over the current votes (None with no comparable experts)."""
    if settings.TRAINEE_PASS_KAPPA is not None:
        return float(settings.TRAINEE_PASS_KAPPA)
    from annotation.aggregation.ratings import ratings_frame

    frame = ratings_frame()
    if frame.n_raters == 0:
        return None
    table = expert_agreement(
        frame.clip_idx,
        frame.rater_idx,
        frame.grade_idx,
        n_clips=frame.n_clips,
        n_raters=frame.n_raters,
    )
    kappas = [k for k in table["kappa_quadratic"].tolist() if np.isfinite(k)]
    return float(statistics.median(kappas)) if kappas else None


def _progress(
    rows: Sequence[tuple[int, datetime, str, list[float]]], bar: float | None
) -> TraineeProgress:
    sessions = []
    for number in sorted({s for s, _, _, _ in rows}):
        mine = [r for r in rows if r[0] == number]
        sessions.append(
            SessionRow(
                session=number,
                started_at=min(r[1] for r in mine),
                performance=performance(*_arrays([(g, p) for _, _, g, p in mine])),
            )
        )
    overall = performance(*_arrays([(g, p) for _, _, g, p in rows]))
    min_clips = settings.TRAINEE_MIN_CLIPS
    qualified = (
        bar is not None
        and overall.n >= min_clips
        and overall.kappa is not None
        and overall.kappa >= bar
    )
    return TraineeProgress(overall, sessions, bar, min_clips, qualified)


def _rows(ratings: QuerySet[TraineeRating]) -> list[tuple[int, int, datetime, str, list[float]]]:
    """A trainee's grades in order, each clip of a version once (their first grade of it):
    grading the same clips again in a second practice set cannot raise a score."""
    seen: set[tuple[int, int]] = set()
    rows = []
    for trainee_id, clip_id, *row in ratings.order_by("created_at", "pk").values_list(
        "trainee_id", "dataset_clip_id", "session", "created_at", "grade", "dataset_clip__p"
    ):
        if (trainee_id, clip_id) in seen:
            continue
        seen.add((trainee_id, clip_id))
        rows.append((trainee_id, *row))
    return rows


def trainee_progress(*, trainee: User) -> TraineeProgress:
    """Scores per sitting and overall, and whether the trainee qualified."""
    rows = _rows(TraineeRating.objects.filter(trainee=trainee))
    return _progress([r[1:] for r in rows], pass_kappa())


@dataclass(frozen=True)
class TraineeRow:
    username: str
    n_sessions: int
    last_graded_at: datetime | None
    progress: TraineeProgress


def trainees_overview() -> list[TraineeRow]:
    """Every trainee's progress for the curators' table (one query for all their grades)."""
    from django.contrib.auth import get_user_model

    trainees = list(
        get_user_model()
        .objects.filter(Q(groups__name=TRAINEE) | Q(trainee_ratings__isnull=False))
        .distinct()
        .order_by("username")
    )
    by_trainee: dict[int, list[tuple[int, datetime, str, list[float]]]] = {}
    for row in _rows(TraineeRating.objects.filter(trainee__in=trainees)):
        by_trainee.setdefault(row[0], []).append(row[1:])
    bar = pass_kappa()
    table = []
    for user in trainees:
        rows = by_trainee.get(user.pk, [])
        progress = _progress(rows, bar)
        table.append(
            TraineeRow(
                username=user.get_username(),
                n_sessions=len(progress.sessions),
                last_graded_at=rows[-1][1] if rows else None,
                progress=progress,
            )
        )
    return table
