"""What changed between two dataset versions' grade distributions.

Plain numpy/pandas, no Django.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from annotation.aggregation.distributions import emd
from annotation.grades import PROB_COLUMNS

# Distributions closer than this in every grade are the same (float noise from re-normalising).
SAME_PROBABILITY_ATOL = 1e-12


@dataclass(frozen=True)
class ClipChange:
    """One clip whose grade distribution differs between the versions."""

    clip_id: str
    emd: float  # sum over A..E of the squared difference of the two CDFs (the paper's eq. 6)
    p_a: tuple[float, ...]  # distribution in version a, A..E
    p_b: tuple[float, ...]  # distribution in version b, A..E


@dataclass(frozen=True)
class VersionDiff:
    """Clips added in b, removed from a, changed (largest EMD first) and the unchanged count."""

    added: list[str]
    removed: list[str]
    changed: list[ClipChange]
    unchanged: int

    def changed_frame(self) -> pd.DataFrame:
        """The changed clips as a table: clip_id, emd, then a_p_A..a_p_E, b_p_A..b_p_E."""
        columns = ["clip_id", "emd"]
        columns += [f"a_{p}" for p in PROB_COLUMNS] + [f"b_{p}" for p in PROB_COLUMNS]
        rows = [[c.clip_id, c.emd, *c.p_a, *c.p_b] for c in self.changed]
        return pd.DataFrame(rows, columns=columns)


def _distributions(frame: pd.DataFrame, label: str) -> pd.DataFrame:
    missing = [c for c in ("clip_id", *PROB_COLUMNS) if c not in frame.columns]
    if missing:
        raise ValueError(f"Distributions of version {label} lack the columns {', '.join(missing)}.")
    table = frame[["clip_id", *PROB_COLUMNS]].astype({"clip_id": str})
    duplicated = sorted(set(table.loc[table["clip_id"].duplicated(), "clip_id"]))
    if duplicated:
        raise ValueError(
            f"Distributions of version {label} list clips twice: {', '.join(duplicated[:5])}."
        )
    return table.set_index("clip_id").astype("float64")


def diff_versions(dist_a: pd.DataFrame, dist_b: pd.DataFrame) -> VersionDiff:
    """Compare two distribution tables (clip_id, p_A..p_E, other columns ignored).

    A clip in both is changed when any grade's probability differs by more than
    ``SAME_PROBABILITY_ATOL``. Changed clips are sorted by EMD, largest first, then clip_id.
    """
    a = _distributions(dist_a, "a")
    b = _distributions(dist_b, "b")
    common = sorted(set(a.index) & set(b.index))
    p_a = a.loc[common].to_numpy()
    p_b = b.loc[common].to_numpy()
    differs = (np.abs(p_a - p_b) > SAME_PROBABILITY_ATOL).any(axis=1)
    distance = emd(p_a, p_b)
    changed = [
        ClipChange(
            clip_id=clip_id,
            emd=float(distance[i]),
            p_a=tuple(map(float, p_a[i])),
            p_b=tuple(map(float, p_b[i])),
        )
        for i, clip_id in enumerate(common)
        if differs[i]
    ]
    changed.sort(key=lambda c: (-c.emd, c.clip_id))
    return VersionDiff(
        added=sorted(set(b.index) - set(a.index)),
        removed=sorted(set(a.index) - set(b.index)),
        changed=changed,
        unchanged=int((~differs).sum()),
    )
