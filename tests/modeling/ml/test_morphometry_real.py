"""Morphometry on real heads: MHSMA's unstained human heads (``../shared/data/mhsma/``, see
its PROVENANCE.md; read at run time, never copied), and the converter of MHSMA to the
``labels.csv`` layout (benchmarks/mhsma_labels.py)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

from benchmarks import mhsma_labels
from modeling.ml.morphometry import clip_morphometry, frame_morphometry

REPO_ROOT = Path(__file__).resolve().parents[3]

N_IMAGES = 40


def _mhsma() -> Path:
    root = Path(os.environ.get("MERSV_SHARED_DATA") or REPO_ROOT.parent / "shared" / "data")
    path = root / "mhsma"
    if not (path / "x_64_valid.npy").is_file():
        pytest.skip(
            f"MHSMA is absent: {path} (set MERSV_SHARED_DATA to the folder that holds "
            "mhsma/x_64_valid.npy)"
        )
    return path


def test_mhsmas_pixel_size_comes_from_the_human_head_length() -> None:
    assert mhsma_labels.pixel_size_um() == pytest.approx(4.6 / 27)


def test_a_head_is_found_in_real_mhsma_images_at_their_native_size() -> None:
    images, labels = mhsma_labels.load_split(_mhsma(), "valid")
    pixel = mhsma_labels.pixel_size_um()
    measured = [frame_morphometry(image, pixel_size_um=pixel) for image in images[:N_IMAGES]]
    assert all(m is not None for m in measured), [i for i, m in enumerate(measured) if m is None]
    found = [m for m in measured if m is not None]
    area = np.array([m["area"] for m in found])
    length = np.array([m["length"] for m in found])
    # Human heads: about 4-5.5 x 2.5-3.5 µm (WHO), ~11 µm², abnormal ones smaller or larger;
    # at 0.17 µm/px the old 9 x 6 px window would have measured a fraction of each.
    assert 6.0 < float(np.median(area)) < 20.0
    assert 3.5 < float(np.median(length)) < 6.5
    assert (area > 3.0).all() and (area < 40.0).all()
    # Stacking the images as a clip gives the per-feature median of the frames.
    clip = clip_morphometry(images[:N_IMAGES], pixel_size_um=pixel)
    assert clip[0] == pytest.approx(float(np.median(area)), rel=1e-5)
    assert labels["head"].shape == (len(images),)


def test_the_converter_writes_the_labels_csv_layout(tmp_path: Path) -> None:
    source = _mhsma()
    out = mhsma_labels.convert(source, "valid", tmp_path / "valid")
    images, labels = mhsma_labels.load_split(source, "valid")
    with open(out / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["image", "head", "vacuole", "acrosome", "tail"]
    assert len(rows) == len(images) == len(list((out / "images").iterdir()))
    read_images, read_labels = mhsma_labels.read_labels(out)
    np.testing.assert_array_equal(read_images, images)  # PNG is lossless
    for name in mhsma_labels.LABELS:
        np.testing.assert_array_equal(read_labels[name], labels[name])
    # Nothing is left beside it, and an existing directory is not overwritten.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["valid"]
    with pytest.raises(ValueError, match="exists and is not an empty directory"):
        mhsma_labels.convert(source, "valid", out)


def test_the_converter_names_what_is_wrong_with_its_source(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        mhsma_labels.convert(tmp_path, "dev", tmp_path / "out")
    with pytest.raises(ValueError, match=r"x_64_train\.npy is missing"):
        mhsma_labels.convert(tmp_path, "train", tmp_path / "out")
    np.save(tmp_path / "x_64_train.npy", np.zeros((3, 8, 8), np.uint8))
    for name in mhsma_labels.LABELS:
        np.save(tmp_path / f"y_{name}_train.npy", np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="must hold 0 \\(normal\\) or 1 \\(abnormal\\) only"):
        mhsma_labels.convert(tmp_path, "train", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written
    np.save(tmp_path / "y_head_train.npy", np.array([0, 1]))
    with pytest.raises(ValueError, match="has shape \\(2,\\), expected \\(3,\\)"):
        mhsma_labels.load_split(tmp_path, "train")


def test_the_converters_command_line_reports_an_error_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert mhsma_labels.main(["train", str(tmp_path / "out"), "--source", str(tmp_path)]) == 2
    assert "x_64_train.npy is missing" in capsys.readouterr().err
