"""MHSMA (real unstained human sperm heads, expert labels) in the ``labels.csv`` layout.

The layout that the head encoder's commands (``pretrain_head``, ``probe_head``) and the
morphology benchmark read::

    OUT/labels.csv   image, head, vacuole, acrosome, tail   (one row per image; 0 normal,
                     1 abnormal; ``image`` is the row's file name under images/)
    OUT/images/      one grey PNG per image, at its native size (64 x 64 px)

MHSMA itself (``../shared/data/mhsma/``, see its PROVENANCE.md) is one ``.npy`` stack per
split, ``x_64_<split>.npy`` (N, 64, 64) uint8, and one label vector per label,
``y_<label>_<split>.npy`` (N,). It is licensed CC BY-NC-SA: it is read at run time and the
converted copy goes into a directory the user names outside the repository (e.g. ``var/``),
never into git.

    python benchmarks/mhsma_labels.py train var/mhsma/train [--source ../shared/data/mhsma]

The directory is written whole or not at all (a temporary directory renamed at the end).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from annotation.ingest.scale import HEAD_LENGTH_UM  # noqa: E402

DEFAULT_SOURCE = (
    Path(os.environ.get("MERSV_SHARED_DATA") or REPO.parent / "shared" / "data") / "mhsma"
)
SPLITS: tuple[str, ...] = ("train", "valid", "test")
LABELS: tuple[str, ...] = ("head", "vacuole", "acrosome", "tail")
# MHSMA's heads are about 27 x 15 px at 64 x 64 (PROVENANCE.md); its pixel size is not
# published, so it is derived from the expected human head length (4.6 µm, the project's
# default, annotation.ingest.scale): 4.6 / 27 = 0.17 µm/px.
HEAD_LENGTH_PX = 27.0


def pixel_size_um() -> float:
    """MHSMA's pixel size in µm/px, derived from its heads' length (see ``HEAD_LENGTH_PX``)."""
    return HEAD_LENGTH_UM / HEAD_LENGTH_PX


def load_split(source_dir: Path, split: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """MHSMA's ``split``: images (N, H, W) uint8 and each label (N,) int64 of 0/1. Raises a
    ValueError that names what is missing or malformed."""
    source_dir = Path(source_dir)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    images_path = source_dir / f"x_64_{split}.npy"
    if not images_path.is_file():
        raise ValueError(
            f"{images_path} is missing: {source_dir} is not an MHSMA directory with the "
            f"{split!r} split (expected x_64_{split}.npy and y_<label>_{split}.npy)"
        )
    images = np.load(images_path, allow_pickle=False)
    if images.ndim != 3 or images.dtype != np.uint8 or len(images) == 0:
        raise ValueError(
            f"{images_path} must hold grey images (N, H, W) uint8, got {images.shape} "
            f"{images.dtype}"
        )
    labels: dict[str, np.ndarray] = {}
    for name in LABELS:
        path = source_dir / f"y_{name}_{split}.npy"
        if not path.is_file():
            raise ValueError(f"{path} is missing: every label needs one vector per split")
        values = np.load(path, allow_pickle=False)
        if values.shape != (len(images),):
            raise ValueError(f"{path} has shape {values.shape}, expected ({len(images)},)")
        if not np.isin(values, (0, 1)).all():
            raise ValueError(f"{path} must hold 0 (normal) or 1 (abnormal) only")
        labels[name] = values.astype(np.int64)
    return images, labels


def convert(source_dir: Path, split: str, out_dir: Path) -> Path:
    """Write MHSMA's ``split`` from ``source_dir`` into ``out_dir`` in the ``labels.csv``
    layout (module docstring) and return ``out_dir``. Refuses an ``out_dir`` that exists and
    is not empty; writes into a temporary directory beside it and renames it at the end."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ValueError(f"{out_dir} exists and is not an empty directory: name a new one")
    images, labels = load_split(source_dir, split)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        (staging / "images").mkdir()
        names = [f"{split}_{i:05d}.png" for i in range(len(images))]
        for name, image in zip(names, images, strict=True):
            if not cv2.imwrite(str(staging / "images" / name), image):
                raise OSError(f"could not write {staging / 'images' / name}")
        with open(staging / "labels.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["image", *LABELS])
            for i, name in enumerate(names):
                writer.writerow([name, *(int(labels[label][i]) for label in LABELS)])
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked above)
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def read_labels(directory: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Read a ``labels.csv`` directory back: images (N, H, W) uint8 and labels by column."""
    directory = Path(directory)
    with open(directory / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise ValueError(f"{directory / 'labels.csv'} has no rows")
    columns = [c for c in rows[0] if c != "image"]
    images = []
    for row in rows:
        image = cv2.imread(str(directory / "images" / row["image"]), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise ValueError(f"{directory / 'images' / row['image']} cannot be read")
        images.append(image)
    return np.stack(images), {c: np.array([int(r[c]) for r in rows]) for c in columns}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("split", choices=SPLITS)
    parser.add_argument("out_dir", type=Path, help="a new directory (outside the repository)")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    args = parser.parse_args(argv)
    try:
        out = convert(args.source, args.split, args.out_dir)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    images, _ = load_split(args.source, args.split)
    print(f"wrote {len(images)} images and labels.csv ({', '.join(LABELS)}) to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
