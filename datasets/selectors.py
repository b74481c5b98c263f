"""Reads of the datasets app, shaped for the pages and the API."""

from __future__ import annotations

from typing import Any

import pandas as pd

from annotation.grades import GRADES, PROB_COLUMNS
from datasets.diff import VersionDiff, diff_versions
from datasets.models import DatasetVersion


def version_distributions(version: DatasetVersion) -> pd.DataFrame:
    rows = version.clips.values_list("clip_external_id", "p")
    return pd.DataFrame([[clip_id, *p] for clip_id, p in rows], columns=["clip_id", *PROB_COLUMNS])


def version_diff(a: DatasetVersion, b: DatasetVersion) -> VersionDiff:
    """Compared by the platform's clip ids of the frozen rows, never by the exports' per-version
    pseudonyms (which differ between versions on purpose)."""
    return diff_versions(version_distributions(a), version_distributions(b))


def version_clip_pks_by_export_id(version: DatasetVersion) -> dict[str, int]:
    """The export's clip id (a per-version pseudonym, or the platform's id) -> the Clip's pk:
    how what was read from an export (predictions of a training run) finds its clips."""
    from datasets.services import clip_export_id

    rows = version.clips.values_list("clip_external_id", "clip_id")
    return {clip_export_id(version, external_id): pk for external_id, pk in rows}


def version_fold_balance(version: DatasetVersion) -> list[dict[str, Any]]:
    """Mode-class counts per fold: [{"fold": 0, "A": 3, ..., "total": 40}, ...]."""
    balance = version.summary.get("fold_balance", {})
    rows = []
    for fold in sorted(balance, key=int):
        row = {"fold": int(fold), **{g: int(balance[fold].get(g, 0)) for g in GRADES}}
        row["total"] = int(balance[fold].get("total", sum(row[g] for g in GRADES)))
        rows.append(row)
    return rows


def version_readme(version: DatasetVersion) -> str:
    from annotation.storage import EXPORTS, is_local, storage_for
    from datasets.services import export_dir_for

    if not version.frozen:
        return ""
    if not is_local(EXPORTS):  # the object of the frozen export (its hash is in the manifest)
        storage = storage_for(EXPORTS)
        name = f"{version.name}/README.md"
        if not storage.exists(name):
            return ""
        with storage.open(name, "rb") as f:
            return f.read().decode("utf-8")
    path = export_dir_for(version) / "README.md"
    return path.read_text() if path.is_file() else ""
