"""Adaptive retirement: the closed-form uncertainty and the stopping rule."""

from __future__ import annotations

import numpy as np
import pytest

from annotation.aggregation.distributions import emd
from annotation.aggregation.retirement import (
    DEFAULT_MAX_VOTES,
    RetirementRule,
    alpha_expected_emd,
    expected_emd_of_mean,
    mode_change_bound,
    posterior_alpha,
    posterior_expected_emd,
    prior_weight_fit,
    rater_adjusted_votes,
    retirement_decision,
    rule_alpha,
    rule_decision,
    severity_corrected_votes,
    votes_needed,
)


@pytest.mark.parametrize("counts", [[0, 0, 0, 0, 0], [9, 1, 0, 0, 0], [2, 7, 6, 3, 1]])
def test_the_closed_form_equals_a_monte_carlo_over_the_dirichlet_posterior(
    counts: list[int],
) -> None:
    alpha = np.asarray(counts) + 0.5
    draws = np.random.default_rng(0).dirichlet(alpha, size=200_000)
    monte_carlo = emd(draws, alpha / alpha.sum()).mean()
    assert posterior_expected_emd(np.asarray(counts), prior=0.5) == pytest.approx(
        monte_carlo, rel=0.01
    )


def test_more_votes_make_a_clip_more_certain_and_agreement_more_so() -> None:
    unanimous = posterior_expected_emd(np.array([[0, 5, 0, 0, 0], [0, 20, 0, 0, 0]]))
    split = posterior_expected_emd(np.array([0, 10, 10, 0, 0]))
    assert unanimous[1] < unanimous[0]
    assert unanimous[1] < split


def test_a_clip_is_not_retired_before_min_votes_however_unanimous() -> None:
    counts = np.array([[0, 6, 0, 0, 0], [0, 12, 0, 0, 0]])
    assert retirement_decision(counts, min_votes=10, tolerance=1.0).tolist() == [False, True]


def test_a_split_clip_waits_for_more_votes_until_max_votes() -> None:
    split = np.array([5, 5, 5, 5, 5])
    assert not retirement_decision(split, min_votes=10, max_votes=40, tolerance=0.01)
    assert retirement_decision(split, min_votes=10, max_votes=25, tolerance=0.01)


def test_the_defaults_retire_a_settled_clip_and_keep_an_open_one() -> None:
    decisions = retirement_decision(np.array([[0, 30, 2, 0, 0], [3, 4, 3, 0, 0]]))
    assert decisions.tolist() == [True, False]
    assert retirement_decision(np.array([8, 8, 8, 8, DEFAULT_MAX_VOTES - 32]))


def test_impossible_settings_and_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="min_votes <= max_votes"):
        retirement_decision(np.zeros(5), min_votes=20, max_votes=10)
    with pytest.raises(ValueError, match="5 columns"):
        retirement_decision(np.zeros(4))
    with pytest.raises(ValueError, match="negative"):
        posterior_expected_emd(np.array([1, -1, 0, 0, 0]))


# The combined posterior: model prior, rater-aware votes, the mode guard and the fit of m.

THRESHOLDS = np.array([-1.5, -0.5, 0.5, 1.5])  # E|D, D|C, C|B, B|A


def test_the_combined_posterior_of_a_hand_worked_clip() -> None:
    """Two votes: a harsh (severity +0.3), precise (noise 0.5) expert's C and a neutral, noisy
    (noise 1.0) expert's B; the prior: m = 2 pseudo-votes of a flat prediction.

    Severity: the C interval [-0.5, 0.5] moves up by 0.3 to [-0.2, 0.8]: 0.7 of it in C,
    0.3 in B. Weights: mean noise 0.75 / noise = 1.5 and 0.75. So the votes are
    1.5 * (0, .3, .7, 0, 0) + 0.75 * (0, 1, 0, 0, 0) = (0, 1.2, 1.05, 0, 0), and with the
    Jeffreys 0.5 and 2 * 0.2 per grade alpha = (0.9, 2.1, 1.95, 0.9, 0.9), a0 = 6.75.
    Cumulated: 0.9, 3.0, 4.95, 5.85, so E[EMD] = (0.9*5.85 + 3*3.75 + 4.95*1.8 + 5.85*0.9)
    / (6.75^2 * 7.75) = 30.69 / 353.109375."""
    votes = rater_adjusted_votes(
        np.array([0, 0]),
        np.array([0, 1]),
        np.array([2, 1]),
        n_clips=1,
        severity=np.array([0.3, 0.0]),
        noise=np.array([0.5, 1.0]),
        thresholds=THRESHOLDS,
    )
    np.testing.assert_allclose(votes, [[0.0, 1.2, 1.05, 0.0, 0.0]])
    alpha = posterior_alpha(votes, prior_q=np.full((1, 5), 0.2), prior_weight=np.array([2.0]))
    np.testing.assert_allclose(alpha, [[0.9, 2.1, 1.95, 0.9, 0.9]])
    assert alpha_expected_emd(alpha)[0] == pytest.approx(30.69 / 353.109375)
    outcome = rule_decision(
        votes,
        n_votes=np.array([2]),
        rule=RetirementRule(min_votes=2, tolerance=0.5, prior_discount=1.0),
        prior_q=np.full((1, 5), 0.2),
        prior_weight=np.array([2.0]),
    )
    assert outcome.prior_share[0] == pytest.approx(2.0 / 6.75)
    assert outcome.settled[0] and outcome.reason[0] == "settled"


def test_the_rule_counts_only_the_discounted_share_of_the_prior() -> None:
    """8 unanimous B votes and a prediction of B worth m = 10: counted whole, the clip settles
    (a0 = 20.5); counted at half (a0 = 15.5) it does not, at tolerance 0.0095."""
    votes = np.array([[0, 8, 0, 0, 0]])
    q = np.array([[0.0, 1.0, 0.0, 0.0, 0.0]])
    whole = RetirementRule(min_votes=5, tolerance=0.0095, prior_discount=1.0)
    half = RetirementRule(min_votes=5, tolerance=0.0095, prior_discount=0.5)
    assert alpha_expected_emd(rule_alpha(votes, rule=whole, prior_q=q, prior_weight=10.0)) <= 0.0095
    assert alpha_expected_emd(rule_alpha(votes, rule=half, prior_q=q, prior_weight=10.0)) > 0.0095
    n = np.array([8])
    assert rule_decision(votes, n_votes=n, rule=whole, prior_q=q, prior_weight=10.0).settled[0]
    outcome = rule_decision(votes, n_votes=n, rule=half, prior_q=q, prior_weight=10.0)
    assert not outcome.settled[0] and outcome.reason[0] == "uncertain"
    assert outcome.prior_share[0] == pytest.approx(5.0 / 15.5)


def test_a_lenient_experts_top_grade_is_moved_down_and_a_plain_vote_is_left_alone() -> None:
    soft = severity_corrected_votes(np.array([0, 4, 2]), np.array([-0.5, 0.4, 0.0]), THRESHOLDS)
    # A at [1.5, 2.5] (A counts as wide as an inner grade) moved to [1.0, 2.0]: half B.
    np.testing.assert_allclose(soft[0], [0.5, 0.5, 0, 0, 0])
    np.testing.assert_allclose(soft[1], [0, 0, 0, 0.4, 0.6])  # a harsh expert's E: partly D
    np.testing.assert_allclose(soft[2], [0, 0, 1, 0, 0])


def test_a_rater_the_model_has_not_fitted_votes_plainly_with_weight_one() -> None:
    votes = rater_adjusted_votes(
        np.array([0, 0]),
        np.array([0, 1]),
        np.array([1, 1]),
        n_clips=1,
        severity=np.array([0.3, np.nan]),
        noise=np.array([0.5, np.nan]),
        thresholds=THRESHOLDS,
    )
    # Expert 0 alone among the fitted: weight 1 (its own mean), B moved up by 0.3 into A.
    np.testing.assert_allclose(votes, [[0.3, 1.7, 0, 0, 0]])


def test_the_mode_guard_holds_a_clip_split_between_two_grades() -> None:
    split = np.array([[0, 10, 10, 0, 0]])
    clear = np.array([[0, 18, 2, 0, 0]])
    assert mode_change_bound(split + 0.5)[0] > 0.5
    assert mode_change_bound(clear + 0.5)[0] < 0.01
    rule = RetirementRule(min_votes=10, tolerance=1.0, mode_guard=0.3)
    outcome = rule_decision(np.vstack([split, clear]), n_votes=np.array([20, 20]), rule=rule)
    assert outcome.settled.tolist() == [False, True]
    assert outcome.reason[0] == "mode"


def test_the_mode_bound_is_close_to_a_monte_carlo_where_two_grades_compete() -> None:
    alpha = np.array([0.5, 8.5, 6.5, 1.5, 0.5])
    draws = np.random.default_rng(1).dirichlet(alpha, size=200_000)
    monte_carlo = float((draws.argmax(axis=1) != 1).mean())
    bound = float(mode_change_bound(alpha))
    assert monte_carlo - 0.01 <= bound <= monte_carlo + 0.08


def _full_panels(n_clips: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.dirichlet(np.array([1.0, 3.0, 3.0, 1.5, 0.5]) * 2, size=n_clips)
    counts = np.array([rng.multinomial(40, p) for p in truth])
    return counts, truth


def test_the_prior_weight_of_random_predictions_is_fitted_to_zero() -> None:
    counts, _truth = _full_panels(300, seed=0)
    random_q = np.random.default_rng(5).dirichlet(np.ones(5), size=300)
    fit = prior_weight_fit(counts, random_q)
    assert fit.weight == 0.0
    assert "prior not used" in fit.reason
    assert fit.n_clips == 300


def test_the_prior_weight_of_good_predictions_is_large_and_helps_held_out_clips() -> None:
    counts, truth = _full_panels(300, seed=1)
    fit = prior_weight_fit(counts, truth)
    assert fit.weight >= 10
    assert fit.emd_with < 0.8 * fit.emd_without
    assert len(fit.fold_weights) == 5


def test_too_few_full_panels_give_no_prior() -> None:
    counts, truth = _full_panels(8, seed=2)
    fit = prior_weight_fit(counts, truth)
    assert fit.weight == 0.0 and "too few" in fit.reason


def test_the_closed_form_error_of_the_posterior_mean_matches_random_subsamples() -> None:
    counts = np.array([[4, 20, 10, 5, 1]])
    q = np.array([[0.1, 0.45, 0.3, 0.1, 0.05]])
    rng = np.random.default_rng(3)
    panel = np.repeat(np.arange(5), counts[0])
    full = counts[0] / counts[0].sum()
    errors = []
    for _ in range(20_000):
        seen = np.bincount(rng.choice(panel, 10, replace=False), minlength=5)
        mean = (seen + 0.5 + 3.0 * q[0]) / (10 + 2.5 + 3.0)
        errors.append(emd(mean, full))
    expected = expected_emd_of_mean(counts, q, 3.0, n_seen=10)[0]
    assert expected == pytest.approx(np.mean(errors), rel=0.03)


def test_votes_needed_is_zero_for_a_settled_clip_and_grows_with_disagreement() -> None:
    rule = RetirementRule(min_votes=10, max_votes=40, tolerance=0.0175)
    alpha = np.array([[0.5, 20.5, 0.5, 0.5, 0.5], [0.5, 3.5, 3.5, 0.5, 0.5], [3, 3, 3, 3, 3.0]])
    needed = votes_needed(alpha, n_votes=np.array([20, 6, 12]), rule=rule)
    assert needed[0] == 0
    assert 0 < needed[1] < needed[2] <= 40 - 12
