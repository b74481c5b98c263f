"""Cross-validation folds of a frozen dataset version.

Outer folds follow the paper's protocol: K-fold cross-validation stratified by grade-mode
class (A..E) with no patient in two folds. Inside each outer training part (every clip not in
test fold k) an inner validation split, again patient-grouped and stratified, serves early
stopping, so the test fold is never looked at while training.

Plain pandas/scikit-learn, no Django.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from annotation.grades import GRADES

Subset = Literal["train", "val"]


@dataclass(frozen=True)
class FoldAssignment:
    """Outer folds and inner train/val splits of one dataset version.

    ``folds`` maps clip_id -> outer fold (0..n_folds-1: the fold in which the clip is test).
    ``inner`` lists ``(outer_fold, clip_id, subset)`` for every clip outside ``outer_fold``,
    sorted by outer fold then clip_id; subset is "train" or "val".
    """

    folds: dict[str, int]
    inner: list[tuple[int, str, Subset]]
    mode_classes: dict[str, str]  # clip_id -> grade mode, kept for the balance table
    n_folds: int
    seed: int

    def balance_table(self) -> pd.DataFrame:
        """Clips per grade-mode class in each outer fold: rows fold 0..K-1, columns A..E, total."""
        counts = np.zeros((self.n_folds, len(GRADES)), dtype=np.int64)
        for clip_id, fold in self.folds.items():
            counts[fold, GRADES.index(self.mode_classes[clip_id])] += 1
        table = pd.DataFrame(counts, columns=list(GRADES))
        table.index.name = "fold"
        table["total"] = table.sum(axis=1)
        return table

    def splits_frame(self) -> pd.DataFrame:
        """The ``splits`` table of an export: clip_id, fold (sorted by clip_id)."""
        rows = sorted(self.folds.items())
        return pd.DataFrame(rows, columns=["clip_id", "fold"]).astype({"fold": "int64"})

    def inner_frame(self) -> pd.DataFrame:
        """The ``inner_splits`` table of an export: outer_fold, clip_id, subset."""
        return pd.DataFrame(self.inner, columns=["outer_fold", "clip_id", "subset"]).astype(
            {"outer_fold": "int64"}
        )


def assign_folds(
    clip_ids: Sequence[str],
    mode_classes: Sequence[str],
    patient_ids: Sequence[str],
    *,
    n_folds: int = 3,
    seed: int = 0,
    inner_val_fraction: float = 0.2,
) -> FoldAssignment:
    """Assign every clip an outer fold and, per outer fold, an inner train/val subset.

    The three sequences are parallel (one entry per clip). The result depends only on the set
    of (clip_id, mode, patient) rows, ``n_folds``, ``seed`` and ``inner_val_fraction``, never
    on the input order: rows are sorted by clip_id before splitting.

    Inner splits use ``round(1 / inner_val_fraction)`` patient-grouped stratified splits of the
    outer training part (fewer when it has fewer patients) and take as validation the split
    whose size is closest to the requested fraction.

    Raises ValueError for mismatched lengths, duplicate clip ids, a mode outside A..E, fewer
    patients than folds, or an outer training part with a single patient (no inner split).
    """
    if not (len(clip_ids) == len(mode_classes) == len(patient_ids)):
        raise ValueError(
            f"clip_ids, mode_classes and patient_ids must have the same length; got "
            f"{len(clip_ids)}, {len(mode_classes)} and {len(patient_ids)}."
        )
    if n_folds < 2:
        raise ValueError(f"n_folds must be at least 2; got {n_folds}.")
    if not 0.0 < inner_val_fraction < 1.0:
        raise ValueError(f"inner_val_fraction must lie in (0, 1); got {inner_val_fraction}.")

    table = pd.DataFrame(
        {
            "clip_id": [str(c) for c in clip_ids],
            "mode": [str(m) for m in mode_classes],
            "patient_id": [str(p) for p in patient_ids],
        }
    )
    duplicated = sorted(set(table.loc[table["clip_id"].duplicated(), "clip_id"]))
    if duplicated:
        raise ValueError(f"Duplicate clip ids: {', '.join(duplicated[:10])}.")
    bad_modes = sorted(set(table["mode"]) - set(GRADES))
    if bad_modes:
        raise ValueError(f"Grade modes must be one of A..E; got {', '.join(bad_modes)}.")
    n_patients = table["patient_id"].nunique()
    if n_patients < n_folds:
        raise ValueError(
            f"{n_folds} folds need at least {n_folds} patients (no patient may be in two "
            f"folds); this selection has {n_patients} patient(s) and {len(table)} clip(s). "
            f"Select more clips or use fewer folds."
        )
    table = table.sort_values("clip_id", kind="stable", ignore_index=True)

    outer = _grouped_stratified_folds(
        labels=table["mode"].to_numpy(),
        groups=table["patient_id"].to_numpy(),
        n_splits=n_folds,
        seed=seed,
    )
    folds = dict(zip(table["clip_id"], (int(f) for f in outer), strict=True))

    inner: list[tuple[int, str, Subset]] = []
    for fold in range(n_folds):
        part = table[outer != fold]
        is_val = _inner_validation_mask(part, seed=seed, val_fraction=inner_val_fraction)
        inner.extend(
            (fold, clip_id, "val" if val else "train")
            for clip_id, val in zip(part["clip_id"], is_val, strict=True)
        )

    return FoldAssignment(
        folds=folds,
        inner=inner,
        mode_classes=dict(zip(table["clip_id"], table["mode"], strict=True)),
        n_folds=n_folds,
        seed=seed,
    )


def _inner_validation_mask(part: pd.DataFrame, *, seed: int, val_fraction: float) -> np.ndarray:
    """Boolean mask over ``part`` (an outer training part, sorted by clip_id): True = val."""
    n_patients = part["patient_id"].nunique()
    if n_patients < 2:
        raise ValueError(
            f"An outer training part holds only {n_patients} patient(s), too few for an inner "
            f"train/val split by patient. Select more patients or use more folds."
        )
    n_splits = min(max(round(1.0 / val_fraction), 2), n_patients)
    inner_folds = _grouped_stratified_folds(
        labels=part["mode"].to_numpy(),
        groups=part["patient_id"].to_numpy(),
        n_splits=n_splits,
        seed=seed,
    )
    # The greedy splitter may leave a split small or empty when patients have many clips:
    # take the non-empty split closest to the requested fraction (the lowest index on a tie).
    sizes = np.bincount(inner_folds, minlength=n_splits)
    target = val_fraction * len(part)
    candidates = [k for k in range(n_splits) if sizes[k] > 0 and sizes[k] < len(part)]
    chosen = min(candidates, key=lambda k: (abs(sizes[k] - target), k))
    return inner_folds == chosen


def _grouped_stratified_folds(
    *, labels: np.ndarray, groups: np.ndarray, n_splits: int, seed: int
) -> np.ndarray:
    """Fold index (0..n_splits-1) per row: groups never straddle folds, labels spread evenly.

    Requires at least ``n_splits`` distinct groups.
    """
    # scikit-learn refuses to stratify when every class is smaller than n_splits; then
    # stratifying means nothing anyway, and one constant label still balances fold sizes.
    _, label_counts = np.unique(labels, return_counts=True)
    if label_counts.max() < n_splits:
        labels = np.zeros(len(labels), dtype=np.int64)

    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    fold_of_row = np.full(len(labels), -1, dtype=np.int64)
    with warnings.catch_warnings():
        # Rare grade modes (a class with fewer clips than folds) are expected and fine.
        warnings.filterwarnings(
            "ignore", message="The least populated class in y has only", category=UserWarning
        )
        for fold, (_, test_rows) in enumerate(
            splitter.split(np.zeros(len(labels)), labels, groups)
        ):
            fold_of_row[test_rows] = fold
    return fold_of_row
