"""Grade distributions and their statistics against examples worked out by hand."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from annotation.aggregation.agreement import expert_agreement, fleiss_kappa, krippendorff_alpha
from annotation.aggregation.distributions import (
    distribution_stats,
    emd,
    figure3_stats,
    grade_counts,
    rating_arrays,
    stats_for_one,
)

A, B, C, D, E = range(5)


def test_a_ratings_table_becomes_index_arrays_that_keep_clips_without_votes() -> None:
    ratings = pd.DataFrame(
        {"clip_id": ["c2", "c1", "c2"], "rater_id": ["r1", "r1", "r2"], "grade": ["E", "A", "B"]}
    )
    arrays = rating_arrays(ratings, clip_ids=["c1", "c2", "c3"])
    assert arrays.clip_idx.tolist() == [1, 0, 1]
    assert arrays.rater_idx.tolist() == [0, 0, 1]
    assert arrays.grade_idx.tolist() == [E, A, B]
    assert (arrays.n_clips, arrays.n_raters) == (3, 2)
    assert arrays.rater_ids == ("r1", "r2")


def test_a_grade_outside_a_to_e_or_an_unlisted_clip_is_named_in_the_error() -> None:
    ratings = pd.DataFrame({"clip_id": ["c1"], "rater_id": ["r1"], "grade": ["F"]})
    with pytest.raises(ValueError, match=r"one of A, B, C, D, E; got \['F'\]"):
        rating_arrays(ratings)
    ratings["grade"] = "A"
    with pytest.raises(ValueError, match=r"clips that are not listed: \['c1'\]"):
        rating_arrays(ratings, clip_ids=["c9"])


def test_votes_are_counted_per_clip_and_grade_and_an_unrated_clip_is_all_zero() -> None:
    counts = grade_counts(np.array([0, 0, 2, 0]), np.array([A, B, E, A]), n_clips=3)
    assert counts.tolist() == [[2, 1, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 1]]


def test_a_grade_index_out_of_range_is_refused_with_the_range() -> None:
    with pytest.raises(ValueError, match=r"grade_idx must lie in \[0, 4\]"):
        grade_counts(np.array([0]), np.array([5]), n_clips=1)


def test_two_votes_for_a_and_one_for_b_give_the_hand_computed_statistics() -> None:
    stats = distribution_stats(np.array([[2, 1, 0, 0, 0]]))
    assert stats.p[0] == pytest.approx([2 / 3, 1 / 3, 0, 0, 0])
    assert stats.n[0] == 3
    assert stats.mean[0] == pytest.approx(4 / 3)
    # Population std (ddof=0) of the scores 1, 1, 2.
    assert stats.std[0] == pytest.approx(np.sqrt(2 / 9))
    assert stats.mode[0] == "A"
    assert stats.entropy[0] == pytest.approx(-(2 / 3) * np.log2(2 / 3) - (1 / 3) * np.log2(1 / 3))


@pytest.mark.parametrize(
    ("counts", "mode"),
    [
        # A and C tied, mean 2 exactly halfway: the better grade wins.
        ([1, 0, 1, 0, 0], "A"),
        # A and B tied on 2 votes, mean (2 + 4 + 5) / 5 = 2.2 is nearer B.
        ([2, 2, 0, 0, 1], "B"),
        # B and D tied, mean (4 + 8 + 5) / 5 = 3.4 is nearer D: the worse grade can win.
        ([0, 2, 0, 2, 1], "D"),
        # Five-way tie, mean 3: C.
        ([1, 1, 1, 1, 1], "C"),
    ],
)
def test_a_tie_in_the_grade_mode_goes_to_the_grade_nearest_the_mean(
    counts: list[int], mode: str
) -> None:
    assert distribution_stats(np.array([counts])).mode[0] == mode


def test_a_clip_with_one_vote_is_certain_and_a_clip_with_none_is_empty() -> None:
    stats = distribution_stats(np.array([[0, 0, 0, 1, 0], [0, 0, 0, 0, 0]]))
    assert stats.p[0].tolist() == [0, 0, 0, 1, 0]
    assert (stats.mean[0], stats.std[0], stats.entropy[0]) == (4.0, 0.0, 0.0)
    assert stats.mode[0] == "D"
    assert stats.n[1] == 0
    assert np.isnan(stats.p[1]).all()
    assert np.isnan([stats.mean[1], stats.std[1], stats.entropy[1]]).all()
    assert (stats.mode[1], stats.mode_index[1]) == ("", -1)


def test_stats_for_one_clip_are_plain_python_values() -> None:
    one = stats_for_one(np.array([0, 3, 1, 0, 0]))
    assert one["mode"] == "B"
    assert one["n"] == 4
    assert one["mean"] == pytest.approx(2.25)
    assert isinstance(one["p"], list)


def test_emd_is_zero_for_equal_distributions_and_four_between_all_a_and_all_e() -> None:
    p = np.array([[0.1, 0.4, 0.3, 0.2, 0.0], [1, 0, 0, 0, 0]])
    q = np.array([[0.1, 0.4, 0.3, 0.2, 0.0], [0, 0, 0, 0, 1]])
    assert emd(p, q) == pytest.approx([0.0, 4.0])
    # Half a vote's mass moved one grade: one CDF gap of 0.5.
    assert emd(np.array([0.5, 0.5, 0, 0, 0]), np.array([0, 1, 0, 0, 0])) == pytest.approx(0.25)


def test_figure3_counts_every_rated_clip_once_including_the_edge_bins() -> None:
    counts = np.array(
        [
            [0, 0, 0, 0, 3],  # mean 5, std 0: the last mean bin (right edge included)
            [2, 0, 0, 0, 2],  # mean 3, std 2: the last std bin
            [0, 1, 1, 0, 0],
            [0, 0, 0, 0, 0],  # not rated: left out of the histograms
        ]
    )
    figure = figure3_stats(distribution_stats(counts), rater_idx=np.array([0, 0, 2]), n_raters=4)
    joint = np.array(figure["mean_std_hist"])
    assert joint.sum() == 3
    assert joint[-1, 0] == 1
    assert joint[8, -1] == 1  # mean 3 starts bin 8 of [1, 5] in steps of 0.25
    assert figure["mode_hist"] == {"A": 1, "B": 1, "C": 0, "D": 0, "E": 1}
    assert figure["votes_per_grade"] == {"A": 2, "B": 1, "C": 1, "D": 0, "E": 5}
    assert figure["ratings_per_clip"] == [1, 0, 1, 1, 1]
    assert figure["ratings_per_expert"] == [2, 0, 1, 0]


def test_the_paper_scale_is_summarised_in_well_under_a_second() -> None:
    rng = np.random.default_rng(0)
    n_clips, n_raters = 615, 40
    clip_idx = np.repeat(np.arange(n_clips), n_raters)
    rater_idx = np.tile(np.arange(n_raters), n_clips)
    grade_idx = np.clip(rng.normal(1.5, 1.0, clip_idx.size).round(), 0, 4).astype(int)
    started = time.perf_counter()
    stats = distribution_stats(grade_counts(clip_idx, grade_idx, n_clips))
    figure3_stats(stats, rater_idx=rater_idx, n_raters=n_raters)
    fleiss_kappa(stats.counts)
    expert_agreement(clip_idx, rater_idx, grade_idx, n_clips=n_clips, n_raters=n_raters)
    krippendorff_alpha(
        clip_idx, rater_idx, grade_idx, n_clips=n_clips, n_raters=n_raters, n_resamples=0
    )
    # Generous bound for shared CI machines: it takes about 0.03 s.
    assert time.perf_counter() - started < 1.0
