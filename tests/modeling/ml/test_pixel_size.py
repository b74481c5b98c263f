"""The clip's pixel size reaches the morphometry of training and inference (issue 18): the
export's ``pixel_size_um`` scales each clip's head, a clip without one is measured at the
default and reported, a model records the pixel sizes it was trained on, and a clip far
outside them is flagged."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from annotation.grades import PROB_COLUMNS
from annotation.ingest.scale import DEFAULT_PIXEL_SIZE_UM, tracking_scale
from annotation.ingest.tracking import crop_centred
from modeling.ml.data import ExportDataset
from modeling.ml.model import build_model
from modeling.ml.morphometry import (
    MORPHOMETRY_FEATURES,
    MORPHOMETRY_INPUTS,
    PIXEL_SIZE_TOLERANCE,
    clips_morphometry,
    pixel_size_outside,
    pixel_size_summary,
)
from modeling.ml.train import TrainConfig, load_model, predict, save_model
from simulator.synthetic import SyntheticConfig, render_target_frames

FIELD_UM = (160.0, 120.0)
N_FRAMES = 16


def _clip_at(pixel_size_um: float, *, seed: int = 3) -> np.ndarray:
    """The tracked crop (T, S, S) uint8 of one simulated sperm, imaged at ``pixel_size_um``:
    the same cell (its head drawn from the same latents and seed) in the same field of
    view, so its head covers 1 / pixel_size_um² as many pixels. The crop's side follows the
    pixel size, as ingestion's does (150 px at 0.5 µm/px)."""
    config = SyntheticConfig(
        width=round(FIELD_UM[0] / pixel_size_um),
        height=round(FIELD_UM[1] / pixel_size_um),
        n_frames=N_FRAMES,
        pixel_size_um=pixel_size_um,
        n_distractors=0,
        n_debris=0,
    )
    rendered = render_target_frames(motility=0.1, morphology=0.3, config=config, seed=seed)
    size = tracking_scale(pixel_size_um).crop_size
    return np.stack(
        [
            crop_centred(f, tuple(c), size)
            for f, c in zip(rendered.frames, rendered.track, strict=True)
        ]
    )


def _export(root: Path, clips: dict[str, tuple[np.ndarray, float | None]]) -> Path:
    """An export folder with ``clips`` (clip id -> frames, pixel size or None: an empty
    cell); every clip in fold 0's test set and the others' training sets."""
    (root / "frames").mkdir(parents=True)
    rows, distributions = [], []
    for clip_id, (frames, pixel_size) in clips.items():
        np.save(root / "frames" / f"{clip_id}.npy", frames)
        rows.append(
            {"clip_id": clip_id, "patient_id": f"p-{clip_id}", "video": f"videos/{clip_id}.mp4",
             "fps": 15.0, "x": 10.0, "y": 10.0, "pixel_size_um": pixel_size,
             **{k: 1.0 for k in TrainConfig().kinematics_features}}
        )  # fmt: skip
        p = dict.fromkeys(PROB_COLUMNS, 0.2)
        distributions.append({"clip_id": clip_id, **p})
    pd.DataFrame(rows).to_csv(root / "clips.csv", index=False)
    pd.DataFrame(distributions).to_csv(root / "distributions.csv", index=False)
    return root


@pytest.fixture(scope="module")
def two_magnifications() -> dict[str, np.ndarray]:
    return {"x1": _clip_at(0.5), "x2": _clip_at(0.25)}


def _feature(dataset: ExportDataset, clip_id: str, name: str) -> float:
    assert dataset.morphometry is not None
    return float(
        dataset.morphometry[dataset.clip_ids.index(clip_id)][MORPHOMETRY_FEATURES.index(name)]
    )


def test_a_clip_at_twice_the_magnification_gets_the_same_micrometres(
    two_magnifications: dict[str, np.ndarray], tmp_path: Path
) -> None:
    x1, x2 = two_magnifications["x1"], two_magnifications["x2"]
    assert x2.shape[1] == 2 * x1.shape[1]  # 300 px crops at 0.25 µm/px, 150 at 0.5
    root = _export(tmp_path / "v", {"x1": (x1, 0.5), "x2": (x2, 0.25)})
    dataset = ExportDataset(root, frames=N_FRAMES, morphometry=True)
    np.testing.assert_array_equal(dataset.pixel_sizes, [0.5, 0.25])
    assert dataset.pixel_size_defaulted == []
    for name, rel in (("length", 0.08), ("width", 0.1), ("area", 0.15), ("ellipticity", 0.1)):
        a, b = _feature(dataset, "x1", name), _feature(dataset, "x2", name)
        assert a > 0 and b == pytest.approx(a, rel=rel), (name, a, b)
    # The measures are µm: a 4.6 x 3.0 µm head about, not its size in pixels.
    assert 3.0 < _feature(dataset, "x2", "length") < 7.0


def test_a_clip_without_a_pixel_size_is_measured_at_the_default_and_reported(
    two_magnifications: dict[str, np.ndarray], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clips = {"x1": (two_magnifications["x1"], 0.5), "x2": (two_magnifications["x2"], None)}
    root = _export(tmp_path / "v", clips)
    with caplog.at_level(logging.WARNING, logger="modeling.ml.data"):
        dataset = ExportDataset(root, frames=N_FRAMES, morphometry=True)
    assert dataset.pixel_size_defaulted == ["x2"]
    assert dataset.pixel_sizes[1] == DEFAULT_PIXEL_SIZE_UM
    assert "1 of 2 clip(s)" in caplog.text and "no pixel_size_um" in caplog.text
    assert "x2" in caplog.text
    summary = dataset.pixel_size_summary()
    assert summary["n_defaulted"] == 1 and summary["n_clips"] == 2
    # Measured at the wrong scale, the 2x head looks about twice as long: the pixel size is
    # what made the measures agree above.
    assert _feature(dataset, "x2", "length") > 1.6 * _feature(dataset, "x1", "length")


def test_an_export_without_the_pixel_size_column_defaults_every_clip(
    two_magnifications: dict[str, np.ndarray], tmp_path: Path
) -> None:
    root = _export(tmp_path / "v", {"x1": (two_magnifications["x1"], 0.5)})
    pd.read_csv(root / "clips.csv").drop(columns="pixel_size_um").to_csv(
        root / "clips.csv", index=False
    )
    dataset = ExportDataset(root, frames=N_FRAMES)
    assert dataset.pixel_size_defaulted == ["x1"]


@pytest.mark.parametrize("bad", ["-0.5", "0", "abc"])
def test_a_pixel_size_that_is_no_positive_number_is_refused_naming_the_clip(
    two_magnifications: dict[str, np.ndarray], tmp_path: Path, bad: str
) -> None:
    root = _export(tmp_path / "v", {"x1": (two_magnifications["x1"], 0.5)})
    table = pd.read_csv(root / "clips.csv", dtype={"pixel_size_um": str})
    table["pixel_size_um"] = bad
    table.to_csv(root / "clips.csv", index=False)
    with pytest.raises(ValueError, match=r"pixel_size_um must be a positive number.*clip x1"):
        ExportDataset(root, frames=N_FRAMES)


def test_predict_measures_the_morphometry_at_each_clips_pixel_size(
    two_magnifications: dict[str, np.ndarray],
) -> None:
    k = len(MORPHOMETRY_INPUTS)
    model = build_model(
        backbone="resnet", n_kinematics_features=8,
        morphometry_shift=[0.0] * k, morphometry_scale=[1.0] * k,
    ).eval()  # fmt: skip
    torch.manual_seed(0)
    with torch.no_grad():  # a head that reads the morphometry strongly
        for layer in model.head:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.normal_(0, 1.0)
    frames = two_magnifications["x2"][None]  # (1, T, 300, 300)
    kinematics = np.ones((1, 8), np.float32)
    at_own = predict(model, frames, kinematics, pixel_size_um=0.25)
    at_default = predict(model, frames, kinematics)
    x = torch.from_numpy(frames).float().div(255).unsqueeze(2)
    measured = torch.from_numpy(clips_morphometry(x[:, :, 0].numpy(), pixel_size_um=[0.25]))
    with torch.no_grad():
        expected = model(x, torch.from_numpy(kinematics), measured).double().numpy()
    np.testing.assert_allclose(at_own, expected, atol=1e-6)
    assert np.abs(at_own - at_default).max() > 1e-3  # the pixel size changed the inputs


def test_a_model_file_keeps_the_pixel_sizes_it_was_trained_on(tmp_path: Path) -> None:
    model = build_model(backbone="resnet", n_kinematics_features=8)
    model.trained_pixel_sizes = pixel_size_summary([0.5, 0.25, 0.3], n_defaulted=1)
    save_model(tmp_path / "model.pt", model, config=TrainConfig())
    loaded, _ = load_model(tmp_path / "model.pt")
    assert loaded.trained_pixel_sizes == {
        "min_um": 0.25, "max_um": 0.5, "median_um": 0.3, "n_clips": 3, "n_defaulted": 1,
        "default_um": DEFAULT_PIXEL_SIZE_UM,
    }  # fmt: skip


def test_a_pixel_size_far_outside_the_training_range_is_flagged() -> None:
    trained = pixel_size_summary([0.4, 0.5], n_defaulted=0)
    assert pixel_size_outside(trained, 0.45) is None
    assert pixel_size_outside(trained, 0.4 / PIXEL_SIZE_TOLERANCE * 1.01) is None  # near
    assert pixel_size_outside(trained, 0.5 * PIXEL_SIZE_TOLERANCE * 0.99) is None
    low = pixel_size_outside(trained, 0.2)
    assert low is not None and "0.2 µm/px" in low and "0.4-0.5" in low and "larger" in low
    high = pixel_size_outside(trained, 1.0)
    assert high is not None and "smaller" in high
    assert pixel_size_outside(None, 5.0) is None  # a model saved before it recorded them
    with pytest.raises(ValueError, match="no pixel sizes"):
        pixel_size_summary([], n_defaulted=0)
