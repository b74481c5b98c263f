"""The exchange format's one spec (annotation.exchange): the simulator writes it, the exporter
writes it, the importer and the training loader read it, and each names a missing column."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from django.core.management import call_command

from annotation.exchange import (
    CLIP_OPTIONAL,
    CLIP_REQUIRED,
    CLIPS_FILE,
    DISTRIBUTION_COLUMNS,
    DISTRIBUTIONS_FILE,
    EXPORT_CLIP_COLUMNS,
    INNER_SPLIT_COLUMNS,
    INNER_SPLITS_FILE,
    RATING_NAMES,
    RATINGS_FILE,
    SPLIT_COLUMNS,
    SPLITS_FILE,
    names,
)
from annotation.ingest.kinematics import KINEMATICS_KEYS
from datasets.export import TABLES, write_export
from datasets.importer import ImportValidationError, dataset_validate
from modeling.ml.data import ExportDataset, list_folds, read_fold
from modeling.ml.model import DEFAULT_KINEMATICS_FEATURES
from tests.datasets.test_export import _inputs


def _header(path: Path) -> tuple[str, ...]:
    return tuple(pd.read_csv(path, nrows=0).columns)


def _rename_column(path: Path, old: str, new: str) -> None:
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert old in table.columns
    table.rename(columns={old: new}).to_csv(path, index=False)


@pytest.fixture
def exported(db, synthetic_small: Path, settings, tmp_path: Path) -> Path:
    """The simulator's data set imported, built into a version and exported."""
    settings.EXPORT_ROOT = tmp_path / "exports"
    call_command("import_dataset", str(synthetic_small), "--no-progress")
    call_command("build_dataset", "v1", "--no-progress")
    out = tmp_path / "export"
    call_command("export_dataset", "v1", "--out", str(out))
    return out


def test_the_simulator_writes_the_exchange_formats_columns_in_their_order(
    synthetic_small: Path,
) -> None:
    assert _header(synthetic_small / CLIPS_FILE) == names(CLIP_REQUIRED + CLIP_OPTIONAL)
    assert _header(synthetic_small / RATINGS_FILE) == RATING_NAMES


def test_the_exporters_tables_are_the_exchange_formats_with_the_kinematics_list() -> None:
    assert TABLES["clips"].columns == EXPORT_CLIP_COLUMNS
    assert tuple(TABLES["clips"].names[-len(KINEMATICS_KEYS) :]) == KINEMATICS_KEYS
    assert tuple(TABLES["ratings"].names) == RATING_NAMES
    assert TABLES["distributions"].columns == DISTRIBUTION_COLUMNS
    assert TABLES["splits"].columns == SPLIT_COLUMNS
    assert TABLES["inner_splits"].columns == INNER_SPLIT_COLUMNS
    files = (CLIPS_FILE, RATINGS_FILE, DISTRIBUTIONS_FILE, SPLITS_FILE, INNER_SPLITS_FILE)
    assert sorted(f"{name}.csv" for name in TABLES) == sorted(files)


def test_an_export_is_read_by_the_importer_and_the_training_loader_with_the_same_columns(
    exported: Path,
) -> None:
    assert _header(exported / CLIPS_FILE) == names(EXPORT_CLIP_COLUMNS)
    assert _header(exported / RATINGS_FILE) == RATING_NAMES
    assert _header(exported / DISTRIBUTIONS_FILE) == names(DISTRIBUTION_COLUMNS)
    assert _header(exported / SPLITS_FILE) == names(SPLIT_COLUMNS)
    assert _header(exported / INNER_SPLITS_FILE) == names(INNER_SPLIT_COLUMNS)
    clips = pd.read_csv(exported / CLIPS_FILE, dtype={"clip_id": str}).set_index("clip_id")

    # The importer reads every clip and rating of the export. The export names clips by
    # per-version pseudonyms, so no clip id is one of this platform's: all are new to it
    # (dataset_import itself refuses an export of this platform: tests/datasets/).
    plan = dataset_validate(exported)
    assert [(r.clip_id, r.video, r.fps, r.x, r.y) for r in plan.clips] == [
        (clip_id, row.video, row.fps, row.x, row.y) for clip_id, row in clips.iterrows()
    ]
    assert not plan.existing_clip_ids
    planned = sorted(r.clip_id for rows in plan.new_videos.values() for r in rows)
    assert planned == sorted(clips.index)
    assert len(plan.ratings) == len(pd.read_csv(exported / RATINGS_FILE))

    # The training loader reads the same clips and their kinematics columns.
    dataset = ExportDataset(exported)
    assert sorted(dataset.clip_ids) == sorted(clips.index)
    np.testing.assert_allclose(
        dataset.kinematics,
        np.nan_to_num(clips.loc[dataset.clip_ids, list(DEFAULT_KINEMATICS_FEATURES)]),
        rtol=1e-6,
    )
    folds = list_folds(exported)
    assert folds and read_fold(exported, folds[0]).test


@pytest.mark.parametrize(
    ("file_name", "column"),
    [(CLIPS_FILE, "x"), (CLIPS_FILE, "patient_id"), (RATINGS_FILE, "grade")],
)
def test_the_importer_names_a_renamed_column(
    db, synthetic_small: Path, tmp_path: Path, file_name: str, column: str
) -> None:
    data = Path(shutil.copytree(synthetic_small, tmp_path / "data"))
    _rename_column(data / file_name, column, column.upper())
    with pytest.raises(ImportValidationError) as error:
        dataset_validate(data)
    assert error.value.problems == [f"{file_name} line 1: missing column(s) {column}"]


def _export(tmp_path: Path) -> Path:
    out = tmp_path / "export"
    write_export(out, **_inputs(tmp_path / "sources"))
    return out


LOADERS: dict[str, Callable[[Path], object]] = {
    "dataset": lambda root: ExportDataset(root),
    "folds": lambda root: list_folds(root),
    "fold": lambda root: read_fold(root, 0),
}


@pytest.mark.parametrize(
    ("file_name", "column", "loader"),
    [
        (CLIPS_FILE, "vcl", "dataset"),
        (CLIPS_FILE, "clip_id", "dataset"),
        (DISTRIBUTIONS_FILE, "p_C", "dataset"),
        (SPLITS_FILE, "fold", "folds"),
        (INNER_SPLITS_FILE, "subset", "fold"),
    ],
)
def test_the_training_loader_names_a_renamed_column(
    tmp_path: Path, file_name: str, column: str, loader: str
) -> None:
    export = _export(tmp_path)
    _rename_column(export / file_name, column, f"{column}_renamed")
    with pytest.raises(ValueError, match=rf"{file_name} lacks the column\(s\) {column}$"):
        LOADERS[loader](export)


@pytest.mark.parametrize(("table", "column"), [("clips", "speed"), ("ratings", "rater_id")])
def test_the_exporter_names_a_missing_column(tmp_path: Path, table: str, column: str) -> None:
    inputs = _inputs(tmp_path / "sources")
    inputs[table] = inputs[table].drop(columns=[column])  # type: ignore[literal-required]
    with pytest.raises(ValueError, match=rf"missing: {column}; unexpected: none"):
        write_export(tmp_path / "export", **inputs)
