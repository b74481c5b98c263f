"""Agreement statistics against published examples, reference packages and naive loops."""

from __future__ import annotations

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss_kappa

from annotation.aggregation.agreement import (
    alpha_from_coincidences,
    bootstrap_weights,
    clip_coincidences,
    expert_agreement,
    fleiss_kappa,
    fleiss_kappa_interval,
    intra_rater_consistency,
    krippendorff_alpha,
    krippendorff_alpha_ordinal,
    quadratic_kappa_per_group,
    reliability_matrix,
)
from annotation.aggregation.distributions import emd, grade_counts

NAN = np.nan
# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": 4 observers x 12 units,
# values 1..5 with gaps; the published ordinal alpha is 0.815.
PUBLISHED_EXAMPLE = np.array(
    [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
        [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
    ]
)


def ratings_of(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clip_idx, rater_idx, grade_idx) of a raters x clips matrix of scores 1..5."""
    rater_idx, clip_idx = np.nonzero(~np.isnan(matrix))
    return clip_idx, rater_idx, matrix[rater_idx, clip_idx].astype(int) - 1


def random_ratings(
    seed: int, *, n_clips: int, n_raters: int, missing: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Correlated random grades (a shared clip effect) with some votes missing."""
    rng = np.random.default_rng(seed)
    clip_effect = rng.normal(2.0, 1.0, size=n_clips)
    scores = np.clip(np.round(clip_effect + rng.normal(0, 0.9, (n_raters, n_clips))), 0, 4)
    matrix = np.where(rng.random(scores.shape) < missing, NAN, scores + 1)
    return ratings_of(matrix)


def test_the_package_and_our_alpha_reproduce_krippendorffs_published_ordinal_example() -> None:
    clip_idx, rater_idx, grade_idx = ratings_of(PUBLISHED_EXAMPLE)
    estimate = krippendorff_alpha(
        clip_idx, rater_idx, grade_idx, n_clips=12, n_raters=4, n_resamples=200
    )
    assert round(estimate.alpha, 3) == 0.815
    assert krippendorff_alpha_ordinal(grade_counts(clip_idx, grade_idx, 12)) == pytest.approx(
        estimate.alpha, abs=1e-12
    )
    # Unit 12 has a single value: it is not pairable.
    assert estimate.n_clips_pairable == 11


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_our_ordinal_alpha_equals_the_package_on_random_panels(seed: int) -> None:
    clip_idx, rater_idx, grade_idx = random_ratings(seed, n_clips=60, n_raters=7, missing=0.4)
    package = krippendorff.alpha(
        reliability_data=reliability_matrix(clip_idx, rater_idx, grade_idx, n_clips=60, n_raters=7),
        level_of_measurement="ordinal",
        value_domain=list(range(5)),
    )
    ours = krippendorff_alpha_ordinal(grade_counts(clip_idx, grade_idx, 60))
    assert ours == pytest.approx(package, abs=1e-12)


def test_a_bootstrap_resample_is_the_weighted_sum_of_clip_coincidences() -> None:
    # Drawing clip u w_u times is the same as repeating its column w_u times.
    clip_idx, rater_idx, grade_idx = random_ratings(3, n_clips=25, n_raters=6, missing=0.3)
    matrix = reliability_matrix(clip_idx, rater_idx, grade_idx, n_clips=25, n_raters=6)
    weights = np.random.default_rng(4).integers(0, 4, size=25)
    package = krippendorff.alpha(
        reliability_data=np.repeat(matrix, weights, axis=1),
        level_of_measurement="ordinal",
        value_domain=list(range(5)),
    )
    per_clip = clip_coincidences(grade_counts(clip_idx, grade_idx, 25))
    assert alpha_from_coincidences(np.tensordot(weights, per_clip, axes=1)) == pytest.approx(
        package, abs=1e-12
    )


def test_the_bootstrap_interval_brackets_alpha_and_repeats_with_its_seed() -> None:
    clip_idx, rater_idx, grade_idx = random_ratings(5, n_clips=200, n_raters=10, missing=0.2)
    options = {"n_clips": 200, "n_raters": 10, "n_resamples": 500}
    first = krippendorff_alpha(clip_idx, rater_idx, grade_idx, seed=7, **options)
    again = krippendorff_alpha(clip_idx, rater_idx, grade_idx, seed=7, **options)
    other = krippendorff_alpha(clip_idx, rater_idx, grade_idx, seed=8, **options)
    assert first.ci_low < first.alpha < first.ci_high
    assert first.ci_high - first.ci_low < 0.2
    assert (first.ci_low, first.ci_high) == (again.ci_low, again.ci_high)
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)


def test_without_resamples_the_interval_is_not_a_number() -> None:
    clip_idx, rater_idx, grade_idx = ratings_of(PUBLISHED_EXAMPLE)
    estimate = krippendorff_alpha(
        clip_idx, rater_idx, grade_idx, n_clips=12, n_raters=4, n_resamples=0
    )
    assert np.isnan(estimate.ci_low) and np.isnan(estimate.ci_high)


def test_fleiss_kappa_equals_statsmodels_when_every_clip_has_the_same_number_of_votes() -> None:
    clip_idx, _, grade_idx = random_ratings(6, n_clips=80, n_raters=9, missing=0.0)
    counts = grade_counts(clip_idx, grade_idx, 80)
    assert fleiss_kappa(counts) == pytest.approx(statsmodels_fleiss_kappa(counts), abs=1e-12)


def test_fleiss_kappa_of_the_classic_14_rater_example_is_0_210() -> None:
    # The textbook worked example of Fleiss' kappa (10 subjects, 14 raters, 5 categories):
    # category shares 0.143, 0.200, 0.279, 0.150, 0.229; P_bar = 0.378, P_e = 0.213.
    counts = np.array(
        [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ]
    )
    assert round(fleiss_kappa(counts), 3) == 0.210


def test_fleiss_kappa_with_unequal_votes_per_clip_matches_the_hand_computation() -> None:
    counts = np.array([[2, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 3, 0, 0], [0, 1, 0, 0, 0]])
    # The one-vote clip is left out. P_i = 1, 0, 1 -> P_bar = 2/3; shares 3/7, 1/7, 3/7 ->
    # P_e = 19/49; kappa = (2/3 - 19/49) / (30/49) = 41/90.
    assert fleiss_kappa(counts) == pytest.approx(41 / 90)


def test_every_fleiss_kappa_resample_equals_kappa_of_the_resampled_clips() -> None:
    clip_idx, _, grade_idx = random_ratings(3, n_clips=40, n_raters=6, missing=0.3)
    counts = grade_counts(clip_idx, grade_idx, 40)
    pairable = counts[counts.sum(axis=1) >= 2]
    weights = bootstrap_weights(len(pairable), n_resamples=60, seed=11)
    # The naive way: build each resample's clips (clip u repeated weights[b, u] times).
    naive = np.array([fleiss_kappa(np.repeat(pairable, row, axis=0)) for row in weights])
    estimate = fleiss_kappa_interval(counts, n_resamples=60, seed=11)
    tail = 0.025
    assert (estimate.ci_low, estimate.ci_high) == pytest.approx(
        tuple(np.quantile(naive, [tail, 1 - tail]))
    )
    assert estimate.kappa == pytest.approx(fleiss_kappa(counts))
    assert estimate.n_clips_pairable == len(pairable)


def test_the_fleiss_kappa_interval_brackets_kappa_narrows_with_clips_and_repeats() -> None:
    def interval(n_clips: int, seed: int = 7) -> tuple[float, float, float]:
        clip_idx, _, grade_idx = random_ratings(5, n_clips=n_clips, n_raters=10, missing=0.2)
        e = fleiss_kappa_interval(grade_counts(clip_idx, grade_idx, n_clips), seed=seed)
        return e.ci_low, e.kappa, e.ci_high

    low, kappa, high = interval(400)
    assert low < kappa < high
    small_low, _, small_high = interval(40)
    assert (high - low) < (small_high - small_low)  # ten times the clips, a narrower interval
    assert interval(400) == (low, kappa, high) and interval(400, seed=8) != (low, kappa, high)


def test_fleiss_kappa_has_no_interval_without_resamples_pairs_or_disagreement() -> None:
    counts = np.array([[2, 1, 0, 0, 0], [0, 3, 0, 0, 0]])
    assert np.isnan(fleiss_kappa_interval(counts, n_resamples=0).ci_low)
    lonely = fleiss_kappa_interval(np.array([[1, 0, 0, 0, 0]]), n_resamples=50)
    assert lonely.n_clips_pairable == 0 and np.isnan(lonely.kappa) and np.isnan(lonely.ci_high)
    same = fleiss_kappa_interval(np.array([[0, 3, 0, 0, 0], [0, 2, 0, 0, 0]]), n_resamples=50)
    assert np.isnan(same.kappa) and np.isnan(same.ci_low)
    with pytest.raises(ValueError, match="confidence must lie strictly between 0 and 1"):
        fleiss_kappa_interval(counts, confidence=1.0)


def test_quadratic_kappa_per_expert_equals_sklearn() -> None:
    rng = np.random.default_rng(9)
    group = rng.integers(0, 3, 300)
    first = rng.integers(0, 5, 300)
    second = np.clip(first + rng.integers(-1, 2, 300), 0, 4)
    ours = quadratic_kappa_per_group(group, first, second, n_groups=3)
    for g in range(3):
        mine = group == g
        expected = cohen_kappa_score(
            first[mine], second[mine], weights="quadratic", labels=list(range(5))
        )
        assert ours[g] == pytest.approx(expected, abs=1e-12)


def naive_expert_agreement(
    clip_idx: np.ndarray, rater_idx: np.ndarray, grade_idx: np.ndarray, n_raters: int
) -> dict[int, dict[str, float]]:
    """One vote at a time, the panel rebuilt from the other votes of its clip."""
    table: dict[int, dict[str, float]] = {}
    for rater in range(n_raters):
        deviations, emds, own, panel = [], [], [], []
        for i in np.flatnonzero(rater_idx == rater):
            others = [grade_idx[k] for k in range(len(clip_idx)) if clip_idx[k] == clip_idx[i]]
            others.remove(grade_idx[i])
            if not others:
                continue
            p = np.bincount(others, minlength=5) / len(others)
            loo_mean = float(np.mean(others)) + 1
            deviations.append(grade_idx[i] + 1 - loo_mean)
            emds.append(float(emd(np.eye(5)[grade_idx[i]], p)))
            own.append(int(grade_idx[i]))
            panel.append(int(np.floor(loo_mean + 0.5)) - 1)
        table[rater] = {
            "n_compared": len(own),
            "severity": np.mean(deviations),
            "mean_emd": np.mean(emds),
            "kappa_quadratic": cohen_kappa_score(
                own, panel, weights="quadratic", labels=list(range(5))
            ),
        }
    return table


def test_leave_one_out_statistics_match_a_naive_loop() -> None:
    clip_idx, rater_idx, grade_idx = random_ratings(10, n_clips=40, n_raters=5, missing=0.5)
    table = expert_agreement(clip_idx, rater_idx, grade_idx, n_clips=40, n_raters=5)
    for rater, expected in naive_expert_agreement(clip_idx, rater_idx, grade_idx, 5).items():
        for column, value in expected.items():
            assert table.loc[rater, column] == pytest.approx(value, abs=1e-12), column


def test_a_harsh_expert_has_a_positive_severity_and_a_lenient_one_a_negative() -> None:
    # Eight experts agree on each clip's grade; expert 8 grades one step worse, expert 9 one
    # step better (both capped at the ends of the scale).
    consensus = np.tile(np.arange(5), 10)
    grades = np.vstack(
        [np.tile(consensus, (8, 1)), np.minimum(consensus + 1, 4), np.maximum(consensus - 1, 0)]
    )
    rater_idx, clip_idx = np.indices(grades.shape).reshape(2, -1)
    table = expert_agreement(
        clip_idx, rater_idx, grades.ravel(), n_clips=consensus.size, n_raters=10
    )
    assert table.loc[8, "severity"] > 0.5
    assert table.loc[9, "severity"] < -0.5
    assert table.loc[8, "mean_emd"] > table.loc[0, "mean_emd"]
    assert table.loc[0, "kappa_quadratic"] > table.loc[8, "kappa_quadratic"]


def test_a_vote_on_a_clip_nobody_else_rated_is_not_compared() -> None:
    table = expert_agreement(
        np.array([0, 0, 1]), np.array([0, 1, 0]), np.array([1, 2, 3]), n_clips=2, n_raters=3
    )
    assert table.loc[0, "n_votes"] == 2
    assert table.loc[0, "n_compared"] == 1
    assert table.loc[0, "severity"] == pytest.approx(-1.0)  # B against a panel of C
    assert table.loc[2, "n_votes"] == 0
    assert np.isnan(table.loc[2, "severity"])


def test_repeat_consistency_per_expert_and_overall() -> None:
    result = intra_rater_consistency(
        np.array([0, 0, 1]), np.array([0, 1, 4]), np.array([0, 2, 2]), n_raters=3
    )
    assert result.per_rater["n_pairs"].tolist() == [2, 1, 0]
    assert result.per_rater.loc[0, "exact_agreement"] == 0.5
    assert result.per_rater.loc[0, "mean_abs_diff"] == 0.5
    assert result.per_rater.loc[1, "mean_abs_diff"] == 2.0
    assert np.isnan(result.per_rater.loc[2, "exact_agreement"])
    assert result.n_pairs == 3
    assert result.exact_agreement == pytest.approx(1 / 3)
    assert result.mean_abs_diff == pytest.approx(1.0)
