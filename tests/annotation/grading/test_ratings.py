"""Grades, changes, "cannot judge", telemetry, progress and the session summary (services)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from annotation.grading.answers import (
    AlreadyAnsweredError,
    clip_next_for_expert,
    grading_progress,
    grading_session_summary,
    rating_change,
    rating_submit,
)
from annotation.ingest.services import ServiceError, clip_vote_counts_recount
from annotation.models import CannotJudge, Clip, Rating, RatingChange
from tests.grading_support import cannot_judge_offered, offer

pytestmark = pytest.mark.django_db

TELEMETRY = {
    "plays": 2,
    "frames_stepped": 5,
    "speeds_used": [1, 0.25],
    "zoom_used": True,
    "full_field_opened": False,
}


def _submit(expert, clip, grade="B", **kwargs):
    args = {"time_spent_ms": 1200, "telemetry": TELEMETRY, **kwargs}
    offer(expert, clip)
    return rating_submit(expert=expert, clip=clip, grade=grade, **args)


def _counts(clip: Clip) -> list[int]:
    clip.refresh_from_db()
    return [*clip.vote_counts, clip.votes_total]


def test_a_grade_is_counted_on_the_clip_and_its_first_change_row_written(make_user, make_clip):
    expert, clip = make_user("expert"), make_clip()
    rating = _submit(expert, clip, "C")
    assert _counts(clip) == [0, 0, 1, 0, 0, 1]
    assert clip_vote_counts_recount(clip_ids=[clip.pk]) == 0  # counts equal a recount
    assert list(rating.changes.values_list("previous_grade", "grade")) == [("", "C")]
    assert rating.time_spent_ms == 1200
    assert rating.telemetry == {**TELEMETRY, "speeds_used": [0.25, 1.0]}


def test_a_recount_mends_stale_counts_and_touches_only_those_clips(make_user, make_clip):
    experts = [make_user("expert") for _ in range(3)]
    graded, ungraded, untouched = make_clip(), make_clip(), make_clip()
    for expert, grade in zip(experts, "AAE", strict=True):
        _submit(expert, graded, grade)
    _submit(experts[0], untouched, "C")
    # Counts drift (a bulk writer that forgot to recount, a hand edit of the database).
    Clip.objects.filter(pk=graded.pk).update(votes_a=7, votes_e=0, votes_total=7)
    Clip.objects.filter(pk=ungraded.pk).update(votes_b=2, votes_total=2)
    assert clip_vote_counts_recount(clip_ids=[graded.pk, ungraded.pk, untouched.pk]) == 2
    assert _counts(graded) == [2, 0, 0, 0, 1, 3]
    assert _counts(ungraded) == [0, 0, 0, 0, 0, 0]
    assert _counts(untouched) == [0, 0, 1, 0, 0, 1]
    assert clip_vote_counts_recount() == 0


def test_a_second_grade_by_the_same_expert_is_refused_with_the_existing_rating(
    make_user, make_clip
):
    expert, clip = make_user("expert"), make_clip()
    first = _submit(expert, clip, "A")
    with pytest.raises(AlreadyAnsweredError, match="already graded") as caught:
        _submit(expert, clip, "E")
    assert caught.value.answer == first
    assert Rating.objects.filter(clip=clip).count() == 1
    assert _counts(clip) == [1, 0, 0, 0, 0, 1]


def test_changing_a_grade_moves_the_vote_and_records_the_change(make_user, make_clip):
    expert, clip = make_user("expert"), make_clip()
    rating = _submit(expert, clip, "B")
    changed = rating_change(
        expert=expert, rating=rating, grade="D", time_spent_ms=300, telemetry={"plays": 1}
    )
    assert changed.grade == "D"
    assert _counts(clip) == [0, 0, 0, 1, 0, 1]
    assert clip_vote_counts_recount(clip_ids=[clip.pk]) == 0
    assert list(changed.changes.values_list("previous_grade", "grade")) == [("", "B"), ("B", "D")]
    # Both visits' time and telemetry add up.
    assert changed.time_spent_ms == 1500
    assert changed.telemetry["plays"] == 3 and changed.telemetry["zoom_used"] is True


def test_choosing_the_same_grade_again_records_no_change(make_user, make_clip):
    expert, clip = make_user("expert"), make_clip()
    rating = _submit(expert, clip, "B")
    rating_change(expert=expert, rating=rating, grade="B")
    assert RatingChange.objects.filter(rating=rating).count() == 1
    assert _counts(clip) == [0, 1, 0, 0, 0, 1]


def test_only_the_owner_may_change_a_rating(make_user, make_clip):
    owner, other, clip = make_user("expert"), make_user("expert"), make_clip()
    rating = _submit(owner, clip, "B")
    with pytest.raises(PermissionDenied):
        rating_change(expert=other, rating=rating, grade="A")
    rating.refresh_from_db()
    assert rating.grade == "B"


@pytest.mark.parametrize(
    ("grade", "message"),
    [("F", "grade 'F' is not one of A..E"), ("b", "grade 'b' is not one of A..E")],
)
def test_a_grade_outside_a_to_e_is_refused_with_a_clear_message(
    make_user, make_clip, grade, message
):
    with pytest.raises(ServiceError, match=message):
        _submit(make_user("expert"), make_clip(), grade)
    assert Rating.objects.count() == 0


@pytest.mark.parametrize(
    ("telemetry", "message"),
    [
        ({"plays": 2, "mouse_moves": 7}, "unknown telemetry key.*'mouse_moves'"),
        ({"plays": -1}, "'plays' must be a whole number from 0 to 10000"),
        ({"frames_stepped": 10**9}, "'frames_stepped' must be a whole number"),
        ({"plays": True}, "'plays' must be a whole number"),
        ({"speeds_used": [3]}, "'speeds_used' must be a list of speeds"),
        ({"zoom_used": "yes"}, "'zoom_used' must be true or false"),
        ([1, 2], "telemetry must be an object"),
    ],
)
def test_bad_telemetry_is_refused_and_nothing_is_written(make_user, make_clip, telemetry, message):
    clip = make_clip()
    with pytest.raises(ServiceError, match=message):
        _submit(make_user("expert"), clip, telemetry=telemetry)
    assert _counts(clip) == [0, 0, 0, 0, 0, 0]


def test_missing_telemetry_keys_are_stored_as_zero(make_user, make_clip):
    rating = _submit(make_user("expert"), make_clip(), telemetry={"plays": 1})
    assert rating.telemetry == {
        "plays": 1,
        "frames_stepped": 0,
        "speeds_used": [],
        "zoom_used": False,
        "full_field_opened": False,
    }


def test_a_time_beyond_an_hour_is_refused(make_user, make_clip):
    with pytest.raises(ServiceError, match="time_spent_ms must lie between 0 and 3600000"):
        _submit(make_user("expert"), make_clip(), time_spent_ms=3_600_001)


def test_cannot_judge_is_recorded_apart_and_never_counted(make_user, make_clip):
    expert, clip = make_user("expert"), make_clip()
    answer = cannot_judge_offered(expert, clip, reason="overlapping", time_spent_ms=2000)
    assert answer.reason == CannotJudge.Reason.OVERLAPPING
    assert _counts(clip) == [0, 0, 0, 0, 0, 0]
    assert not Rating.objects.exists()
    with pytest.raises(AlreadyAnsweredError, match="cannot judge"):
        _submit(expert, clip, "A")
    with pytest.raises(ServiceError, match="reason 'blurry' is not one of out_of_focus"):
        cannot_judge_offered(expert, make_clip(), reason="blurry")


def test_cannot_judge_after_grading_is_refused(make_user, make_clip):
    expert, clip = make_user("expert"), make_clip()
    _submit(expert, clip, "A")
    with pytest.raises(AlreadyAnsweredError, match="already graded"):
        cannot_judge_offered(expert, clip, reason="wrong_target")
    assert not CannotJudge.objects.exists()


def test_progress_counts_grades_cannot_judge_and_what_is_left(make_user, make_clip, settings):
    settings.MAX_VOTES = 1
    expert = make_user("expert")
    a, b, c, full = make_clip(), make_clip(), make_clip(), make_clip()
    make_clip(retired=True)
    _submit(make_user("expert"), full, "A")  # at its target: not in anyone's queue
    _submit(expert, a, "C")
    cannot_judge_offered(expert, b, reason="out_of_focus")
    progress = grading_progress(expert=expert)
    assert (progress.rated, progress.cannot_judge, progress.remaining) == (1, 1, 1)
    assert clip_next_for_expert(expert=expert) == c  # the one left


def test_the_session_summary_counts_this_sessions_answers_only(make_user, make_clip):
    expert = make_user("expert")
    now = timezone.now()
    expert.last_login = now - timedelta(hours=6)
    expert.save(update_fields=["last_login"])
    old = _submit(expert, make_clip(), "E", time_spent_ms=9000)
    Rating.objects.filter(pk=old.pk).update(created_at=now - timedelta(hours=5))  # before a gap
    for grade, ms in (("A", 1000), ("A", 3000), ("C", 2000)):
        _submit(expert, make_clip(), grade, time_spent_ms=ms)
    changed = _submit(expert, make_clip(), "D", time_spent_ms=4000)
    rating_change(expert=expert, rating=changed, grade="B")
    cannot_judge_offered(expert, make_clip(), reason="wrong_target")

    summary = grading_session_summary(expert=expert, now=now + timedelta(minutes=1))
    assert summary.grade_counts == {"A": 2, "B": 1, "C": 1, "D": 0, "E": 0}
    assert (summary.n_graded, summary.n_changed, summary.n_cannot_judge) == (4, 1, 1)
    assert summary.median_time_ms == 2500
    assert summary.started_at > now - timedelta(hours=1)


def test_after_two_idle_hours_a_new_session_has_nothing_in_it(make_user, make_clip):
    expert = make_user("expert")
    _submit(expert, make_clip(), "A")
    summary = grading_session_summary(expert=expert, now=timezone.now() + timedelta(hours=3))
    assert summary.started_at is None
    assert summary.n_graded == 0 and summary.median_time_ms is None


def test_answers_before_the_last_login_belong_to_an_earlier_session(make_user, make_clip):
    expert = make_user("expert")
    _submit(expert, make_clip(), "A")
    expert.last_login = timezone.now() + timedelta(seconds=1)
    expert.save(update_fields=["last_login"])
    assert grading_session_summary(expert=expert).n_graded == 0
