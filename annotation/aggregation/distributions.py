"""Grade distributions and their statistics, from ratings given as plain integer arrays.

Ratings arrive as three aligned arrays: clip index, rater index and grade index (0=A .. 4=E);
`rating_arrays` makes them from a table in the exchange format (clip_id, rater_id, grade).
Everything is vectorised over clips: the paper's scale (615 clips x ~40 experts, ~24,600
ratings) takes milliseconds.

Plain numpy/pandas, no Django.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from annotation.grades import GRADE_INDEX, GRADES, N_GRADES

# Grade scores for statistics, as in the paper: A=1 (good) .. E=5 (bad).
SCORES: np.ndarray = np.arange(1, N_GRADES + 1, dtype=float)

# Fixed bin edges of the paper's Figure 3 joint histogram, so figures of different dataset
# versions can be compared bin by bin. The mean score lies in [1, 5]; the population standard
# deviation of scores in [1, 5] is at most 2 (half the votes on A, half on E).
FIGURE3_MEAN_EDGES: np.ndarray = np.linspace(1.0, 5.0, 17)  # 16 bins of 0.25
FIGURE3_STD_EDGES: np.ndarray = np.linspace(0.0, 2.0, 17)  # 16 bins of 0.125


def check_index(name: str, values: np.ndarray, size: int) -> np.ndarray:
    """Return `values` as an int array, or say which index is out of range."""
    values = np.asarray(values)
    if values.size and not np.issubdtype(values.dtype, np.integer):
        raise TypeError(f"{name} must hold integers, got dtype {values.dtype}.")
    values = values.astype(np.int64, copy=False).ravel()
    if values.size and (values.min() < 0 or values.max() >= size):
        raise ValueError(
            f"{name} must lie in [0, {size - 1}], got values in [{values.min()}, {values.max()}]."
        )
    return values


@dataclass(frozen=True)
class RatingArrays:
    """Ratings as aligned index arrays, with the ids the indices stand for."""

    clip_idx: np.ndarray  # (n_ratings,) int, index into clip_ids
    rater_idx: np.ndarray  # (n_ratings,) int, index into rater_ids
    grade_idx: np.ndarray  # (n_ratings,) int, 0=A .. 4=E
    clip_ids: tuple[str, ...]
    rater_ids: tuple[str, ...]

    @property
    def n_clips(self) -> int:
        return len(self.clip_ids)

    @property
    def n_raters(self) -> int:
        return len(self.rater_ids)


def _codes(
    values: pd.Series, ids: Sequence[str] | None, what: str
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Index of every value in `ids` (default: the values in order of first appearance)."""
    categories = pd.Index(pd.unique(values) if ids is None else list(ids))
    if not categories.is_unique:
        raise ValueError(f"{what} ids must be unique.")
    codes = categories.get_indexer(values).astype(np.int64)  # -1 where not listed
    if np.any(codes < 0):
        unknown = sorted(set(values[codes < 0].astype(str)))[:5]
        raise ValueError(f"ratings name {what}s that are not listed: {unknown}.")
    return codes, tuple(str(x) for x in categories)


def rating_arrays(
    ratings: pd.DataFrame,
    *,
    clip_ids: Sequence[str] | None = None,
    rater_ids: Sequence[str] | None = None,
) -> RatingArrays:
    """Index arrays of a ratings table with columns clip_id, rater_id, grade (A..E).

    clip_ids, rater_ids: the full lists, in the order the indices should follow (pass them to
    keep clips or raters without votes); by default the ids in order of first appearance.
    """
    missing = {"clip_id", "rater_id", "grade"} - set(ratings.columns)
    if missing:
        raise ValueError(f"ratings need the columns clip_id, rater_id, grade; missing {missing}.")
    grade_idx = ratings["grade"].map(GRADE_INDEX)
    if grade_idx.isna().any():
        bad = sorted(set(ratings["grade"][grade_idx.isna()].astype(str)))[:5]
        raise ValueError(f"grades must be one of {', '.join(GRADES)}; got {bad}.")
    clip_idx, clip_ids = _codes(ratings["clip_id"], clip_ids, "clip")
    rater_idx, rater_ids = _codes(ratings["rater_id"], rater_ids, "rater")
    return RatingArrays(
        clip_idx=clip_idx,
        rater_idx=rater_idx,
        grade_idx=grade_idx.to_numpy(dtype=np.int64),
        clip_ids=clip_ids,
        rater_ids=rater_ids,
    )


def grade_counts(clip_idx: np.ndarray, grade_idx: np.ndarray, n_clips: int) -> np.ndarray:
    """Votes per clip and grade: (n_clips, 5) int, columns A..E.

    clip_idx, grade_idx: (n_ratings,) aligned; a clip nobody rated has a row of zeros.
    """
    clip_idx = check_index("clip_idx", clip_idx, n_clips)
    grade_idx = check_index("grade_idx", grade_idx, N_GRADES)
    if clip_idx.shape != grade_idx.shape:
        raise ValueError(
            f"clip_idx and grade_idx must be aligned, got {clip_idx.size} and {grade_idx.size}."
        )
    flat = np.bincount(clip_idx * N_GRADES + grade_idx, minlength=n_clips * N_GRADES)
    return flat.reshape(n_clips, N_GRADES)


@dataclass(frozen=True)
class DistributionStats:
    """Per-clip grade distribution and its statistics; every array has n_clips rows.

    A clip without votes has n = 0, an all-NaN p, NaN mean/std/entropy, mode "" and
    mode_index -1.
    """

    counts: np.ndarray  # (n_clips, 5) int, votes per grade A..E
    p: np.ndarray  # (n_clips, 5) float, the grade distribution (rows sum to 1)
    n: np.ndarray  # (n_clips,) int, votes per clip
    mean: np.ndarray  # (n_clips,) mean grade score, A=1 .. E=5
    std: np.ndarray  # (n_clips,) population std (ddof=0) of the votes' scores
    mode_index: np.ndarray  # (n_clips,) int, 0=A .. 4=E, -1 without votes
    mode: np.ndarray  # (n_clips,) str, "A".."E", "" without votes
    entropy: np.ndarray  # (n_clips,) Shannon entropy of p in bits (0 = unanimous)

    @property
    def n_clips(self) -> int:
        return int(self.counts.shape[0])


def grade_mode_index(counts: np.ndarray) -> np.ndarray:
    """The most voted grade per clip, (n_clips,) int, -1 for a clip without votes.

    Tie rule: among the tied top grades take the one nearest the clip's mean score; if two
    are equally near (the mean lies halfway between them), take the better (earlier) grade.
    Distances are compared in exact integers (|score * n - sum of scores|), so a tie on
    paper is a tie here.
    """
    counts = np.asarray(counts, dtype=np.int64)
    n = counts.sum(axis=1)
    score_sum = counts @ np.arange(1, N_GRADES + 1)
    distance = np.abs(np.arange(1, N_GRADES + 1)[None, :] * n[:, None] - score_sum[:, None])
    is_top = counts == counts.max(axis=1, keepdims=True)
    # argmin returns the first of equal minima: the better grade wins the last tie.
    key = np.where(is_top, distance, np.iinfo(np.int64).max)
    mode = np.argmin(key, axis=1)
    return np.where(n > 0, mode, -1)


def distribution_stats(counts: np.ndarray) -> DistributionStats:
    """Distribution, mean, std, mode and entropy for every clip of a (n_clips, 5) count table."""
    counts = np.asarray(counts)
    if counts.ndim != 2 or counts.shape[1] != N_GRADES:
        raise ValueError(f"counts must have shape (n_clips, {N_GRADES}), got {counts.shape}.")
    counts = counts.astype(np.int64, copy=False)
    n = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = counts / n[:, None]  # NaN rows where n == 0
        mean = p @ SCORES
        std = np.sqrt(np.maximum(p @ SCORES**2 - mean**2, 0.0))
        plogp = np.where(counts > 0, p * np.log2(np.where(counts > 0, p, 1.0)), 0.0)
    entropy = np.where(n > 0, -plogp.sum(axis=1), np.nan)
    mode_index = grade_mode_index(counts)
    letters = np.array((*GRADES, ""))  # index -1 picks ""
    return DistributionStats(
        counts=counts,
        p=p,
        n=n,
        mean=mean,
        std=std,
        mode_index=mode_index,
        mode=letters[mode_index],
        entropy=entropy + 0.0,  # turn -0.0 of unanimous clips into 0.0
    )


def stats_for_one(counts_row: np.ndarray) -> dict[str, Any]:
    """Statistics of one clip's (5,) vote counts as plain Python values (for a page or API)."""
    stats = distribution_stats(np.asarray(counts_row).reshape(1, N_GRADES))
    return {
        "counts": stats.counts[0].tolist(),
        "p": stats.p[0].tolist(),
        "n": int(stats.n[0]),
        "mean": float(stats.mean[0]),
        "std": float(stats.std[0]),
        "mode": str(stats.mode[0]),
        "entropy": float(stats.entropy[0]),
    }


def emd(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Earth mover's distance of the paper (eq. 6): sum over grades of squared CDF differences.

    p, q: (..., 5) distributions over A..E, broadcast against each other; returns (...).
    All mass on A against all mass on E gives 4, identical distributions 0.
    """
    cdf_gap = np.cumsum(np.asarray(p, dtype=float) - np.asarray(q, dtype=float), axis=-1)
    return np.sum(cdf_gap**2, axis=-1)


def figure3_stats(
    stats: DistributionStats,
    *,
    rater_idx: np.ndarray | None = None,
    n_raters: int | None = None,
) -> dict[str, Any]:
    """The numbers behind the paper's Figure 3 and our dataset page, as JSON-ready lists.

    Keys:
      mean_edges, std_edges: the fixed bin edges (FIGURE3_MEAN_EDGES, FIGURE3_STD_EDGES);
      mean_std_hist: clips per (mean bin, std bin), rows = mean bins; the last bin of each axis
        includes its right edge; clips without votes are left out;
      mode_hist: clips per grade mode {"A": .., "E": ..};
      votes_per_grade: votes per grade over all clips {"A": .., "E": ..};
      ratings_per_clip: list where item k = number of clips with k votes;
      ratings_per_expert: votes per rater index (only when rater_idx is given).
    """
    rated = stats.n > 0
    joint, _, _ = np.histogram2d(
        stats.mean[rated], stats.std[rated], bins=(FIGURE3_MEAN_EDGES, FIGURE3_STD_EDGES)
    )
    mode_hist = np.bincount(stats.mode_index[rated], minlength=N_GRADES)
    figure: dict[str, Any] = {
        "mean_edges": FIGURE3_MEAN_EDGES.tolist(),
        "std_edges": FIGURE3_STD_EDGES.tolist(),
        "mean_std_hist": joint.astype(int).tolist(),
        "mode_hist": dict(zip(GRADES, mode_hist.tolist(), strict=True)),
        "votes_per_grade": dict(zip(GRADES, stats.counts.sum(axis=0).tolist(), strict=True)),
        "ratings_per_clip": np.bincount(stats.n, minlength=1).tolist(),
    }
    if rater_idx is not None:
        rater_idx = np.asarray(rater_idx, dtype=np.int64)
        size = n_raters if n_raters is not None else int(rater_idx.max(initial=-1)) + 1
        figure["ratings_per_expert"] = np.bincount(
            check_index("rater_idx", rater_idx, size), minlength=size
        ).tolist()
    return figure


__all__ = [
    "FIGURE3_MEAN_EDGES",
    "FIGURE3_STD_EDGES",
    "SCORES",
    "DistributionStats",
    "RatingArrays",
    "check_index",
    "distribution_stats",
    "emd",
    "figure3_stats",
    "grade_counts",
    "grade_mode_index",
    "rating_arrays",
    "stats_for_one",
]
