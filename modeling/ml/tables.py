"""Reading distribution and prediction tables (`clip_id, p_A, ..., p_E` + other columns).

Plain pandas, no Django: researchers use it on exported datasets too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from annotation.grades import PROB_COLUMNS

SUM_TOLERANCE = 1e-6


class TableError(ValueError):
    """A distribution table is malformed; the message names the file, line and reason."""


def read_distribution_csv(path: Path) -> pd.DataFrame:
    """A table indexed by clip_id with the columns p_A..p_E, checked row by row.

    Each row must hold five finite, non-negative numbers summing to 1 within 1e-6; clip ids
    must be unique. Line numbers in errors count the header as line 1.
    """
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path}: file not found")
    try:
        frame = pd.read_csv(path, dtype={"clip_id": str})
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise TableError(f"{path}: not a readable CSV file ({exc})") from None
    missing = [c for c in ("clip_id", *PROB_COLUMNS) if c not in frame.columns]
    if missing:
        raise TableError(f"{path} line 1: missing column(s) {', '.join(missing)}")
    problems = []
    duplicated = frame["clip_id"][frame["clip_id"].duplicated()].tolist()
    if duplicated:
        problems.append(f"clip_id(s) listed twice: {', '.join(map(str, duplicated[:5]))}")
    values = frame[list(PROB_COLUMNS)].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    for row in np.flatnonzero(~np.isfinite(values).all(axis=1))[:5]:
        problems.append(f"line {row + 2}: p_A..p_E must be numbers")
    finite = np.isfinite(values).all(axis=1)
    for row in np.flatnonzero(finite & (values < 0).any(axis=1))[:5]:
        problems.append(f"line {row + 2}: negative probability in clip {frame.clip_id[row]}")
    sums = values.sum(axis=1)
    for row in np.flatnonzero(finite & (np.abs(sums - 1.0) > SUM_TOLERANCE))[:5]:
        problems.append(
            f"line {row + 2}: probabilities of clip {frame.clip_id[row]} sum to "
            f"{sums[row]:.9g}, not 1 (tolerance {SUM_TOLERANCE:g})"
        )
    if problems:
        raise TableError(f"{path}: " + "; ".join(problems))
    table = frame.set_index("clip_id")
    table[list(PROB_COLUMNS)] = values
    return table


def matched_arrays(
    true: pd.DataFrame, pred: pd.DataFrame
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Clip ids in sorted order and the (N, 5) true and predicted arrays, matched by id.

    Every true clip needs a prediction and every prediction a true clip.
    """
    missing = sorted(set(true.index) - set(pred.index))
    extra = sorted(set(pred.index) - set(true.index))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} clip(s) without a prediction: {', '.join(missing[:10])}")
        if extra:
            parts.append(f"{len(extra)} prediction(s) for unknown clip(s): {', '.join(extra[:10])}")
        raise TableError("; ".join(parts))
    ids = sorted(true.index)
    cols = list(PROB_COLUMNS)
    return ids, true.loc[ids, cols].to_numpy(float), pred.loc[ids, cols].to_numpy(float)
