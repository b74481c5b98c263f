"""A tiny export directory for the plain-PyTorch modeling code (no Django, no database).

24 clips of 16 grey 150 x 150 frames: a bright blob at the centre whose radius encodes the
clip's grade (a larger head for a better grade), moving left to right at a speed that encodes
it too; 3 outer folds with inner train/val subsets. The layout is the one of
``modeling.ml.data``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from annotation.grades import N_GRADES, PROB_COLUMNS

N_CLIPS = 24
N_FOLDS = 3
N_FRAMES = 16
SIZE = 150


def clip_frames(grade: int, rng: np.random.Generator, *, n_frames: int = N_FRAMES) -> np.ndarray:
    """(T, SIZE, SIZE) uint8: noise plus a blob of radius 9 - grade pixels."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    frames = rng.normal(60, 8, (n_frames, SIZE, SIZE))
    radius = 9 - grade
    for t in range(n_frames):
        cx = SIZE / 2 + (t - n_frames / 2) * (4 - grade) * 0.3
        frames[t][(xx - cx) ** 2 + (yy - SIZE / 2) ** 2 <= radius**2] = 220
    return np.clip(frames, 0, 255).astype(np.uint8)


def write_export(root: Path, *, n_clips: int = N_CLIPS, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    (root / "frames").mkdir(parents=True)
    clip_ids = [f"clip{i:03d}" for i in range(n_clips)]
    grades = np.arange(n_clips) % N_GRADES
    distributions, clips = [], []
    for clip_id, grade in zip(clip_ids, grades, strict=True):
        np.save(root / "frames" / f"{clip_id}.npy", clip_frames(int(grade), rng))
        # 20 votes: most on the clip's grade, the rest on its neighbours.
        counts = np.bincount(
            np.clip(grade + rng.choice([-1, 0, 0, 0, 1], size=20), 0, N_GRADES - 1),
            minlength=N_GRADES,
        )
        p = counts / counts.sum()
        distributions.append({"clip_id": clip_id, **dict(zip(PROB_COLUMNS, p, strict=True))})
        vcl = 120.0 - 25 * grade + rng.normal(0, 5)
        clips.append(
            {
                "clip_id": clip_id,
                "patient_id": f"patient{clip_id[-3:]}",
                "video": f"videos/{clip_id}.mp4",
                "fps": 15.0,
                "x": 500.0,
                "y": 400.0,
                "pixel_size_um": 0.5,
                "vcl": vcl,
                "vsl": 0.7 * vcl,
                "vap": 0.8 * vcl,
                "lin": 0.7,
                "str": 0.875,
                "wob": 0.8,
                "alh": 3.0 + grade * 0.5,
                "bcf": float("nan") if clip_id == "clip005" else 8.0,  # a missing value
                "speed": vcl,
            }
        )
    pd.DataFrame(distributions).to_csv(root / "distributions.csv", index=False)
    pd.DataFrame(clips).to_csv(root / "clips.csv", index=False)
    folds = np.arange(n_clips) % N_FOLDS
    pd.DataFrame({"clip_id": clip_ids, "fold": folds}).to_csv(root / "splits.csv", index=False)
    inner = [
        (outer, clip_id, "val" if i % 4 == 0 else "train")
        for outer in range(N_FOLDS)
        for i, clip_id in enumerate(c for c, f in zip(clip_ids, folds, strict=True) if f != outer)
    ]
    pd.DataFrame(inner, columns=["outer_fold", "clip_id", "subset"]).to_csv(
        root / "inner_splits.csv", index=False
    )
    return root


@pytest.fixture(scope="session")
def export_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_export(tmp_path_factory.mktemp("export") / "v1")


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    # The test machines share two cores between several jobs.
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _media_per_test() -> None:
    """Overrides the root conftest's fixture of that name: this code writes no Django media,
    and these tests also run without pytest-django (``-p no:django``)."""
