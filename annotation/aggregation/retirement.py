"""Adaptive retirement: stop asking experts about a clip once its grade distribution is settled.

A clip's votes n_A..n_E give a Dirichlet posterior over its true distribution,
Dirichlet(n + prior). The clip's uncertainty is the expected EMD (the paper's eq. 6, squared
CDF differences) between a draw from that posterior and the posterior mean. Each cumulative
share F_k = p_A + .. + p_k of a Dirichlet is Beta(a_k, a_0 - a_k) with a_k the cumulated
parameters, so the expectation is a sum of Beta variances, in closed form:

    E[EMD] = sum_{k=A..D} a_k (a_0 - a_k) / (a_0^2 (a_0 + 1)).

A clip is retired once it has at least `min_votes` votes and its uncertainty is at most
`tolerance`, or once it has `max_votes` votes. The defaults come from `benchmarks/retirement.py`
(a simulated 40-expert panel, 615 clips): they save at least 40% of the expert votes of an
every-expert-rates-every-clip design, with a mean EMD to the full panel's distribution of at
most 0.01 (measured: 44.5% saved, mean EMD 0.0084, about 22 votes per clip). With this
tolerance even a unanimous clip needs 14 votes, so `min_votes` is a guard for looser settings.

Plain numpy, no Django.
"""

from __future__ import annotations

import numpy as np

from annotation.grades import N_GRADES

DEFAULT_PRIOR = 0.5  # Dirichlet pseudo-votes per grade (Jeffreys): a weak, symmetric start
DEFAULT_MIN_VOTES = 10  # never judge a clip on a handful of votes, however unanimous
DEFAULT_MAX_VOTES = 40  # the paper's panel size: beyond it a clip is retired regardless
DEFAULT_TOLERANCE = 0.0175  # expected EMD to the posterior mean; see benchmarks/retirement.py


def _counts_checked(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts)
    if counts.shape[-1:] != (N_GRADES,):
        raise ValueError(
            f"counts must have {N_GRADES} columns (A..E) in its last axis, got {counts.shape}."
        )
    if np.any(counts < 0):
        raise ValueError("counts must not be negative.")
    return counts.astype(float)


def posterior_expected_emd(counts: np.ndarray, *, prior: float = DEFAULT_PRIOR) -> np.ndarray:
    """Expected EMD between a Dirichlet(counts + prior) draw and its mean, in closed form.

    counts: (..., 5) votes A..E; returns (...). Shrinks roughly like 1 / (votes + 5 * prior).
    """
    if prior <= 0:
        raise ValueError(f"prior must be positive, got {prior}.")
    alpha = _counts_checked(counts) + prior
    total = alpha.sum(axis=-1, keepdims=True)
    cumulated = np.cumsum(alpha, axis=-1)[..., :-1]  # F_E is always 1: no variance
    beta_var = cumulated * (total - cumulated) / (total**2 * (total + 1.0))
    return beta_var.sum(axis=-1)


def retirement_decision(
    counts: np.ndarray,
    *,
    min_votes: int = DEFAULT_MIN_VOTES,
    max_votes: int = DEFAULT_MAX_VOTES,
    tolerance: float = DEFAULT_TOLERANCE,
    prior: float = DEFAULT_PRIOR,
) -> np.ndarray:
    """Whether each clip is settled and can leave the rating queue.

    counts: (5,) for one clip or (n_clips, 5). Returns a bool array of shape counts.shape[:-1]
    (a 0-d array for one clip: `bool(...)` reads it).
    """
    if not 0 <= min_votes <= max_votes:
        raise ValueError(
            f"Need 0 <= min_votes <= max_votes, got min_votes={min_votes}, max_votes={max_votes}."
        )
    counts = _counts_checked(counts)
    n = counts.sum(axis=-1)
    settled = (n >= min_votes) & (posterior_expected_emd(counts, prior=prior) <= tolerance)
    return settled | (n >= max_votes)


__all__ = [
    "DEFAULT_MAX_VOTES",
    "DEFAULT_MIN_VOTES",
    "DEFAULT_PRIOR",
    "DEFAULT_TOLERANCE",
    "posterior_expected_emd",
    "retirement_decision",
]
