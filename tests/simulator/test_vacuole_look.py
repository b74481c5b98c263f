"""The generator's vacuole look is a config knob (size range, grey value, count, edge
softness): its default draws exactly what it drew before, and the shifted configuration of
the training benchmark has a look of its own (issue 18)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from benchmarks.training import SHIFTED, SHIFTED_VACUOLES
from simulator.head_crops import write_head_dir
from simulator.synthetic import (
    HEAD_CORE_VALUE,
    VACUOLE_EDGE_STEPS,
    VACUOLE_VALUE,
    SyntheticConfig,
    cell_sample,
    cell_shapes,
    generate_dataset,
    render_target_frames,
    shapes_stamp,
)

# Digests of what the generator drew before the vacuole look became a knob (commit b030c28,
# OpenCV 4 and numpy of this project's lock file): clips 0 and 1 have 4 and 3 vacuoles.
# Another OpenCV may draw other bytes; then regenerate them from that commit.
BEFORE = {
    0: "afabc007542b826f027e624f102c2e82a64507d32af444a2b271a4746508b0c6",
    1: "75f279c33c9098c158f021760fe2785bbee5235da90ebc542c5d8e5dfe515fea",
}
BEFORE_HEADS = "e7d47bf48d080b98ba4d2ba7ce8b03840f5d56cc139aeacda20422936ed01efc"
BEFORE_PANEL = "223b410d777ec55676ecc75b137c64364c3dbfcd5faa89829e7850abe66b5b6d"
RENDER = SyntheticConfig(width=320, height=240, n_frames=16)
MORPHOLOGY = {0: 0.1, 1: 0.3}


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("seed", sorted(BEFORE))
def test_the_default_vacuole_look_draws_what_the_generator_drew_before(seed: int) -> None:
    rendered = render_target_frames(
        motility=0.5, morphology=MORPHOLOGY[seed], config=RENDER, seed=seed
    )
    assert rendered.cell.n_vacuoles > 0
    assert _digest(rendered.frames.tobytes()) == BEFORE[seed]


def test_the_default_head_crops_and_dataset_files_are_what_they_were(tmp_path: Path) -> None:
    write_head_dir(tmp_path / "heads", n=20, seed=1)
    assert _digest((tmp_path / "heads" / "heads.npy").read_bytes()) == BEFORE_HEADS
    generate_dataset(
        tmp_path / "ds", SyntheticConfig(n_clips=3, width=320, height=240, n_frames=4, seed=5)
    )
    panel = (tmp_path / "ds" / "truth_panel.json").read_bytes()
    assert _digest(panel) == BEFORE_PANEL
    assert "vacuole_value" not in json.loads(panel)["config"]  # no new knob at its default


def test_a_vacuole_look_away_from_the_default_is_recorded_with_the_dataset(
    tmp_path: Path,
) -> None:
    config = SyntheticConfig(
        n_clips=2, width=320, height=240, n_frames=2, vacuole_value=-50.0, vacuole_max=6
    )
    generate_dataset(tmp_path, config)
    recorded = json.loads((tmp_path / "truth_panel.json").read_text())["config"]
    assert recorded["vacuole_value"] == -50.0 and recorded["vacuole_max"] == 6
    assert "vacuole_softness_um" not in recorded  # still at its default


def _poor_cells(config: SyntheticConfig, n: int = 60) -> list:
    rng = np.random.default_rng(4)
    return [cell_sample(motility=0.5, morphology=0.1, config=config, rng=rng) for _ in range(n)]


def test_the_count_and_size_of_vacuoles_follow_the_config() -> None:
    default = _poor_cells(SyntheticConfig())
    radii = np.concatenate([c.vacuoles_um[:, 2] for c in default if c.n_vacuoles])
    assert radii.min() >= 0.3 and radii.max() <= 0.6
    assert max(c.n_vacuoles for c in default) <= 4
    many = _poor_cells(
        SyntheticConfig(vacuole_rate=(8.0, 0.0), vacuole_max=6, vacuole_radius_um=(0.7, 0.8))
    )
    assert max(c.n_vacuoles for c in many) == 6 and np.mean([c.n_vacuoles for c in many]) > 5
    radii = np.concatenate([c.vacuoles_um[:, 2] for c in many])
    assert radii.min() >= 0.7 and radii.max() <= 0.8
    none = _poor_cells(SyntheticConfig(vacuole_max=0))
    assert sum(c.n_vacuoles for c in none) == 0


PX_PER_UM = 8.0  # drawn large, so the edge's ramp spans several pixels


def _drawn_vacuole(config: SyntheticConfig, radius_um: float = 0.35) -> np.ndarray:
    """A still normal head (its core 1.2 x 0.8 µm) drawn at ``PX_PER_UM`` without noise or
    blur, with one vacuole of ``radius_um`` at its centre, the crop's centre."""
    rng = np.random.default_rng(0)
    cell = cell_sample(motility=0.05, morphology=0.9, config=config, rng=rng)
    cell = replace(cell, vacuoles_um=np.array([[0.0, 0.0, radius_um]]), contrast=1.0)
    size = 81
    frame = np.full((size, size), 150, np.int16)
    centre = np.array([size // 2, size // 2], float)
    shapes = cell_shapes(cell, centre=centre, angle=0.0, phase=0.0, px_per_um=PX_PER_UM)
    shapes_stamp(frame, shapes, blur=0)
    return frame


def _radial_profile(frame: np.ndarray, out_to_um: float = 0.7) -> np.ndarray:
    """The frame's mean value in rings 1 px wide around the centre, out to ``out_to_um``."""
    yy, xx = np.mgrid[: frame.shape[0], : frame.shape[1]]
    c = frame.shape[0] // 2
    d = np.hypot(yy - c, xx - c)
    return np.array(
        [frame[(d >= a) & (d < a + 1)].mean() for a in range(round(out_to_um * PX_PER_UM))]
    )


def test_a_paler_or_darker_vacuole_has_the_configured_value() -> None:
    pale = _drawn_vacuole(SyntheticConfig())
    dark = _drawn_vacuole(SyntheticConfig(vacuole_value=-55.0))
    c = pale.shape[0] // 2
    assert pale[c, c] == 150 + VACUOLE_VALUE
    assert dark[c, c] == 150 - 55
    assert pale[c, c + 6] == dark[c, c + 6] == 150 + HEAD_CORE_VALUE  # the core around it


def test_a_soft_vacuole_edge_ramps_from_the_head_core_to_the_vacuole() -> None:
    sharp = _radial_profile(_drawn_vacuole(SyntheticConfig()))
    soft = _radial_profile(_drawn_vacuole(SyntheticConfig(vacuole_softness_um=0.3)))
    core, vacuole = 150 + HEAD_CORE_VALUE, 150 + VACUOLE_VALUE
    assert sharp[0] == soft[0] == vacuole and sharp[-1] == soft[-1] == core

    def ramp(levels: np.ndarray) -> int:  # rings between the core's and the vacuole's value
        return int(((levels > core + 2) & (levels < vacuole - 2)).sum())

    # The sharp disc steps from one value to the other across the two rings its edge's
    # partial pixels straddle; the soft one over its 0.3 µm (2.4 px) ramp, paler towards the
    # centre all the way.
    assert ramp(sharp) <= 2
    assert ramp(soft) >= 3 and VACUOLE_EDGE_STEPS >= 3
    assert np.all(np.diff(soft) <= 0)


def test_the_shifted_benchmark_configuration_changes_every_part_of_the_vacuole_look() -> None:
    default = SyntheticConfig()
    assert set(SHIFTED_VACUOLES) == {
        "vacuole_radius_um", "vacuole_value", "vacuole_rate", "vacuole_max",
        "vacuole_softness_um",
    }  # fmt: skip
    for name, value in SHIFTED_VACUOLES.items():
        assert SHIFTED[name] == value and getattr(default, name) != value, name
    shifted = SyntheticConfig(**SHIFTED)  # type: ignore[arg-type]
    frames = render_target_frames(
        motility=0.5,
        morphology=0.1,
        config=replace(shifted, width=320, height=240, n_frames=4),
        seed=0,
    )
    assert frames.cell.vacuole_value == -55.0 and frames.cell.vacuole_softness_um == 0.3


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"vacuole_radius_um": (0.6, 0.3)}, "vacuole_radius_um"),
        ({"vacuole_radius_um": (0.0, 0.3)}, "vacuole_radius_um"),
        ({"vacuole_rate": (-1.0, 2.5)}, "must not be negative"),
        ({"vacuole_softness_um": -0.1}, "must not be negative"),
        ({"vacuole_value": 300.0}, "vacuole_value"),
    ],
)
def test_an_impossible_vacuole_look_is_refused_by_name(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SyntheticConfig(**changes)
