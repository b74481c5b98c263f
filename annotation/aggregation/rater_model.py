"""The ordinal rater model fitted to real votes: expert severity and noise, clip quality, and a
severity-corrected grade distribution per clip.

The model is the one `simulator.panel` simulates: expert j sees clip i as
``z_i - severity_j + noise_j * e`` (e ~ N(0, 1)) and cuts it on thresholds t_1 < .. < t_4 shared
by the panel into E < D < C < B < A. Higher z = better clip; positive severity = harsher expert.

Fit: marginal maximum likelihood with the clip qualities integrated out on a fixed grid
(population prior z ~ N(0, 1)), L-BFGS on an analytic gradient. Identifiability:
  - the population prior z ~ N(0, 1) fixes the location and scale of the latent axis;
  - severities are centred (mean 0), so a panel that is harsh as a whole moves the thresholds,
    not the severities;
  - weak priors keep experts with few votes sane: severity_j ~ N(0, severity_prior_sd^2) and
    log noise_j ~ N(mean log noise of the panel, log_noise_prior_sd^2), that mean itself
    broadly around log 0.7 (`_LOG_NOISE_CENTRE`); thresholds get a
    broad N(0, threshold_prior_sd^2) so an unused grade cannot push them to infinity
    (penalised likelihood; the clips themselves are integrated over their prior).
On the grid a vote's probability depends on its clip only through the grid point, so the
likelihood needs one (n_raters, 5, n_grid) table of log P(grade | grid point, expert) and one
sparse (clips x (rater, grade)) product: a 615 x 40 panel fits in about a second.

Each clip's posterior over the grid gives z (mean, sd) and the corrected distribution: the
expected grade distribution of the whole fitted panel (or of a typical rater, severity 0 and
the panel's mean noise) averaged over that posterior. With few votes per clip it is closer to
what the full panel would say than the raw normalised votes are: it removes the luck of which
(harsh or lenient) experts happened to vote and shrinks towards the population.

Plain numpy/scipy, no Django.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import optimize, sparse
from scipy.special import logsumexp, ndtr, ndtri

from annotation.aggregation.distributions import check_index
from annotation.grades import N_GRADES

# Stands in for an infinite outer threshold: keeps u * pdf(u) at 0 where +-inf would give NaN.
_FAR = 1e6
_TINY = 1e-300
# Hyperprior of the panel's mean log noise, N(log 0.7, 1): broad, but it stops a small data set
# from explaining every vote with noise-free experts (a panel-wide collapse of the noise).
_LOG_NOISE_CENTRE, _LOG_NOISE_CENTRE_SD = np.log(0.7), 1.0

Reference = Literal["panel", "typical_rater"]


@dataclass(frozen=True)
class RaterModelFit:
    """A fitted rater model. Latent units: the clip population has mean 0 and sd 1."""

    severity: np.ndarray  # (n_raters,), positive = harsher, mean 0
    noise: np.ndarray  # (n_raters,), sd of each expert's perception
    thresholds: np.ndarray  # (4,), increasing: E|D, D|C, C|B, B|A
    z_grid: np.ndarray  # (n_grid,) latent quality grid
    posterior: np.ndarray  # (n_clips, n_grid), each clip's posterior over the grid
    has_votes: np.ndarray  # (n_raters,) bool, raters that voted (the fitted panel)
    log_likelihood: float  # marginal log-likelihood of the votes (without the priors)
    n_iterations: int
    converged: bool

    @property
    def z_mean(self) -> np.ndarray:
        """Posterior mean quality per clip, (n_clips,)."""
        return self.posterior @ self.z_grid

    @property
    def z_sd(self) -> np.ndarray:
        """Posterior sd of the quality per clip, (n_clips,)."""
        second = self.posterior @ self.z_grid**2
        return np.sqrt(np.maximum(second - self.z_mean**2, 0.0))

    def corrected_distribution(self, *, reference: Reference = "panel") -> np.ndarray:
        """Severity-corrected grade distribution per clip, (n_clips, 5), columns A..E.

        reference="panel": the expected votes of the whole fitted panel (every expert that
          voted), i.e. an estimate of the distribution the full panel would give;
        reference="typical_rater": the distribution of one rater with severity 0 and the
          panel's mean noise (narrower than the panel's, which also mixes severities).
        Both are averaged over each clip's posterior of z.
        """
        if reference == "panel":
            severity = self.severity[self.has_votes]
            noise = self.noise[self.has_votes]
        elif reference == "typical_rater":
            severity = np.zeros(1)
            noise = np.array([self.noise[self.has_votes].mean()])
        else:
            raise ValueError(f"reference must be 'panel' or 'typical_rater', got {reference!r}.")
        probs = np.exp(_log_grade_probabilities(self.z_grid, severity, noise, self.thresholds)[0])
        return self.posterior @ probs.mean(axis=0).T  # (clips, grid) @ (grid, 5)


def _grade_bounds(thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper latent bound of each grade A..E: A is above t_4, E below t_1."""
    t = np.asarray(thresholds, dtype=float)
    upper = np.concatenate([[_FAR], t[::-1]])
    lower = np.concatenate([t[::-1], [-_FAR]])
    return lower, upper


def _log_grade_probabilities(
    z_grid: np.ndarray, severity: np.ndarray, noise: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """log P(grade | z, expert) on the grid, (n_raters, 5, n_grid), and the pieces of its
    derivative: u_lo, u_hi (standardised bounds) and pdf(u)/P at both bounds."""
    lower, upper = _grade_bounds(thresholds)
    perceived = z_grid[None, :] - severity[:, None]  # (raters, grid)
    scale = noise[:, None, None]
    u_hi = (upper[None, :, None] - perceived[:, None, :]) / scale  # (raters, 5, grid)
    u_lo = (lower[None, :, None] - perceived[:, None, :]) / scale
    # Both bounds far above the mean: subtract upper tails instead, to keep the precision.
    prob = np.where(u_lo > 0, ndtr(-u_lo) - ndtr(-u_hi), ndtr(u_hi) - ndtr(u_lo))
    prob = np.maximum(prob, _TINY)
    pdf_hi = np.exp(-0.5 * u_hi**2) / np.sqrt(2 * np.pi) / prob
    pdf_lo = np.exp(-0.5 * u_lo**2) / np.sqrt(2 * np.pi) / prob
    return np.log(prob), u_lo, u_hi, pdf_lo, pdf_hi


@dataclass(frozen=True)
class _Problem:
    votes: sparse.csr_matrix  # (n_clips, n_raters * 5): votes per clip, expert and grade
    z_grid: np.ndarray
    log_prior: np.ndarray  # (n_grid,) log weights of z ~ N(0, 1) on the grid, sum to 1
    n_raters: int
    n_ratings: int
    severity_prior_sd: float
    log_noise_prior_sd: float
    threshold_prior_sd: float


def _unpack(theta: np.ndarray, n_raters: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """theta = [severity (free, centred here), log noise, t_1, log gaps t_{k+1} - t_k]."""
    severity_free = theta[:n_raters]
    severity = severity_free - severity_free.mean()
    log_noise = theta[n_raters : 2 * n_raters]
    t_first, log_gaps = theta[2 * n_raters], theta[2 * n_raters + 1 :]
    thresholds = t_first + np.concatenate([[0.0], np.cumsum(np.exp(log_gaps))])
    return severity, log_noise, thresholds


def _objective(theta: np.ndarray, problem: _Problem) -> tuple[float, np.ndarray]:
    """Penalised negative marginal log-likelihood per rating and its gradient."""
    n_raters = problem.n_raters
    severity, log_noise, thresholds = _unpack(theta, n_raters)
    noise = np.exp(log_noise)
    log_prob, u_lo, u_hi, pdf_lo, pdf_hi = _log_grade_probabilities(
        problem.z_grid, severity, noise, thresholds
    )
    n_grid = problem.z_grid.size
    joint = problem.votes @ log_prob.reshape(n_raters * N_GRADES, n_grid) + problem.log_prior
    clip_log_lik = logsumexp(joint, axis=1)
    posterior = np.exp(joint - clip_log_lik[:, None])
    # How much each log P(grade | grid point, expert) entry weighs in the likelihood.
    weight = np.asarray(problem.votes.T @ posterior).reshape(n_raters, N_GRADES, n_grid)
    d_hi = weight * pdf_hi  # d loglik / d u_hi
    d_lo = -weight * pdf_lo  # d loglik / d u_lo
    grad_severity = (d_hi + d_lo).sum(axis=(1, 2)) / noise  # u = (bound - z + s) / noise
    grad_log_noise = -(d_hi * u_hi + d_lo * u_lo).sum(axis=(1, 2))
    per_bound_hi = (d_hi / noise[:, None, None]).sum(axis=(0, 2))  # (5,) over grades A..E
    per_bound_lo = (d_lo / noise[:, None, None]).sum(axis=(0, 2))
    # Grade A..E's upper bound is (far, t4, t3, t2, t1), its lower bound (t4, t3, t2, t1, far).
    grad_thresholds = per_bound_hi[1:][::-1] + per_bound_lo[:-1][::-1]

    # Priors (penalties) on experts and thresholds; log noise shrinks towards the panel's mean.
    log_noise_gap = log_noise - log_noise.mean()
    log_noise_drift = log_noise.mean() - _LOG_NOISE_CENTRE
    penalty = 0.5 * np.sum(severity**2) / problem.severity_prior_sd**2
    penalty += 0.5 * np.sum(log_noise_gap**2) / problem.log_noise_prior_sd**2
    penalty += 0.5 * log_noise_drift**2 / _LOG_NOISE_CENTRE_SD**2
    severity_free_mean = theta[:n_raters].mean()
    penalty += 0.5 * severity_free_mean**2  # pins the free (unidentified) offset
    penalty += 0.5 * np.sum(thresholds**2) / problem.threshold_prior_sd**2

    grad_sev_total = -grad_severity + severity / problem.severity_prior_sd**2
    grad = np.empty_like(theta)
    # Chain rule through the centring s = s_free - mean(s_free).
    grad[:n_raters] = grad_sev_total - grad_sev_total.mean() + severity_free_mean / n_raters
    grad[n_raters : 2 * n_raters] = (
        -grad_log_noise
        + log_noise_gap / problem.log_noise_prior_sd**2
        + log_noise_drift / _LOG_NOISE_CENTRE_SD**2 / n_raters
    )
    # t_k = t_1 + sum_{m<k} exp(log_gap_m): t_1 moves all thresholds, a gap all above it.
    grad_t = -grad_thresholds + thresholds / problem.threshold_prior_sd**2
    grad[2 * n_raters] = grad_t.sum()
    grad[2 * n_raters + 1 :] = np.exp(theta[2 * n_raters + 1 :]) * np.cumsum(grad_t[::-1])[::-1][1:]
    value = -clip_log_lik.sum() + penalty
    return value / problem.n_ratings, grad / problem.n_ratings


def _initial_theta(grade_idx: np.ndarray, n_raters: int, noise: float) -> np.ndarray:
    """Thresholds matching the panel's overall grade shares, every expert average."""
    shares = np.bincount(grade_idx, minlength=N_GRADES) + 0.5
    shares = shares / shares.sum()
    # Marginally a vote is N(0, 1 + noise^2) on the latent axis; cut it at the shares E..A.
    cumulative_from_e = np.cumsum(shares[::-1])[:-1]
    thresholds = np.sqrt(1.0 + noise**2) * ndtri(cumulative_from_e)
    gaps = np.maximum(np.diff(thresholds), 1e-2)
    return np.concatenate(
        [np.zeros(n_raters), np.full(n_raters, np.log(noise)), [thresholds[0]], np.log(gaps)]
    )


def rater_model_fit(
    clip_idx: np.ndarray,
    rater_idx: np.ndarray,
    grade_idx: np.ndarray,
    *,
    n_clips: int,
    n_raters: int,
    severity_prior_sd: float = 0.5,
    log_noise_prior_sd: float = 0.5,
    threshold_prior_sd: float = 3.0,
    grid_size: int = 241,
    grid_limit: float = 6.0,
    max_iterations: int = 1000,
) -> RaterModelFit:
    """Fit the ordinal rater model to votes given as aligned (clip, rater, grade index) arrays.

    severity_prior_sd, log_noise_prior_sd: the experts' priors (see the module docstring),
      in latent units where the clip population has sd 1;
    threshold_prior_sd: a weak N(0, sd^2) prior on each threshold, so a grade nobody used
      yet (an early dataset without A votes) leaves its threshold finite;
    grid_size, grid_limit: the quality grid z in [-grid_limit, grid_limit] that the posterior
      of each clip lives on (spacing 0.05 by default, fine next to a 40-vote posterior's sd).
    A clip without votes gets the population prior as its posterior.
    """
    clip_idx = check_index("clip_idx", clip_idx, n_clips)
    rater_idx = check_index("rater_idx", rater_idx, n_raters)
    grade_idx = check_index("grade_idx", grade_idx, N_GRADES)
    if not clip_idx.size == rater_idx.size == grade_idx.size:
        raise ValueError("clip_idx, rater_idx and grade_idx must be aligned.")
    if clip_idx.size == 0:
        raise ValueError("The rater model needs at least one vote.")
    z_grid = np.linspace(-grid_limit, grid_limit, grid_size)
    log_prior = -0.5 * z_grid**2
    log_prior -= logsumexp(log_prior)
    votes = sparse.csr_matrix(
        (np.ones(clip_idx.size), (clip_idx, rater_idx * N_GRADES + grade_idx)),
        shape=(n_clips, n_raters * N_GRADES),
    )  # duplicates are summed: a repeated vote counts twice
    problem = _Problem(
        votes=votes,
        z_grid=z_grid,
        log_prior=log_prior,
        n_raters=n_raters,
        n_ratings=int(clip_idx.size),
        severity_prior_sd=severity_prior_sd,
        log_noise_prior_sd=log_noise_prior_sd,
        threshold_prior_sd=threshold_prior_sd,
    )
    result = optimize.minimize(
        _objective,
        _initial_theta(grade_idx, n_raters, noise=np.exp(_LOG_NOISE_CENTRE)),
        args=(problem,),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iterations},
    )
    severity, log_noise, thresholds = _unpack(result.x, n_raters)
    noise = np.exp(log_noise)
    log_prob = _log_grade_probabilities(z_grid, severity, noise, thresholds)[0]
    joint = votes @ log_prob.reshape(n_raters * N_GRADES, grid_size) + log_prior
    clip_log_lik = logsumexp(joint, axis=1)
    return RaterModelFit(
        severity=severity,
        noise=noise,
        thresholds=thresholds,
        z_grid=z_grid,
        posterior=np.exp(joint - clip_log_lik[:, None]),
        has_votes=np.bincount(rater_idx, minlength=n_raters) > 0,
        log_likelihood=float(clip_log_lik.sum()),
        n_iterations=int(result.nit),
        converged=bool(result.success),
    )


__all__ = [
    "RaterModelFit",
    "rater_model_fit",
]
