"""The export directory of a dataset version (datasets.export)."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import TypedDict

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from annotation.grades import GRADES, PROB_COLUMNS
from annotation.ingest.kinematics import KINEMATICS_KEYS
from datasets.export import (
    MANIFEST_NAME,
    TABLE_NAMES,
    ExportResult,
    read_export_tables,
    stream_tar,
    tar_size,
    verify_export,
    write_export,
)
from datasets.splits import assign_folds


class ExportInputs(TypedDict):
    """The keyword arguments of `write_export` besides out_dir."""

    clips: pd.DataFrame
    ratings: pd.DataFrame
    distributions: pd.DataFrame
    splits: pd.DataFrame
    inner_splits: pd.DataFrame
    files: dict[str, Path]
    datasheet_markdown: str


KINEMATICS = list(KINEMATICS_KEYS)


def _inputs(source_dir: Path, *, n_clips: int = 9) -> ExportInputs:
    """A small but complete version: clips of 9 patients, ratings, distributions, folds."""
    rng = np.random.default_rng(0)
    source_dir.mkdir(parents=True, exist_ok=True)
    clip_ids = [f"c{i:04d}" for i in range(n_clips)]
    files: dict[str, Path] = {}
    for i, clip_id in enumerate(clip_ids):
        for relative, size in (
            (f"videos/v{i:04d}.mp4", 3000 + 517 * i),
            (f"crops/{clip_id}.mp4", 700),
        ):
            source = source_dir / relative.replace("/", "_")
            source.write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
            files[relative] = source
    clips = pd.DataFrame(
        {
            "clip_id": clip_ids,
            "patient_id": [f"p{i:03d}" for i in range(n_clips)],
            "video": [f"videos/v{i:04d}.mp4" for i in range(n_clips)],
            "fps": 15.0,
            "x": rng.uniform(0, 1392, n_clips),
            "y": rng.uniform(0, 976, n_clips),
            "pixel_size_um": [0.3225] * (n_clips - 1) + [None],  # one video without a scale
            **{k: rng.uniform(0, 80, n_clips) for k in KINEMATICS},
        }
    )
    votes = rng.integers(0, 5, size=(n_clips, 7))
    ratings = pd.DataFrame(
        [
            (clip_id, f"expert{j:02d}", GRADES[votes[i, j]])
            for i, clip_id in enumerate(clip_ids)
            for j in range(votes.shape[1])
        ],
        columns=["clip_id", "rater_id", "grade"],
    )
    counts = np.stack([np.bincount(row, minlength=5) for row in votes])
    p = counts / counts.sum(axis=1, keepdims=True)
    scores = np.arange(1, 6)
    mean = p @ scores
    distributions = pd.DataFrame(p, columns=list(PROB_COLUMNS))
    distributions.insert(0, "clip_id", clip_ids)
    distributions["n"] = counts.sum(axis=1)
    distributions["mean"] = mean
    distributions["std"] = np.sqrt(p @ scores**2 - mean**2)
    distributions["mode"] = [GRADES[i] for i in counts.argmax(axis=1)]
    folds = assign_folds(clip_ids, list(distributions["mode"]), list(clips["patient_id"]))
    return {
        "clips": clips,
        "ratings": ratings,
        "distributions": distributions,
        "splits": folds.splits_frame(),
        "inner_splits": folds.inner_frame(),
        "files": files,
        "datasheet_markdown": "# Test version\n\nÉtude: grades A..E.\n",
    }


def _shuffled(inputs: ExportInputs) -> ExportInputs:
    """The same data with every table's rows and columns in another order."""
    out = inputs.copy()
    for name in TABLE_NAMES:
        frame: pd.DataFrame = inputs[name]  # type: ignore[literal-required]
        reordered = frame.sample(frac=1.0, random_state=1)[list(reversed(frame.columns))]
        out[name] = reordered  # type: ignore[literal-required]
    return out


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def inputs(tmp_path: Path) -> ExportInputs:
    return _inputs(tmp_path / "sources")


@pytest.fixture
def export(tmp_path: Path, inputs: ExportInputs) -> tuple[Path, ExportResult]:
    out = tmp_path / "exports" / "v1"
    return out, write_export(out, **inputs)


def test_two_writes_of_the_same_data_are_byte_identical(
    tmp_path: Path, inputs: ExportInputs, export: tuple[Path, ExportResult]
) -> None:
    first_dir, first = export
    second = write_export(tmp_path / "again", **_shuffled(inputs))
    assert _tree(first_dir) == _tree(tmp_path / "again")
    assert first.content_hash == second.content_hash
    manifest = (first_dir / MANIFEST_NAME).read_bytes()
    assert first.content_hash == hashlib.sha256(manifest).hexdigest()
    assert first.n_files == len(_tree(first_dir)) == 9 * 2 + 5 * 2 + 2
    assert first.total_bytes == sum(len(b) for b in _tree(first_dir).values())


def test_the_manifest_lists_every_other_file_sorted(export: tuple[Path, ExportResult]) -> None:
    out, _ = export
    lines = (out / MANIFEST_NAME).read_text(encoding="utf-8").splitlines()
    paths = [line.split("  ", 1)[1] for line in lines]
    assert paths == sorted(paths)
    assert set(paths) == set(_tree(out)) - {MANIFEST_NAME}
    assert "README.md" in paths and "videos/v0000.mp4" in paths
    assert verify_export(out) == []


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="needs coreutils sha256sum")
def test_standard_sha256sum_checks_the_export(export: tuple[Path, ExportResult]) -> None:
    out, _ = export
    result = subprocess.run(
        ["sha256sum", "--check", "--quiet", MANIFEST_NAME], cwd=out, capture_output=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_verify_reports_altered_missing_and_extra_files(export: tuple[Path, ExportResult]) -> None:
    out, _ = export
    (out / "ratings.csv").write_text("clip_id,rater_id,grade\nc0000,expert00,A\n", encoding="utf-8")
    (out / "crops" / "c0001.mp4").unlink()
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    assert verify_export(out) == [
        "missing: crops/c0001.mp4",
        "altered: ratings.csv (SHA-256 differs from MANIFEST.sha256)",
        "extra: notes.txt (not in MANIFEST.sha256)",
    ]


def test_verify_reports_a_missing_manifest(export: tuple[Path, ExportResult]) -> None:
    out, _ = export
    (out / MANIFEST_NAME).unlink()
    assert verify_export(out)[0] == "MANIFEST.sha256 is missing"


def test_tables_read_back_with_exact_values_and_types(
    inputs: ExportInputs, export: tuple[Path, ExportResult]
) -> None:
    out, _ = export
    tables = read_export_tables(out)
    assert list(tables) == list(TABLE_NAMES)
    given = inputs["distributions"]
    got = tables["distributions"]
    assert got["n"].dtype == np.int64
    np.testing.assert_array_equal(got[list(PROB_COLUMNS)], given[list(PROB_COLUMNS)])
    assert tables["clips"]["pixel_size_um"].isna().sum() == 1
    # The CSV holds the same floats exactly (shortest round-trip repr) and an empty field for NaN.
    csv = pd.read_csv(out / "distributions.csv")
    np.testing.assert_array_equal(csv[list(PROB_COLUMNS)], given[list(PROB_COLUMNS)])
    assert b"\r" not in (out / "clips.csv").read_bytes()
    assert (out / "clips.csv").read_text(encoding="utf-8").splitlines()[-1].count(",,") == 1


def test_parquet_files_carry_no_pandas_metadata(export: tuple[Path, ExportResult]) -> None:
    out, _ = export
    metadata = pq.ParquetFile(out / "parquet" / "clips.parquet").metadata.metadata or {}
    assert b"pandas" not in metadata


@pytest.mark.parametrize(
    "bad_path",
    [
        "../escape.mp4",
        "/etc/passwd",
        "videos/../../x.mp4",
        "videos\\v.mp4",
        "a\0b",
        "a//b",
        "videos/",
        "./v.mp4",
        "line\nbreak.mp4",
        "x" * 256,
    ],
)
def test_a_file_path_that_leaves_the_export_is_refused(
    tmp_path: Path, inputs: ExportInputs, bad_path: str
) -> None:
    files = dict(inputs["files"])
    files[bad_path] = next(iter(files.values()))
    with pytest.raises(ValueError, match="Export path"):
        write_export(tmp_path / "out", **{**inputs, "files": files})
    assert not (tmp_path / "out").exists()


def test_a_video_path_that_leaves_the_export_is_refused(
    tmp_path: Path, inputs: ExportInputs
) -> None:
    clips = inputs["clips"].copy()
    clips.loc[0, "video"] = "../../etc/passwd"
    with pytest.raises(ValueError, match=r"'\.\./\.\./etc/passwd'"):
        write_export(tmp_path / "out", **{**inputs, "clips": clips})


def test_a_file_that_would_replace_a_generated_one_is_refused(
    tmp_path: Path, inputs: ExportInputs
) -> None:
    files = {**inputs["files"], "readme.MD": next(iter(inputs["files"].values()))}
    with pytest.raises(ValueError, match="name the same file"):
        write_export(tmp_path / "out", **{**inputs, "files": files})


def test_a_non_empty_out_dir_is_refused_unless_overwrite(
    tmp_path: Path, inputs: ExportInputs, export: tuple[Path, ExportResult]
) -> None:
    out, first = export
    with pytest.raises(FileExistsError, match=r"not empty.*overwrite=True"):
        write_export(out, **inputs)
    (out / "stale.txt").write_text("old", encoding="utf-8")
    again = write_export(out, **inputs, overwrite=True)
    assert again.content_hash == first.content_hash
    assert verify_export(out) == []  # the stale file went with the old export
    # An existing empty folder is fine without overwrite.
    (tmp_path / "empty").mkdir()
    write_export(tmp_path / "empty", **inputs)


def test_a_failed_export_leaves_nothing_behind(tmp_path: Path, inputs: ExportInputs) -> None:
    calls: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        calls.append((done, total))
        if done == 15:
            raise RuntimeError("disk full")

    parent = tmp_path / "exports"
    with pytest.raises(RuntimeError, match="disk full"):
        write_export(parent / "v1", **inputs, progress=progress)
    assert list(parent.iterdir()) == []
    assert calls[0] == (1, 30)


def test_progress_counts_every_file_up_to_the_total(tmp_path: Path, inputs: ExportInputs) -> None:
    calls: list[tuple[int, int]] = []
    result = write_export(tmp_path / "out", **inputs, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(i, result.n_files) for i in range(1, result.n_files + 1)]


def test_missing_columns_and_unknown_clips_are_refused_by_name(
    tmp_path: Path, inputs: ExportInputs
) -> None:
    clips = inputs["clips"].drop(columns=["fps"])
    with pytest.raises(ValueError, match=r"'clips'.*missing: fps"):
        write_export(tmp_path / "a", **{**inputs, "clips": clips})
    ratings = pd.concat(
        [
            inputs["ratings"],
            pd.DataFrame([["ghost", "expert00", "A"]], columns=["clip_id", "rater_id", "grade"]),
        ]
    )
    with pytest.raises(ValueError, match=r"'ratings' names 1 clip.*ghost"):
        write_export(tmp_path / "b", **{**inputs, "ratings": ratings})


def test_a_video_not_among_the_files_is_refused(tmp_path: Path, inputs: ExportInputs) -> None:
    files = {k: v for k, v in inputs["files"].items() if k != "videos/v0003.mp4"}
    with pytest.raises(ValueError, match=r"videos/v0003\.mp4"):
        write_export(tmp_path / "out", **{**inputs, "files": files})


def test_the_tar_stream_extracts_to_the_export_and_repeats_byte_for_byte(
    tmp_path: Path, export: tuple[Path, ExportResult]
) -> None:
    out, _ = export
    chunks = list(stream_tar(out, chunk_size=1000))
    data = b"".join(chunks)
    assert data == b"".join(stream_tar(out, chunk_size=4096))
    assert len(data) == tar_size(out)
    # Bounded memory: files of 3 to 7 kB come in pieces no larger than a tar header; only the
    # last chunk (the end-of-archive padding) is larger.
    assert max(len(c) for c in chunks[:-1]) <= 3 * tarfile.BLOCKSIZE
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        members = archive.getmembers()
        assert {(m.mtime, m.uid, m.gid, m.mode) for m in members} == {(0, 0, 0, 0o644)}
        archive.extractall(tmp_path / "unpacked", filter="data")
    assert _tree(tmp_path / "unpacked" / "v1") == _tree(out)


def test_the_tar_stream_can_omit_or_rename_its_top_folder(
    export: tuple[Path, ExportResult],
) -> None:
    out, _ = export
    for root, first in (("", "MANIFEST.sha256"), ("mersv-v1", "mersv-v1/MANIFEST.sha256")):
        data = b"".join(stream_tar(out, root=root))
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            assert archive.getnames()[0] == first


@pytest.mark.parametrize(
    ("table", "column", "value", "message"),
    [
        ("ratings", "grade", "F", r"'grade': values must be one of A, B, C, D, E; got 'F'"),
        ("splits", "fold", 1.5, r"'fold' must hold whole numbers"),
        ("distributions", "p_A", None, r"'p_A' has 1 missing value"),
    ],
)
def test_a_bad_value_is_refused_with_its_table_and_column(
    tmp_path: Path, inputs: ExportInputs, table: str, column: str, value: object, message: str
) -> None:
    frame: pd.DataFrame = inputs[table].copy()  # type: ignore[literal-required]
    frame[column] = frame[column].astype(object)
    frame.loc[0, column] = value
    with pytest.raises(ValueError, match=message):
        write_export(tmp_path / "out", **{**inputs, table: frame})
