"""Hidden repeats: offered at the configured rate, stored apart, never part of a distribution."""

from __future__ import annotations

import random

import pytest

from annotation.aggregation.selectors import clip_distribution, panel_statistics
from annotation.grading.repeats import repeat_candidate_for_expert, repeat_submit
from annotation.ingest.services import ServiceError
from annotation.models import Clip, Rating, RepeatRating, Video


class AlwaysRoll(random.Random):
    """An rng whose roll always falls under the repeat rate (choices stay seeded)."""

    # Declared so that randrange keeps drawing from the seeded bits, not from random().
    getrandbits = random.Random.getrandbits

    def random(self) -> float:
        return 0.0


@pytest.fixture
def repeats_on(settings):
    settings.REPEAT_RATE = 0.05
    settings.REPEAT_MIN_AGE_H = 24.0
    return settings


@pytest.fixture
def veteran(make_clips, make_experts, add_votes):
    """An expert with 40 grades given two days ago (budget: two repeats at 5%), and a
    second expert on the same clips."""
    expert, other = make_experts(2)
    clips = make_clips(40)
    for clip in clips:
        add_votes(clip, "BC", [expert, other], age_hours=48)
    return expert, other, clips


def test_most_queue_requests_get_no_repeat(repeats_on, veteran) -> None:
    expert, _, _ = veteran
    rng = random.Random(7)

    offered = [repeat_candidate_for_expert(expert=expert, rng=rng) for _ in range(2000)]

    share = sum(c is not None for c in offered) / len(offered)
    assert 0.03 < share < 0.07  # REPEAT_RATE = 0.05


def test_a_repeat_is_a_clip_the_expert_graded_long_enough_ago(
    repeats_on, veteran, make_clips, add_votes
) -> None:
    expert, _, clips = veteran
    fresh = make_clips(1)[0]
    add_votes(fresh, "A", [expert])  # graded just now: too fresh to repeat
    not_mine = make_clips(1)[0]

    seen = {repeat_candidate_for_expert(expert=expert, rng=AlwaysRoll(s)) for s in range(200)}

    assert seen <= set(clips) and len(seen) > 20
    assert fresh not in seen and not_mine not in seen


def test_nothing_is_offered_when_repeats_are_off_or_nothing_is_old_enough(
    repeats_on, veteran, make_clips, make_experts, add_votes
) -> None:
    expert, _, _ = veteran
    repeats_on.REPEAT_RATE = 0.0
    assert repeat_candidate_for_expert(expert=expert, rng=AlwaysRoll()) is None

    repeats_on.REPEAT_RATE = 0.05
    newcomer = make_experts(1, prefix="new")[0]
    for clip in make_clips(40, prefix="new"):
        add_votes(clip, "B", [newcomer])  # 40 grades, all from today
    assert repeat_candidate_for_expert(expert=newcomer, rng=AlwaysRoll()) is None


def test_repeats_stay_within_the_rate_of_the_experts_grades(repeats_on, veteran) -> None:
    expert, _, _ = veteran
    for seed in range(2):  # 5% of 40 grades: two repeats
        clip = repeat_candidate_for_expert(expert=expert, rng=AlwaysRoll(seed))
        repeat_submit(expert=expert, clip=clip, grade="A", time_spent_ms=4000)

    assert repeat_candidate_for_expert(expert=expert, rng=AlwaysRoll()) is None


def test_a_clip_is_repeated_at_most_once_per_expert(repeats_on, veteran) -> None:
    expert, _, clips = veteran
    repeat_submit(expert=expert, clip=clips[0], grade="B", time_spent_ms=4000)

    offered = {repeat_candidate_for_expert(expert=expert, rng=AlwaysRoll(s)) for s in range(200)}
    assert clips[0] not in offered
    with pytest.raises(ServiceError, match="already answered the repeat"):
        repeat_submit(expert=expert, clip=clips[0], grade="C", time_spent_ms=4000)


def test_clips_of_videos_that_are_not_ready_are_not_repeated(repeats_on, veteran) -> None:
    expert, _, clips = veteran
    Video.objects.exclude(pk=clips[5].video_id).update(status=Video.Status.FAILED)

    offered = {repeat_candidate_for_expert(expert=expert, rng=AlwaysRoll(s)) for s in range(20)}

    assert offered == {clips[5]}


def test_a_repeat_needs_an_earlier_grade_old_enough(
    repeats_on, veteran, make_clips, make_experts, add_votes
) -> None:
    expert, _, _ = veteran
    stranger = make_clips(1)[0]
    with pytest.raises(ServiceError, match="have not graded"):
        repeat_submit(expert=expert, clip=stranger, grade="B", time_spent_ms=1000)
    add_votes(stranger, "B", [expert])
    with pytest.raises(ServiceError, match="less than 24 hours"):
        repeat_submit(expert=expert, clip=stranger, grade="B", time_spent_ms=1000)
    with pytest.raises(ServiceError, match=r"not one of A\.\.E"):
        repeat_submit(expert=expert, clip=stranger, grade="F", time_spent_ms=1000)


def test_hidden_repeats_never_change_a_distribution(
    repeats_on, veteran, make_user, client_for
) -> None:
    expert, other, clips = veteran
    clip = clips[3]  # expert said B, other said C
    curator = client_for(make_user("curator", "cura-01"))
    before_api = curator.get(f"/api/distributions/{clip.external_id}/").json()
    before_csv = b"".join(curator.get("/api/distributions.csv").streaming_content)
    before_stats = panel_statistics(bootstrap=0)

    repeat = repeat_submit(expert=expert, clip=clip, grade="E", time_spent_ms=6000)
    repeat_submit(expert=other, clip=clip, grade="A", time_spent_ms=6000)

    assert repeat.original_grade == "B" and repeat.grade == "E"
    clip = Clip.objects.get(pk=clip.pk)
    assert clip.vote_counts == [0, 1, 1, 0, 0] and clip.votes_total == 2
    assert Rating.objects.get(clip=clip, rater=expert).grade == "B"
    assert clip_distribution(clip).p == {"A": 0.0, "B": 0.5, "C": 0.5, "D": 0.0, "E": 0.0}
    after_api = curator.get(f"/api/distributions/{clip.external_id}/").json()
    assert after_api == before_api
    assert b"".join(curator.get("/api/distributions.csv").streaming_content) == before_csv
    after_stats = panel_statistics(bootstrap=0)
    assert after_stats.figure3 == before_stats.figure3
    assert after_stats.agreement == before_stats.agreement
    assert after_stats.n_ratings == before_stats.n_ratings
    # ... but they do show up where they belong: the experts' consistency.
    assert after_stats.consistency.n_pairs == 2 and after_stats.consistency.exact_agreement == 0
    row = next(e for e in after_stats.experts if e.rater == expert.username)
    assert row.repeat_pairs == 1 and row.repeat_agreement == 0.0
    assert row.repeat_mean_abs_diff == 3.0  # B -> E
    page = curator.get(f"/clips/{clip.external_id}/").content.decode()
    assert 'id="repeats"' in page


def test_consistency_counts_the_repeats_that_kept_their_grade(repeats_on, veteran) -> None:
    expert, _, clips = veteran
    repeat_submit(expert=expert, clip=clips[0], grade="B", time_spent_ms=4000)  # same
    repeat_submit(expert=expert, clip=clips[1], grade="C", time_spent_ms=4000)  # one step

    stats = panel_statistics(bootstrap=0)

    assert RepeatRating.objects.count() == 2
    row = next(e for e in stats.experts if e.rater == expert.username)
    assert (row.repeat_pairs, row.repeat_agreement, row.repeat_mean_abs_diff) == (2, 0.5, 0.5)
