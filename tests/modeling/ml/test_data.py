"""Reading an export, augmenting clips, fair sampling and fold splits (modeling.ml.data)."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from annotation.grades import PROB_COLUMNS
from modeling.ml.data import (
    Augment,
    ExportDataset,
    fair_sampler,
    list_folds,
    read_fold,
    shuffle_sampler,
)
from modeling.ml.model import DEFAULT_KINEMATICS_FEATURES


def test_items_hold_frames_kinematics_and_the_grade_distribution(export_root: Path) -> None:
    dataset = ExportDataset(export_root, clip_ids=["clip003", "clip005"], frames=8)
    item = dataset[0]

    assert item["clip_id"] == "clip003"
    assert item["frames"].shape == (8, 1, 150, 150) and item["frames"].dtype == torch.float32
    assert item["frames"].min() >= 0.0 and item["frames"].max() <= 1.0
    table = pd.read_csv(export_root / "distributions.csv").set_index("clip_id")
    np.testing.assert_allclose(
        item["target"].numpy(), table.loc["clip003", list(PROB_COLUMNS)], rtol=1e-6
    )
    clips = pd.read_csv(export_root / "clips.csv").set_index("clip_id")
    np.testing.assert_allclose(
        item["kinematics"].numpy(),
        clips.loc["clip003", list(DEFAULT_KINEMATICS_FEATURES)],
        rtol=1e-6,
    )
    assert dataset[1]["kinematics"][DEFAULT_KINEMATICS_FEATURES.index("bcf")] == 0.0  # missing -> 0
    assert dataset.modes.tolist() == [3, 0]  # grade modes D and A


def test_the_same_seed_epoch_and_clip_give_the_same_augmentation(export_root: Path) -> None:
    dataset = ExportDataset(export_root, clip_ids=["clip001", "clip002"], augment=Augment(), seed=3)
    first = dataset[0]["frames"]
    assert torch.equal(first, dataset[0]["frames"])
    assert not torch.equal(first, dataset.load_frames(0))
    dataset.set_epoch(1)
    assert not torch.equal(first, dataset[0]["frames"])
    dataset.set_epoch(0)
    assert torch.equal(first, dataset[0]["frames"])


def test_a_rotation_turns_about_the_crop_centre_and_treats_all_frames_alike() -> None:
    frames = torch.zeros(3, 1, 41, 41)
    frames[:, :, 18:23, 10:31] = 1.0  # a horizontal bar through the centre, in every frame
    rotate_only = Augment(flip=False, translate_px=0.0, brightness=0.0, contrast=0.0, gamma=0.0)

    out = rotate_only(frames, generator=torch.Generator().manual_seed(5))

    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
    assert out[0, 0, 20, 20] > 0.9  # the centre stays where it was
    ys, xs = torch.nonzero(out[0, 0] > 0.5, as_tuple=True)
    assert abs(ys.float().mean().item() - 20) < 1.0 and abs(xs.float().mean().item() - 20) < 1.0
    assert not torch.allclose(out, frames, atol=0.1)  # but the bar turned


def test_intensity_jitter_keeps_values_in_range() -> None:
    frames = torch.rand(2, 1, 20, 20)
    strong = Augment(brightness=0.9, contrast=0.9, gamma=1.0)
    out = strong(frames, generator=torch.Generator().manual_seed(0))
    assert out.min() >= 0.0 and out.max() <= 1.0 and out.shape == frames.shape


def test_fair_sampling_draws_every_grade_mode_class_equally_often() -> None:
    modes = np.array([1] * 90 + [2] * 9 + [4] * 1)
    sampler = fair_sampler(modes, seed=0)
    drawn: Counter[int] = Counter()
    for epoch in range(30):
        sampler.set_epoch(epoch)
        drawn.update(int(modes[i]) for i in sampler)
    assert len(sampler) == 100
    shares = np.array([drawn[c] for c in (1, 2, 4)]) / 3000
    np.testing.assert_allclose(shares, 1 / 3, atol=0.04)


def test_sampler_orders_depend_only_on_seed_and_epoch() -> None:
    a, b = shuffle_sampler(50, seed=1), shuffle_sampler(50, seed=1)
    assert list(a) == list(b) and sorted(a) == list(range(50))
    a.set_epoch(1)
    assert list(a) != list(b)
    assert list(fair_sampler([0, 1, 1], seed=2)) == list(fair_sampler([0, 1, 1], seed=2))


def test_fold_splits_keep_the_test_fold_apart(export_root: Path) -> None:
    assert list_folds(export_root) == [0, 1, 2]
    split = read_fold(export_root, 1)
    assert len(split.test) == 8 and len(split.train) + len(split.val) == 16
    assert not set(split.test) & (set(split.train) | set(split.val))


def test_an_inner_split_that_leaks_the_test_fold_is_refused(
    export_root: Path, tmp_path: Path
) -> None:
    root = shutil.copytree(export_root, tmp_path / "leaky")
    inner = pd.read_csv(root / "inner_splits.csv")
    test_clip = read_fold(root, 0).test[0]
    inner.loc[len(inner)] = [0, test_clip, "val"]
    inner.to_csv(root / "inner_splits.csv", index=False)
    with pytest.raises(ValueError, match="overlap"):
        read_fold(root, 0)


def test_missing_or_short_frame_files_are_named(export_root: Path, tmp_path: Path) -> None:
    root = shutil.copytree(export_root, tmp_path / "broken")
    (root / "frames" / "clip004.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"clip004\.npy"):
        ExportDataset(root)
    np.save(root / "frames" / "clip004.npy", np.zeros((5, 150, 150), dtype=np.uint8))
    with pytest.raises(ValueError, match="T >= 16"):
        ExportDataset(root, clip_ids=["clip004"])[0]
    with pytest.raises(ValueError, match="lack a distribution"):
        ExportDataset(root, clip_ids=["clip999"])
