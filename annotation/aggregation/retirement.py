"""Adaptive retirement: stop asking experts about a clip once its grade distribution is settled.

A clip's votes give a Dirichlet posterior over its true distribution, Dirichlet(alpha) with

    alpha = prior + m * q + sum over votes of w_j * v_j

- `prior`: the symmetric start, 0.5 pseudo-votes per grade (Jeffreys);
- `m * q`: the model's prediction q of the clip (from a production run that did not train on
  it) as m pseudo-votes, m fitted per run on clips with full panels
  (`prior_weight_fit`); m = 0 without a run or when the prediction does not help. The rule
  counts `prior_discount * m` of them: m is the weight that makes the posterior mean closest
  to the full panel, but the prediction's error is not a sampling error that more votes
  average away, so stopping on all m pseudo-votes stops too early (the benchmark chose the
  discount);
- `w_j * v_j`: each vote as a rater-aware soft vote (`rater_adjusted_votes`): v_j is the
  expert's grade with their fitted severity corrected (a harsh expert's C is moved towards B
  by the share of the grade interval the severity shifts across), w_j their reliability
  (the panel's mean noise / their noise, clipped to [0.5, 2]). Without a rater model (or for
  an expert it has not fitted) v_j is the plain grade and w_j = 1.

The clip's uncertainty is the expected EMD (the paper's eq. 6, squared CDF differences)
between a draw from the posterior and its mean. Each cumulative share F_k = p_A + .. + p_k of
a Dirichlet is Beta(a_k, a_0 - a_k) with a_k the cumulated parameters, so in closed form:

    E[EMD] = sum_{k=A..D} a_k (a_0 - a_k) / (a_0^2 (a_0 + 1)).

The mode guard: the probability that the posterior's grade mode differs from the current one
(the mode of the posterior mean), bounded above by the sum over the other grades k of
P(p_k > p_mode), each by a normal approximation of p_k - p_mode (Dirichlet means and
covariances, closed form). A clip whose bound exceeds `mode_guard` keeps collecting.

A clip is retired once it has at least `min_votes` votes, its expected EMD is at most
`tolerance` and its mode-change bound at most `mode_guard`; or once it has `max_votes` votes.
The defaults come from `benchmarks/retirement.py` (a simulated 40-expert panel, 615 clips,
5 seeds). Plain numpy, no Django.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from annotation.grades import N_GRADES

DEFAULT_PRIOR = 0.5  # Dirichlet pseudo-votes per grade (Jeffreys): a weak, symmetric start
DEFAULT_MIN_VOTES = 10  # never judge a clip on a handful of votes, however unanimous
DEFAULT_MAX_VOTES = 40  # the paper's panel size: beyond it a clip is retired regardless
DEFAULT_TOLERANCE = 0.0175  # expected EMD to the posterior mean; see benchmarks/retirement.py
# The share of the fitted m the stopping rule counts (see the module docstring).
DEFAULT_PRIOR_DISCOUNT = 0.25
DEFAULT_MODE_GUARD = 1.0  # bound on P(another grade mode); 1.0 = off (see the benchmark)
# Reliability weights: the panel's mean noise / the expert's noise, kept in this range so one
# expert fitted as near noise-free cannot settle a clip alone.
WEIGHT_RANGE = (0.5, 2.0)
# Prior-weight fit: the vote counts at which the posterior mean is judged, the grid of m and
# the least relative gain in held-out EMD for m > 0 to be kept (else m = 0: "bad fit").
PRIOR_FIT_VOTES = (5, 10, 15, 20)
PRIOR_WEIGHT_GRID = tuple(float(m) for m in np.round(np.arange(0.0, 40.01, 0.5), 2))
PRIOR_FIT_MIN_GAIN = 0.02


@dataclass(frozen=True)
class RetirementRule:
    """The settings of the rule, as one value (stored and audited when it changes)."""

    min_votes: int = DEFAULT_MIN_VOTES
    max_votes: int = DEFAULT_MAX_VOTES
    tolerance: float = DEFAULT_TOLERANCE
    prior_discount: float = DEFAULT_PRIOR_DISCOUNT
    mode_guard: float = DEFAULT_MODE_GUARD
    rater_aware: bool = False
    prior: float = DEFAULT_PRIOR

    def __post_init__(self) -> None:
        if not 0 <= self.min_votes <= self.max_votes:
            raise ValueError(
                f"Need 0 <= min_votes <= max_votes, got min_votes={self.min_votes}, "
                f"max_votes={self.max_votes}."
            )
        if not self.tolerance > 0:
            raise ValueError(f"tolerance must be positive, got {self.tolerance}.")
        if not 0 <= self.prior_discount <= 1:
            raise ValueError(f"prior_discount must lie in [0, 1], got {self.prior_discount}.")
        if not 0 < self.mode_guard <= 1:
            raise ValueError(f"mode_guard must lie in (0, 1], got {self.mode_guard}.")
        if self.prior <= 0:
            raise ValueError(f"prior must be positive, got {self.prior}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    """Phi(z) to about 1e-7 (Abramowitz & Stegun 7.1.26 for erf), in numpy: the vote path
    imports no scipy (tests/test_layout.py)."""
    x = np.abs(z) / np.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    erf = 1.0 - poly * np.exp(-(x**2))
    return 0.5 * (1.0 + np.sign(z) * erf)


def _counts_checked(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts)
    if counts.shape[-1:] != (N_GRADES,):
        raise ValueError(
            f"counts must have {N_GRADES} columns (A..E) in its last axis, got {counts.shape}."
        )
    if np.any(counts < 0):
        raise ValueError("counts must not be negative.")
    return counts.astype(float)


def posterior_alpha(
    votes: np.ndarray,
    *,
    prior: float = DEFAULT_PRIOR,
    prior_q: np.ndarray | None = None,
    prior_weight: float | np.ndarray = 0.0,
) -> np.ndarray:
    """Dirichlet parameters of the combined posterior: prior + m * q + (weighted) votes.

    votes: (..., 5) counts or weighted soft votes; prior_q: (..., 5) or (5,) predicted
    distribution (rows summing to 1), None for no model prior; prior_weight: m, a scalar or
    (...,) per clip (0 where a clip has no prediction).
    """
    if prior <= 0:
        raise ValueError(f"prior must be positive, got {prior}.")
    alpha = _counts_checked(votes) + prior
    if prior_q is not None:
        q = _counts_checked(prior_q)
        weight = np.asarray(prior_weight, dtype=float)
        if np.any(weight < 0):
            raise ValueError("prior_weight must not be negative.")
        alpha = alpha + weight[..., None] * q
    return alpha


def alpha_expected_emd(alpha: np.ndarray) -> np.ndarray:
    """Expected EMD between a Dirichlet(alpha) draw and its mean: (..., 5) -> (...)."""
    alpha = np.asarray(alpha, dtype=float)
    total = alpha.sum(axis=-1, keepdims=True)
    cumulated = np.cumsum(alpha, axis=-1)[..., :-1]  # F_E is always 1: no variance
    beta_var = cumulated * (total - cumulated) / (total**2 * (total + 1.0))
    return beta_var.sum(axis=-1)


def posterior_expected_emd(counts: np.ndarray, *, prior: float = DEFAULT_PRIOR) -> np.ndarray:
    """Expected EMD between a Dirichlet(counts + prior) draw and its mean, in closed form.

    counts: (..., 5) votes A..E; returns (...). Shrinks roughly like 1 / (votes + 5 * prior).
    """
    return alpha_expected_emd(posterior_alpha(counts, prior=prior))


def mode_change_bound(alpha: np.ndarray) -> np.ndarray:
    """Upper bound on P(the grade mode of a Dirichlet(alpha) draw is not the mode of its mean):
    sum over k != mode of P(p_k > p_mode), each by a normal approximation. (..., 5) -> (...)."""
    alpha = np.asarray(alpha, dtype=float)
    total = alpha.sum(axis=-1, keepdims=True)
    mean = alpha / total
    mode = np.argmax(mean, axis=-1)[..., None]
    mean_mode = np.take_along_axis(mean, mode, axis=-1)
    # Var(p_k - p_m) = (m_k(1-m_k) + m_m(1-m_m) + 2 m_k m_m) / (a0 + 1)
    var = (mean * (1 - mean) + mean_mode * (1 - mean_mode) + 2 * mean * mean_mode) / (total + 1)
    z = (mean - mean_mode) / np.sqrt(np.maximum(var, 1e-300))
    tail = _normal_cdf(z)
    np.put_along_axis(tail, mode, 0.0, axis=-1)  # the mode itself
    return np.minimum(tail.sum(axis=-1), 1.0)


def retirement_decision(
    counts: np.ndarray,
    *,
    min_votes: int = DEFAULT_MIN_VOTES,
    max_votes: int = DEFAULT_MAX_VOTES,
    tolerance: float = DEFAULT_TOLERANCE,
    prior: float = DEFAULT_PRIOR,
) -> np.ndarray:
    """Today's rule on plain counts (no model prior, no rater weights, no mode guard).

    counts: (5,) for one clip or (n_clips, 5). Returns a bool array of shape counts.shape[:-1]
    (a 0-d array for one clip: `bool(...)` reads it).
    """
    rule = RetirementRule(
        min_votes=min_votes, max_votes=max_votes, tolerance=tolerance, prior=prior
    )
    counts = _counts_checked(counts)
    return rule_decision(counts, n_votes=counts.sum(axis=-1), rule=rule).settled


@dataclass(frozen=True)
class RuleOutcome:
    """The rule applied to clips: each array (...,), the quantities a curator is shown."""

    settled: np.ndarray  # bool
    expected_emd: np.ndarray  # of the combined posterior
    mode_change: np.ndarray  # the mode-change bound
    prior_share: np.ndarray  # counted m / the posterior's concentration: the model's pull
    reason: np.ndarray  # str: "settled", "max_votes", "too_few_votes", "uncertain", "mode"


def rule_alpha(
    votes: np.ndarray,
    *,
    rule: RetirementRule,
    prior_q: np.ndarray | None = None,
    prior_weight: float | np.ndarray = 0.0,
) -> np.ndarray:
    """The posterior the rule judges: the Jeffreys start, prior_discount * m * q, the votes."""
    return posterior_alpha(
        votes,
        prior=rule.prior,
        prior_q=prior_q,
        prior_weight=rule.prior_discount * np.asarray(prior_weight, dtype=float),
    )


def rule_decision(
    votes: np.ndarray,
    *,
    n_votes: np.ndarray,
    rule: RetirementRule,
    prior_q: np.ndarray | None = None,
    prior_weight: float | np.ndarray = 0.0,
) -> RuleOutcome:
    """The one retirement rule, on (weighted) votes (..., 5), the raw vote count (...,) and the
    optional model prior. Both the live queue and `retire_settled` call it."""
    alpha = rule_alpha(votes, rule=rule, prior_q=prior_q, prior_weight=prior_weight)
    n_votes = np.asarray(n_votes)
    expected = alpha_expected_emd(alpha)
    mode = mode_change_bound(alpha)
    weight = rule.prior_discount * np.broadcast_to(np.asarray(prior_weight, float), n_votes.shape)
    if prior_q is None:
        weight = np.zeros(n_votes.shape)
    enough = n_votes >= rule.min_votes
    certain = expected <= rule.tolerance
    stable = (mode <= rule.mode_guard) | (rule.mode_guard >= 1.0)
    at_max = n_votes >= rule.max_votes
    settled = (enough & certain & stable) | at_max
    share = weight / alpha.sum(axis=-1)
    reason = np.where(
        at_max,
        "max_votes",
        np.where(
            ~enough,
            "too_few_votes",
            np.where(~certain, "uncertain", np.where(~stable, "mode", "settled")),
        ),
    )
    return RuleOutcome(
        settled=settled, expected_emd=expected, mode_change=mode, prior_share=share, reason=reason
    )


def votes_needed(
    alpha: np.ndarray,
    *,
    n_votes: np.ndarray,
    rule: RetirementRule,
    weight_per_vote: float = 1.0,
) -> np.ndarray:
    """Predicted further votes until each clip settles, (...,) int; alpha as `rule_alpha`
    gives it. Future votes are taken to
    follow the posterior mean (each adding `weight_per_vote` of it), so only the concentration
    grows; capped by `max_votes`. 0 for a clip already settled."""
    alpha = np.asarray(alpha, dtype=float)
    n_votes = np.asarray(n_votes, dtype=float)
    mean = alpha / alpha.sum(axis=-1, keepdims=True)
    remaining = np.maximum(rule.max_votes - n_votes, 0).astype(int)
    needed = remaining.copy()
    open_ = np.ones(n_votes.shape, dtype=bool)
    for k in range(int(remaining.max(initial=0)) + 1):
        grown = alpha + k * weight_per_vote * mean
        ok = (
            (n_votes + k >= rule.min_votes)
            & (alpha_expected_emd(grown) <= rule.tolerance)
            & ((mode_change_bound(grown) <= rule.mode_guard) | (rule.mode_guard >= 1.0))
        )
        hit = open_ & ok & (k <= remaining)
        needed = np.where(hit, k, needed)
        open_ &= ~hit
        if not open_.any():
            break
    return needed


def reliability_weights(noise: np.ndarray) -> np.ndarray:
    """Each expert's vote weight from their fitted noise: mean noise / noise, clipped."""
    noise = np.asarray(noise, dtype=float)
    if noise.size == 0:
        return noise
    if np.any(noise <= 0):
        raise ValueError("noise must be positive.")
    return np.clip(noise.mean() / noise, *WEIGHT_RANGE)


def severity_corrected_votes(
    grade_idx: np.ndarray, severity: np.ndarray, thresholds: np.ndarray
) -> np.ndarray:
    """Soft votes (n, 5) A..E: each grade's latent interval shifted by the expert's severity
    (a harsh expert, severity > 0, saw the clip as worse than a typical one would), its length
    spread uniformly over the grades it now covers. The open outer grades A and E count as
    wide as the mean inner grade."""
    t = np.asarray(thresholds, dtype=float)  # (4,) E|D, D|C, C|B, B|A
    width = float(np.mean(np.diff(t))) if t.size > 1 else 1.0
    edges = np.concatenate([[t[0] - width], t, [t[-1] + width]])  # E low .. A high, (6,)
    grade_idx = np.asarray(grade_idx, dtype=np.int64)
    latent = N_GRADES - 1 - grade_idx  # 0 = E .. 4 = A, the order of `edges`
    lo = edges[latent] + np.asarray(severity, dtype=float)
    hi = edges[latent + 1] + np.asarray(severity, dtype=float)
    # Overlap of [lo, hi] with every grade bin; the outer bins reach to +-infinity.
    bin_lo = np.concatenate([[-np.inf], edges[1:-1]])
    bin_hi = np.concatenate([edges[1:-1], [np.inf]])
    overlap = np.clip(
        np.minimum(hi[:, None], bin_hi[None, :]) - np.maximum(lo[:, None], bin_lo[None, :]),
        0.0,
        None,
    )
    soft = overlap / overlap.sum(axis=1, keepdims=True)  # columns E..A
    return soft[:, ::-1]


def rater_adjusted_votes(
    clip_idx: np.ndarray,
    rater_idx: np.ndarray,
    grade_idx: np.ndarray,
    *,
    n_clips: int,
    severity: np.ndarray | None,
    noise: np.ndarray | None,
    thresholds: np.ndarray | None,
) -> np.ndarray:
    """Weighted, severity-corrected votes per clip, (n_clips, 5). Raters with NaN severity
    (not in the fit) vote plainly with weight 1; severity None: plain counts."""
    clip_idx = np.asarray(clip_idx, dtype=np.int64)
    grade_idx = np.asarray(grade_idx, dtype=np.int64)
    plain = np.eye(N_GRADES)[grade_idx] if grade_idx.size else np.zeros((0, N_GRADES))
    out = np.zeros((n_clips, N_GRADES))
    if severity is None or noise is None or thresholds is None or grade_idx.size == 0:
        np.add.at(out, clip_idx, plain)
        return out
    sev = np.asarray(severity, dtype=float)[rater_idx]
    noi = np.asarray(noise, dtype=float)
    known = np.isfinite(noi) & (noi > 0)
    weights_all = np.ones(noi.shape)
    weights_all[known] = reliability_weights(noi[known])
    weight = weights_all[rater_idx]
    fitted = np.isfinite(sev) & known[rater_idx]
    soft = plain.copy()
    if fitted.any():
        soft[fitted] = severity_corrected_votes(grade_idx[fitted], sev[fitted], thresholds)
    np.add.at(out, clip_idx, soft * weight[:, None])
    return out


def expected_emd_of_mean(
    full_counts: np.ndarray,
    prior_q: np.ndarray,
    prior_weight: float,
    *,
    n_seen: int,
    prior: float = DEFAULT_PRIOR,
) -> np.ndarray:
    """Expected EMD between the posterior mean after `n_seen` votes drawn at random (without
    replacement) from a clip's panel and that full panel's distribution, in closed form.

    With F the panel's cumulative shares, N its votes and c the cumulated counts of the drawn
    votes: E[c_k] = n F_k, Var(c_k) = n F_k (1 - F_k) (N - n) / (N - 1), and the posterior
    mean's cumulated shares are (prior * (k+1) + c_k + m Q_k) / (5 prior + n + m).
    full_counts: (n_clips, 5) with at least n_seen votes each; returns (n_clips,).
    """
    full = _counts_checked(full_counts)
    total = full.sum(axis=1, keepdims=True)
    cdf = np.cumsum(full, axis=1)[:, :-1] / total
    q_cdf = np.cumsum(_counts_checked(prior_q), axis=1)[:, :-1]
    a0 = N_GRADES * prior + n_seen + prior_weight
    prior_cdf = prior * np.arange(1, N_GRADES)
    bias = (prior_cdf + n_seen * cdf + prior_weight * q_cdf) / a0 - cdf
    fpc = (total - n_seen) / np.maximum(total - 1, 1)
    var = n_seen * cdf * (1 - cdf) * fpc / a0**2
    return (bias**2 + var).sum(axis=1)


@dataclass(frozen=True)
class PriorWeightFit:
    """The fitted weight m of a run's predictions and how well it fits (shown to curators)."""

    weight: float  # m, 0 when the prediction does not help
    n_clips: int  # clips with full panels and a prediction used for the fit
    emd_without: float  # held-out expected EMD of the posterior mean with m = 0
    emd_with: float  # the same with each fold's fitted m
    prior_emd: float  # mean EMD of the prediction itself to the full panel
    fold_weights: tuple[float, ...]
    reason: str  # why m is what it is

    @property
    def gain(self) -> float:
        return 1.0 - self.emd_with / self.emd_without if self.emd_without > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "gain": self.gain}


def _prior_loss(full: np.ndarray, q: np.ndarray, weight: float, n_seen: tuple[int, ...]) -> float:
    losses = [
        expected_emd_of_mean(full[full.sum(axis=1) > n], q[full.sum(axis=1) > n], weight, n_seen=n)
        for n in n_seen
    ]
    return float(np.mean(np.concatenate(losses))) if losses else 0.0


def prior_weight_fit(
    full_counts: np.ndarray,
    prior_q: np.ndarray,
    *,
    n_folds: int = 5,
    seed: int = 0,
    min_clips: int = 20,
    n_seen: tuple[int, ...] = PRIOR_FIT_VOTES,
    grid: tuple[float, ...] = PRIOR_WEIGHT_GRID,
    min_gain: float = PRIOR_FIT_MIN_GAIN,
) -> PriorWeightFit:
    """Fit m by cross-validation on clips with full panels: for each fold, the m of `grid`
    that minimises the expected EMD of the posterior mean (after `n_seen` random votes) to the
    full panel on the other folds, judged on the fold; the kept m is the fit on all clips,
    or 0 when the held-out gain over m = 0 is below `min_gain` (or too few clips)."""
    full = _counts_checked(full_counts)
    q = _counts_checked(prior_q)
    if full.shape != q.shape:
        raise ValueError(f"full_counts {full.shape} and prior_q {q.shape} must have one shape.")
    n_clips = full.shape[0]
    total = full.sum(axis=1) if n_clips else np.zeros(0)
    usable = total > max(n_seen, default=0) if n_clips else np.zeros(0, dtype=bool)
    full, q = full[usable], q[usable]
    n_clips = full.shape[0]
    prior_emd = (
        float(
            ((np.cumsum(full / full.sum(1, keepdims=True) - q, axis=1)[:, :-1]) ** 2).sum(1).mean()
        )
        if n_clips
        else float("nan")
    )
    if n_clips < max(min_clips, n_folds):
        return PriorWeightFit(
            0.0,
            n_clips,
            float("nan"),
            float("nan"),
            prior_emd,
            (),
            f"too few clips with full panels ({n_clips} < {min_clips})",
        )
    folds = np.random.default_rng(seed).permutation(n_clips) % n_folds
    without = with_m = 0.0
    fold_weights = []
    for fold in range(n_folds):
        train, test = folds != fold, folds == fold
        losses = [_prior_loss(full[train], q[train], m, n_seen) for m in grid]
        m = grid[int(np.argmin(losses))]
        fold_weights.append(m)
        without += _prior_loss(full[test], q[test], 0.0, n_seen) * test.sum()
        with_m += _prior_loss(full[test], q[test], m, n_seen) * test.sum()
    without /= n_clips
    with_m /= n_clips
    gain = 1.0 - with_m / without if without > 0 else 0.0
    if gain < min_gain:
        weight, reason = 0.0, f"held-out gain {gain:.1%} below {min_gain:.0%}: prior not used"
    else:
        losses = [_prior_loss(full, q, m, n_seen) for m in grid]
        weight = grid[int(np.argmin(losses))]
        reason = f"held-out EMD {without:.4f} -> {with_m:.4f} ({gain:.1%} better)"
    return PriorWeightFit(
        weight=float(weight),
        n_clips=n_clips,
        emd_without=float(without),
        emd_with=float(with_m),
        prior_emd=prior_emd,
        fold_weights=tuple(float(m) for m in fold_weights),
        reason=reason,
    )


__all__ = [
    "DEFAULT_MAX_VOTES",
    "DEFAULT_MIN_VOTES",
    "DEFAULT_MODE_GUARD",
    "DEFAULT_PRIOR",
    "DEFAULT_PRIOR_DISCOUNT",
    "DEFAULT_TOLERANCE",
    "PriorWeightFit",
    "RetirementRule",
    "RuleOutcome",
    "alpha_expected_emd",
    "expected_emd_of_mean",
    "mode_change_bound",
    "posterior_alpha",
    "posterior_expected_emd",
    "prior_weight_fit",
    "rater_adjusted_votes",
    "reliability_weights",
    "retirement_decision",
    "rule_alpha",
    "rule_decision",
    "severity_corrected_votes",
    "votes_needed",
]
