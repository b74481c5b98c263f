"""How much the experts agree: Krippendorff's alpha, Fleiss' kappa, per-expert agreement with
the rest of the panel, and each expert's consistency with themself on hidden repeats.

Ratings arrive as aligned integer arrays (clip index, rater index, grade index 0=A .. 4=E), as
in `annotation.aggregation.distributions`. Everything is vectorised; the bootstrap of alpha
reuses per-clip coincidence matrices instead of recomputing alpha from scratch for every resample.

Plain numpy/pandas, no Django.
"""

from __future__ import annotations

from dataclasses import dataclass

import krippendorff
import numpy as np
import pandas as pd

from annotation.aggregation.distributions import SCORES, check_index, emd, grade_counts
from annotation.grades import N_GRADES


def _ratings_checked(
    clip_idx: np.ndarray,
    rater_idx: np.ndarray,
    grade_idx: np.ndarray,
    n_clips: int,
    n_raters: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    clip_idx = check_index("clip_idx", clip_idx, n_clips)
    rater_idx = check_index("rater_idx", rater_idx, n_raters)
    grade_idx = check_index("grade_idx", grade_idx, N_GRADES)
    if not clip_idx.size == rater_idx.size == grade_idx.size:
        raise ValueError(
            "clip_idx, rater_idx and grade_idx must be aligned, got sizes "
            f"{clip_idx.size}, {rater_idx.size} and {grade_idx.size}."
        )
    return clip_idx, rater_idx, grade_idx


# --- Krippendorff's alpha (ordinal) -----------------------------------------------------------


def reliability_matrix(
    clip_idx: np.ndarray,
    rater_idx: np.ndarray,
    grade_idx: np.ndarray,
    *,
    n_clips: int,
    n_raters: int,
) -> np.ndarray:
    """Raters x clips matrix of grade indices (float), NaN where a rater did not rate a clip.

    The layout the `krippendorff` package reads. If a rater graded a clip twice, the later
    rating in the arrays wins (repeats belong to `intra_rater_consistency`).
    """
    clip_idx, rater_idx, grade_idx = _ratings_checked(
        clip_idx, rater_idx, grade_idx, n_clips, n_raters
    )
    matrix = np.full((n_raters, n_clips), np.nan)
    matrix[rater_idx, clip_idx] = grade_idx
    return matrix


def clip_coincidences(counts: np.ndarray) -> np.ndarray:
    """Each clip's contribution to Krippendorff's coincidence matrix: (n_clips, 5, 5).

    A clip with m >= 2 votes, n_c of them on grade c, adds (n_c n_k - [c == k] n_c) / (m - 1)
    to cell (c, k); a clip with fewer than two votes has no pairs and adds nothing.
    """
    counts = np.asarray(counts, dtype=float)
    m = counts.sum(axis=1)
    pairs = counts[:, :, None] * counts[:, None, :]
    pairs[:, np.arange(N_GRADES), np.arange(N_GRADES)] -= counts
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(m >= 2, 1.0 / (m - 1.0), 0.0)
    return pairs * scale[:, None, None]


def alpha_from_coincidences(coincidences: np.ndarray) -> np.ndarray:
    """Ordinal Krippendorff's alpha from coincidence matrices (..., 5, 5); returns (...).

    The ordinal distance between grades c <= k is (sum_{g=c..k} n_g - (n_c + n_k) / 2)^2 with
    n_g the grade totals of the coincidence matrix; written as the squared difference of the
    grades' "mid-ranks" cumsum(n)_g - n_g / 2. NaN when the data hold a single grade only
    (no expected disagreement).
    """
    n_g = coincidences.sum(axis=-1)  # (..., 5)
    n_total = n_g.sum(axis=-1)  # (...)
    mid_rank = np.cumsum(n_g, axis=-1) - n_g / 2.0
    distance = (mid_rank[..., :, None] - mid_rank[..., None, :]) ** 2  # (..., 5, 5)
    observed = np.sum(coincidences * distance, axis=(-2, -1))
    expected = np.einsum("...c,...k,...ck->...", n_g, n_g, distance) / (n_total - 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(expected > 0, 1.0 - observed / expected, np.nan)


def krippendorff_alpha_ordinal(counts: np.ndarray) -> float:
    """Ordinal alpha straight from (n_clips, 5) vote counts (alpha needs no rater identities)."""
    return float(alpha_from_coincidences(clip_coincidences(counts).sum(axis=0)))


@dataclass(frozen=True)
class AlphaEstimate:
    """Krippendorff's ordinal alpha with a percentile bootstrap confidence interval."""

    alpha: float
    ci_low: float
    ci_high: float
    confidence: float
    n_resamples: int
    n_clips_pairable: int  # clips with at least two votes: the ones alpha and the CI see


def krippendorff_alpha(
    clip_idx: np.ndarray,
    rater_idx: np.ndarray,
    grade_idx: np.ndarray,
    *,
    n_clips: int,
    n_raters: int,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> AlphaEstimate:
    """Ordinal alpha of the panel (computed by the `krippendorff` package) and its bootstrap CI.

    The CI resamples the pairable clips with replacement (`seed` makes it repeatable) and takes
    the percentile interval. A resample is a weighted sum of the clips' coincidence matrices,
    so 1,000 resamples cost one (1000 x n_clips) @ (n_clips x 25) product.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}.")
    matrix = reliability_matrix(clip_idx, rater_idx, grade_idx, n_clips=n_clips, n_raters=n_raters)
    counts = grade_counts(clip_idx, grade_idx, n_clips)
    per_clip = clip_coincidences(counts)[counts.sum(axis=1) >= 2].reshape(-1, N_GRADES**2)
    n_pairable = per_clip.shape[0]
    if n_pairable == 0:
        nan = float("nan")
        return AlphaEstimate(nan, nan, nan, confidence, 0, 0)
    alpha = float(
        krippendorff.alpha(
            reliability_data=matrix,
            level_of_measurement="ordinal",
            value_domain=list(range(N_GRADES)),
        )
    )
    ci_low = ci_high = float("nan")
    if n_resamples > 0:
        weights = bootstrap_weights(n_pairable, n_resamples=n_resamples, seed=seed)
        resampled = (weights @ per_clip).reshape(n_resamples, N_GRADES, N_GRADES)
        ci_low, ci_high = _percentile_interval(alpha_from_coincidences(resampled), confidence)
    return AlphaEstimate(alpha, ci_low, ci_high, confidence, n_resamples, n_pairable)


def bootstrap_weights(n_items: int, *, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n_items) counts: weights[b, u] = how often item u was drawn (with
    replacement, n_items draws) in resample b. A statistic that is a sum over items is then
    resampled by one matrix product instead of a loop."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n_items, size=(n_resamples, n_items))
    rows = np.repeat(np.arange(n_resamples), n_items)
    return np.bincount(rows * n_items + picks.ravel(), minlength=n_resamples * n_items).reshape(
        n_resamples, n_items
    )


def _percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central `confidence` percentile interval of the finite resampled values."""
    tail = (1.0 - confidence) / 2.0
    if not np.isfinite(values).any():
        return float("nan"), float("nan")
    finite = np.where(np.isfinite(values), values, np.nan)
    ci_low, ci_high = np.nanquantile(finite, [tail, 1.0 - tail])
    return float(ci_low), float(ci_high)


# --- Fleiss' kappa ----------------------------------------------------------------------------


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa of (n_clips, 5) vote counts, allowing a different number of votes per clip.

    Per clip with n_i >= 2 votes the observed agreement is P_i = sum_g n_ig (n_ig - 1) /
    (n_i (n_i - 1)); P_bar is their mean; chance agreement P_e = sum_g p_g^2 with p_g the share
    of all those clips' votes on grade g; kappa = (P_bar - P_e) / (1 - P_e). With the same n for
    every clip this is Fleiss' (1971) formula. Clips with fewer than two votes are left out.
    NaN when no clip has two votes or all votes share one grade.
    """
    counts = np.asarray(counts, dtype=float)
    n = counts.sum(axis=1)
    counts = counts[n >= 2]
    n = n[n >= 2]
    if counts.shape[0] == 0:
        return float("nan")
    agreement = (counts * (counts - 1.0)).sum(axis=1) / (n * (n - 1.0))
    shares = counts.sum(axis=0) / n.sum()
    chance = float(np.sum(shares**2))
    if chance >= 1.0:
        return float("nan")
    return (float(agreement.mean()) - chance) / (1.0 - chance)


@dataclass(frozen=True)
class KappaEstimate:
    """Fleiss' kappa with a percentile bootstrap confidence interval over clips."""

    kappa: float
    ci_low: float
    ci_high: float
    confidence: float
    n_resamples: int
    n_clips_pairable: int  # clips with at least two votes: the ones kappa sees


def fleiss_kappa_interval(
    counts: np.ndarray, *, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> KappaEstimate:
    """Fleiss' kappa (`fleiss_kappa`) and its percentile bootstrap CI, resampling the clips
    with at least two votes with replacement, as `krippendorff_alpha` does for alpha.

    Both parts of kappa are sums over clips (the per-clip agreements, and the vote totals per
    grade that give the chance agreement), so all resamples are two matrix products:
    weights (n_resamples, n_clips) @ per-clip values. NaN interval bounds when no resample
    has a defined kappa (e.g. every vote the same grade) or n_resamples is 0.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}.")
    if n_resamples < 0:
        raise ValueError(f"n_resamples must be 0 or more, got {n_resamples}.")
    counts = np.asarray(counts, dtype=float)
    n = counts.sum(axis=1)
    pairable = counts[n >= 2]
    n = n[n >= 2]
    n_pairable = pairable.shape[0]
    kappa = fleiss_kappa(pairable)
    nan = float("nan")
    if n_pairable == 0 or n_resamples == 0:
        return KappaEstimate(kappa, nan, nan, confidence, n_resamples, n_pairable)
    agreement = (pairable * (pairable - 1.0)).sum(axis=1) / (n * (n - 1.0))  # (n_pairable,)
    weights = bootstrap_weights(n_pairable, n_resamples=n_resamples, seed=seed).astype(float)
    p_bar = weights @ agreement / n_pairable  # (n_resamples,)
    totals = weights @ pairable  # (n_resamples, 5) votes per grade
    shares = totals / totals.sum(axis=1, keepdims=True)
    chance = np.sum(shares**2, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        kappas = np.where(chance < 1.0, (p_bar - chance) / (1.0 - chance), np.nan)
    ci_low, ci_high = _percentile_interval(kappas, confidence)
    return KappaEstimate(kappa, ci_low, ci_high, confidence, n_resamples, n_pairable)


# --- Per expert: agreement with the rest of the panel -----------------------------------------


def quadratic_kappa_per_group(
    group: np.ndarray, first: np.ndarray, second: np.ndarray, *, n_groups: int
) -> np.ndarray:
    """Quadratic-weighted Cohen's kappa between `first` and `second` grade indices per group.

    group, first, second: (n,) aligned ints. Returns (n_groups,); NaN for a group without
    pairs or whose expected disagreement is zero (e.g. both sides always the same grade).
    """
    cells = (group * N_GRADES + first) * N_GRADES + second
    confusion = np.bincount(cells, minlength=n_groups * N_GRADES**2).reshape(
        n_groups, N_GRADES, N_GRADES
    )
    confusion = confusion.astype(float)
    total = confusion.sum(axis=(1, 2))
    grades = np.arange(N_GRADES)
    weight = (grades[:, None] - grades[None, :]) ** 2.0
    observed = np.einsum("jab,ab->j", confusion, weight)
    # Chance: the two sides' marginals paired independently, scaled to the same total.
    expected = np.einsum("ja,jb,ab->j", confusion.sum(axis=2), confusion.sum(axis=1), weight)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = expected / total
        return np.where((total > 0) & (expected > 0), 1.0 - observed / expected, np.nan)


def expert_agreement(
    clip_idx: np.ndarray,
    rater_idx: np.ndarray,
    grade_idx: np.ndarray,
    *,
    n_clips: int,
    n_raters: int,
) -> pd.DataFrame:
    """One row per rater index: how the expert grades compared with the rest of the panel.

    For every vote the reference is the leave-one-out (LOO) panel of that clip: the clip's
    votes without this one. Columns:
      n_votes: the expert's votes;
      n_compared: votes on clips that someone else also rated (the others are skipped);
      kappa_quadratic: quadratic-weighted Cohen's kappa between the expert's grades and the
        LOO panel grade, the LOO mean score rounded half up (a mean of 2.5 gives C);
      severity: mean of (expert's score - LOO mean score); positive = harsher, since a higher
        score is a worse grade;
      mean_emd: mean EMD between the expert's one-hot grade and the LOO grade distribution.
    Statistics of an expert without compared votes are NaN.
    """
    clip_idx, rater_idx, grade_idx = _ratings_checked(
        clip_idx, rater_idx, grade_idx, n_clips, n_raters
    )
    counts = grade_counts(clip_idx, grade_idx, n_clips)
    # LOO counts per vote: the clip's counts minus this vote's one-hot. (n_ratings, 5)
    own = np.eye(N_GRADES, dtype=np.int64)[grade_idx]
    loo_counts = counts[clip_idx] - own
    loo_n = loo_counts.sum(axis=1)
    keep = loo_n > 0
    loo_counts, loo_n, own = loo_counts[keep], loo_n[keep], own[keep]
    raters, grades = rater_idx[keep], grade_idx[keep]

    loo_p = loo_counts / loo_n[:, None]
    loo_mean = loo_p @ SCORES
    panel_grade = np.floor(loo_mean + 0.5).astype(np.int64) - 1  # score -> grade index
    deviation = SCORES[grades] - loo_mean
    vote_emd = emd(own, loo_p)

    n_compared = np.bincount(raters, minlength=n_raters)
    with np.errstate(invalid="ignore", divide="ignore"):
        severity = np.bincount(raters, weights=deviation, minlength=n_raters) / n_compared
        mean_emd = np.bincount(raters, weights=vote_emd, minlength=n_raters) / n_compared
    return pd.DataFrame(
        {
            "n_votes": np.bincount(rater_idx, minlength=n_raters),
            "n_compared": n_compared,
            "kappa_quadratic": quadratic_kappa_per_group(
                raters, grades, panel_grade, n_groups=n_raters
            ),
            "severity": severity,
            "mean_emd": mean_emd,
        },
        index=pd.RangeIndex(n_raters, name="rater_idx"),
    )


# --- Intra-rater consistency (hidden repeats) -------------------------------------------------


@dataclass(frozen=True)
class RepeatConsistency:
    """Agreement of experts with their own earlier grade on a hidden repeat of a clip."""

    per_rater: pd.DataFrame  # index rater_idx; n_pairs, exact_agreement, mean_abs_diff
    n_pairs: int
    exact_agreement: float  # share of repeats given the same grade, over all pairs
    mean_abs_diff: float  # mean |first - repeat| in grade steps, over all pairs


def intra_rater_consistency(
    rater_idx: np.ndarray,
    first_grade: np.ndarray,
    repeat_grade: np.ndarray,
    *,
    n_raters: int,
) -> RepeatConsistency:
    """Per expert and overall: how often a hidden repeat got the same grade, and by how much
    it moved. One item per (first vote, repeat vote) pair; a rater without pairs gets NaN."""
    rater_idx = check_index("rater_idx", rater_idx, n_raters)
    first_grade = check_index("first_grade", first_grade, N_GRADES)
    repeat_grade = check_index("repeat_grade", repeat_grade, N_GRADES)
    if not rater_idx.size == first_grade.size == repeat_grade.size:
        raise ValueError("rater_idx, first_grade and repeat_grade must be aligned.")
    same = (first_grade == repeat_grade).astype(float)
    gap = np.abs(first_grade - repeat_grade).astype(float)
    n_pairs = np.bincount(rater_idx, minlength=n_raters)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_rater = pd.DataFrame(
            {
                "n_pairs": n_pairs,
                "exact_agreement": np.bincount(rater_idx, weights=same, minlength=n_raters)
                / n_pairs,
                "mean_abs_diff": np.bincount(rater_idx, weights=gap, minlength=n_raters) / n_pairs,
            },
            index=pd.RangeIndex(n_raters, name="rater_idx"),
        )
    total = int(rater_idx.size)
    return RepeatConsistency(
        per_rater=per_rater,
        n_pairs=total,
        exact_agreement=float(same.mean()) if total else float("nan"),
        mean_abs_diff=float(gap.mean()) if total else float("nan"),
    )


__all__ = [
    "AlphaEstimate",
    "KappaEstimate",
    "RepeatConsistency",
    "alpha_from_coincidences",
    "bootstrap_weights",
    "clip_coincidences",
    "expert_agreement",
    "fleiss_kappa",
    "fleiss_kappa_interval",
    "intra_rater_consistency",
    "krippendorff_alpha",
    "krippendorff_alpha_ordinal",
    "quadratic_kappa_per_group",
    "reliability_matrix",
]
