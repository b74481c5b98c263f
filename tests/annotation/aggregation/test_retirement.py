"""Adaptive retirement: the closed-form uncertainty and the stopping rule."""

from __future__ import annotations

import numpy as np
import pytest

from annotation.aggregation.distributions import emd
from annotation.aggregation.retirement import (
    DEFAULT_MAX_VOTES,
    posterior_expected_emd,
    retirement_decision,
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
