"""How close predicted grade distributions are to the true ones: the paper's metrics.

``evaluate_distributions(p_true, p_pred)`` takes two (N, 5) arrays (columns A..E, rows sum
to 1) and returns a JSON-serialisable dict of plain floats:

- ``n``: the number of clips.
- ``emd``, ``mse``, ``jsd``, ``ce``: the means over clips of the losses of
  :mod:`modeling.ml.losses` (eqs. 2-6; lower is better; CE of the prediction against the truth).
- ``hi``: histogram intersection ``sum_i min(p_i, q_i)`` (eq. 7), the "grade distribution
  accuracy", mean over clips; 1 = identical distributions, 0 = disjoint.
- ``macro_hi``: the mean over grade-mode classes of the mean HI of the clips in that class.
- ``mode_accuracy``: the share of clips whose predicted grade mode equals the true grade mode.
- ``macro_f1``: the F1 score of the predicted grade mode, averaged over the classes present
  among the true grade modes (a class never predicted has F1 = 0; a clip predicted as a class
  absent from the truth still counts against the recall of its true class).
- ``top25_hi``, ``top50_hi``, ``top75_hi``: the HI score distribution looked at from the best
  clips down, per grade-mode class. Within a class the clips' HI are sorted in descending
  order and ``topXX_hi`` is the mean HI of the best ``ceil(XX% * n_class)`` clips (at least
  one); the values are then averaged over the classes present (macro). So top25 describes
  the easy clips, top75 includes all but the hardest quarter, and top25 >= top50 >= top75 >=
  the class mean.
- ``per_class``: ``{"A": {...}, ...}`` for every grade present among the true modes, with
  ``n``, ``emd``, ``mse``, ``jsd``, ``ce``, ``hi``, ``mode_accuracy`` (the recall of that
  class), ``f1`` and ``top25_hi``/``top50_hi``/``top75_hi`` of the clips of that class.

The **grade mode** of a distribution is its most probable grade. Ties (within ``TIE_TOL``) go
to the tied grade nearest the distribution's mean score (A=1 .. E=5), then to the better
grade: the rule of ``annotation.aggregation.distributions.grade_mode_index`` for vote counts,
here for probabilities so that predictions follow it too.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from annotation.grades import GRADES, N_GRADES
from modeling.ml.losses import LOSSES

TIE_TOL = 1e-9
TOP_FRACTIONS: dict[str, float] = {"top25_hi": 0.25, "top50_hi": 0.50, "top75_hi": 0.75}
_SCORES = np.arange(1, N_GRADES + 1, dtype=np.float64)


def grade_mode_index(p: np.ndarray) -> np.ndarray:
    """Grade mode (0=A .. 4=E) of every row of ``p`` (N, 5); see the module docstring for ties."""
    p = np.asarray(p, dtype=np.float64)
    is_top = p >= p.max(axis=1, keepdims=True) - TIE_TOL
    distance = np.abs(_SCORES[None, :] - (p @ _SCORES)[:, None])  # (N, 5)
    key = np.where(is_top, distance, np.inf)
    nearest = key <= key.min(axis=1, keepdims=True) + TIE_TOL
    return np.argmax(nearest, axis=1)  # first True: the better grade wins the last tie


def histogram_intersection(p_true: np.ndarray, p_pred: np.ndarray) -> np.ndarray:
    """HI (eq. 7) per row, (N,)."""
    return np.minimum(p_true, p_pred).sum(axis=1)


def top_fraction_mean(values: np.ndarray, fraction: float) -> float:
    """Mean of the best (largest) ``ceil(fraction * n)`` values, at least one."""
    k = max(1, math.ceil(fraction * len(values) - 1e-9))
    return float(np.sort(values)[::-1][:k].mean())


def _f1(true_mode: np.ndarray, pred_mode: np.ndarray, grade: int) -> float:
    true_positive = np.sum((true_mode == grade) & (pred_mode == grade))
    denominator = np.sum(true_mode == grade) + np.sum(pred_mode == grade)
    return float(2 * true_positive / denominator) if denominator else 0.0


def _check(name: str, p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != N_GRADES or len(p) == 0:
        raise ValueError(f"{name} must have shape (N, {N_GRADES}) with N >= 1, got {p.shape}.")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError(f"{name} must hold finite, non-negative probabilities.")
    if not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError(f"every row of {name} must sum to 1 (a grade distribution).")
    return p


def per_clip_scores(p_true: np.ndarray, p_pred: np.ndarray) -> dict[str, np.ndarray]:
    """Every per-clip score, (N,) each: the four losses (as metrics) and HI."""
    p_true, p_pred = _check("p_true", p_true), _check("p_pred", p_pred)
    q, p = torch.from_numpy(p_pred), torch.from_numpy(p_true)
    scores = {name: loss(q, p, reduction="none").numpy() for name, loss in LOSSES.items()}
    scores["hi"] = histogram_intersection(p_true, p_pred)
    return scores


def _summary(scores: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, float]:
    summary: dict[str, float] = {"n": int(mask.sum())}
    summary.update({name: float(values[mask].mean()) for name, values in scores.items()})
    return summary


def evaluate_distributions(p_true: np.ndarray, p_pred: np.ndarray) -> dict[str, Any]:
    """All metrics of the module docstring, overall, macro and per grade-mode class."""
    scores = per_clip_scores(p_true, p_pred)
    true_mode = grade_mode_index(np.asarray(p_true))
    pred_mode = grade_mode_index(np.asarray(p_pred))

    per_class: dict[str, dict[str, float]] = {}
    for grade in np.unique(true_mode):
        in_class = true_mode == grade
        metrics = _summary(scores, in_class)
        metrics["mode_accuracy"] = float(np.mean(pred_mode[in_class] == grade))
        metrics["f1"] = _f1(true_mode, pred_mode, int(grade))
        for key, fraction in TOP_FRACTIONS.items():
            metrics[key] = top_fraction_mean(scores["hi"][in_class], fraction)
        per_class[GRADES[grade]] = metrics

    result: dict[str, Any] = _summary(scores, np.ones(len(true_mode), dtype=bool))
    result["macro_hi"] = float(np.mean([m["hi"] for m in per_class.values()]))
    result["mode_accuracy"] = float(np.mean(pred_mode == true_mode))
    result["macro_f1"] = float(np.mean([m["f1"] for m in per_class.values()]))
    for key in TOP_FRACTIONS:
        result[key] = float(np.mean([m[key] for m in per_class.values()]))
    result["per_class"] = per_class
    return result
