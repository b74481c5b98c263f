"""The expert queue: order, what it skips, holds for concurrent experts, their expiry."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from annotation.grading.answers import clip_next_for_expert, rating_submit
from annotation.models import ClipAssignment, Video
from tests.grading_support import cannot_judge_offered, offer

pytestmark = pytest.mark.django_db


def _grade(expert, clip, grade: str = "B"):
    if not ClipAssignment.objects.filter(expert=expert, clip=clip).exists():
        offer(expert, clip)
    return rating_submit(expert=expert, clip=clip, grade=grade, time_spent_ms=500, telemetry={})


def test_the_queue_offers_the_clip_with_the_fewest_votes_first(make_user, make_clip, cast_votes):
    expert = make_user("expert")
    busy, quiet, middle = make_clip(), make_clip(), make_clip()
    cast_votes(busy, "ABC")
    cast_votes(middle, "D")
    order = []
    for _ in range(3):
        clip = clip_next_for_expert(expert=expert)
        order.append(clip)
        _grade(expert, clip)
    assert order == [quiet, middle, busy]


def test_retired_clips_and_clips_of_unready_videos_are_skipped(make_user, make_clip):
    expert = make_user("expert")
    make_clip(retired=True)
    make_clip(status=Video.Status.PROCESSING)
    open_clip = make_clip()
    assert clip_next_for_expert(expert=expert) == open_clip
    _grade(expert, open_clip)
    assert clip_next_for_expert(expert=expert) is None


def test_an_expert_never_gets_a_clip_twice(make_user, make_clip):
    expert = make_user("expert")
    clips = {make_clip() for _ in range(4)}
    seen = []
    while (clip := clip_next_for_expert(expert=expert)) is not None:
        seen.append(clip)
        _grade(expert, clip)
    assert len(seen) == len(set(seen)) == 4
    assert set(seen) == clips


def test_an_expert_keeps_the_clip_held_for_them_until_they_answer_it(make_user, make_clip):
    expert = make_user("expert")
    first, second = make_clip(), make_clip()
    held = clip_next_for_expert(expert=expert)
    assert clip_next_for_expert(expert=expert) == held
    assert clip_next_for_expert(expert=expert) == held
    _grade(expert, held)
    assert clip_next_for_expert(expert=expert) == ({first, second} - {held}).pop()
    assert not ClipAssignment.objects.filter(clip=held).exists()  # answering clears the hold


def test_a_clip_marked_cannot_judge_leaves_the_queue(make_user, make_clip):
    expert = make_user("expert")
    clip = make_clip()
    assert clip_next_for_expert(expert=expert) == clip
    cannot_judge_offered(expert, clip, reason="out_of_focus")
    assert clip_next_for_expert(expert=expert) is None


def test_two_experts_for_one_missing_vote_only_one_gets_the_clip(
    make_user, make_clip, cast_votes, settings
):
    settings.MAX_VOTES = 3
    clip = make_clip()
    cast_votes(clip, "AB")  # one vote to go
    first, second = make_user("expert"), make_user("expert")
    assert clip_next_for_expert(expert=first) == clip
    assert clip_next_for_expert(expert=second) is None
    # A clip at its target is no longer offered at all, even to a new expert.
    _grade(first, clip)
    assert clip_next_for_expert(expert=make_user("expert")) is None


def test_the_hold_expires_and_the_clip_goes_to_another_expert(
    make_user, make_clip, cast_votes, settings
):
    settings.MAX_VOTES = 2
    settings.ASSIGNMENT_MINUTES = 10
    clip = make_clip()
    cast_votes(clip, "C")
    first, second = make_user("expert"), make_user("expert")
    assert clip_next_for_expert(expert=first) == clip
    assert clip_next_for_expert(expert=second) is None
    later = timezone.now() + timedelta(minutes=11)
    assert clip_next_for_expert(expert=second, now=later) == clip
    # The first expert's hold has lapsed and the slot is taken: they are not offered it.
    assert clip_next_for_expert(expert=first, now=later) is None


def test_a_late_answer_after_the_hold_expired_is_still_counted(make_user, make_clip, settings):
    expert = make_user("expert")
    clip = make_clip()
    assert clip_next_for_expert(expert=expert) == clip
    ClipAssignment.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
    _grade(expert, clip, "E")
    clip.refresh_from_db()
    assert clip.votes_e == clip.votes_total == 1


def _in_threads(n: int, work) -> list:
    """Run work(i) in n threads started together; each thread uses its own DB connection."""
    barrier = threading.Barrier(n)
    results: list = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = work(i)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    return results


@pytest.mark.django_db(transaction=True)
def test_experts_asking_at_the_same_time_never_exceed_a_clips_vote_target(
    make_user, make_clip, cast_votes, settings
):
    settings.MAX_VOTES = 3
    nearly_done, fresh = make_clip(), make_clip()
    cast_votes(nearly_done, "AA")  # one vote to go
    cast_votes(fresh, "B")  # two votes to go
    experts = [make_user("expert") for _ in range(8)]
    offered = _in_threads(len(experts), lambda i: clip_next_for_expert(expert=experts[i]))
    got = [c.pk if c else None for c in offered]
    assert got.count(nearly_done.pk) == 1
    assert got.count(fresh.pk) == 2
    assert got.count(None) == 5
    for clip in (nearly_done, fresh):
        clip.refresh_from_db()
        live = ClipAssignment.objects.filter(clip=clip, expires_at__gt=timezone.now()).count()
        assert clip.votes_total + live == 3
