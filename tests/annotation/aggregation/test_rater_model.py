"""The rater model on simulated panels, where the true severities and distributions are known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize, sparse
from scipy.special import logsumexp

from annotation.aggregation import rater_model
from annotation.aggregation.distributions import RatingArrays, rating_arrays
from annotation.aggregation.rater_model import rater_model_fit
from benchmarks.rater_model import rater_model_validation
from simulator.panel import Panel
from simulator.synthetic import SyntheticConfig, sample_labels


def synthetic_ratings(
    *, n_clips: int, n_experts: int, votes_per_clip: int, seed: int
) -> tuple[RatingArrays, Panel, np.ndarray]:
    """Votes of the synthetic generator as index arrays, its panel and the clip qualities."""
    labels = sample_labels(
        config=SyntheticConfig(
            n_clips=n_clips, n_experts=n_experts, votes_per_clip=votes_per_clip, seed=seed
        )
    )
    ratings = rating_arrays(
        labels.ratings,
        clip_ids=labels.truth_clips["clip_id"].tolist(),
        rater_ids=labels.panel.rater_ids,
    )
    return ratings, labels.panel, labels.truth_clips["quality"].to_numpy()


def test_the_analytic_gradient_matches_finite_differences() -> None:
    ratings, _, _ = synthetic_ratings(n_clips=30, n_experts=6, votes_per_clip=4, seed=0)
    clip_idx, rater_idx, grade_idx = ratings.clip_idx, ratings.rater_idx, ratings.grade_idx
    z_grid = np.linspace(-6, 6, 121)
    log_prior = -0.5 * z_grid**2 - logsumexp(-0.5 * z_grid**2)
    problem = rater_model._Problem(
        votes=sparse.csr_matrix(
            (np.ones(clip_idx.size), (clip_idx, rater_idx * 5 + grade_idx)), shape=(30, 30)
        ),
        z_grid=z_grid,
        log_prior=log_prior,
        n_raters=6,
        n_ratings=clip_idx.size,
        severity_prior_sd=0.5,
        log_noise_prior_sd=0.5,
        threshold_prior_sd=3.0,
    )
    theta = rater_model._initial_theta(grade_idx, 6, noise=0.6)
    theta += np.random.default_rng(0).normal(0, 0.2, theta.size)  # away from the start
    error = optimize.check_grad(
        lambda t: rater_model._objective(t, problem)[0],
        lambda t: rater_model._objective(t, problem)[1],
        theta,
        epsilon=1e-6,
    )
    assert error < 1e-5


@pytest.fixture(scope="module")
def full_panel_fit() -> tuple[rater_model.RaterModelFit, np.ndarray, np.ndarray]:
    """150 clips, every one graded by all 40 experts."""
    ratings, panel, quality = synthetic_ratings(
        n_clips=150, n_experts=40, votes_per_clip=40, seed=1
    )
    fit = rater_model_fit(
        ratings.clip_idx, ratings.rater_idx, ratings.grade_idx, n_clips=150, n_raters=40
    )
    return fit, panel.severity, quality


def test_severities_of_a_full_panel_are_recovered(
    full_panel_fit: tuple[rater_model.RaterModelFit, np.ndarray, np.ndarray],
) -> None:
    fit, true_severity, quality = full_panel_fit
    assert fit.converged
    assert np.corrcoef(fit.severity, true_severity)[0, 1] > 0.9
    assert fit.severity.mean() == pytest.approx(0.0, abs=1e-9)
    assert np.corrcoef(fit.z_mean, quality)[0, 1] > 0.95
    assert np.all(np.diff(fit.thresholds) > 0)


def test_corrected_distributions_are_distributions(
    full_panel_fit: tuple[rater_model.RaterModelFit, np.ndarray, np.ndarray],
) -> None:
    fit = full_panel_fit[0]
    for reference in ("panel", "typical_rater"):
        corrected = fit.corrected_distribution(reference=reference)
        assert corrected.shape == (150, 5)
        assert corrected.sum(axis=1) == pytest.approx(np.ones(150))
    with pytest.raises(ValueError, match="reference must be"):
        fit.corrected_distribution(reference="median")  # type: ignore[arg-type]


def test_with_five_votes_per_clip_the_corrected_distribution_beats_the_raw_votes() -> None:
    result = rater_model_validation(votes_per_clip=5, seed=0)
    assert result.corrected_emd < result.raw_emd


def test_a_clip_without_votes_gets_the_population_prior() -> None:
    fit = rater_model_fit(
        np.array([0, 0, 1, 1]),
        np.array([0, 1, 0, 1]),
        np.array([1, 2, 2, 3]),
        n_clips=3,
        n_raters=2,
    )
    assert fit.z_mean[2] == pytest.approx(0.0, abs=1e-9)
    assert fit.z_sd[2] == pytest.approx(1.0, abs=1e-3)
