"""The tracker knows when it fails: on the generator's failure modes a target is followed, or
its loss is reported with a reason, never silently swapped for something else; and it follows
heads of every size from the pixel size."""

from __future__ import annotations

import numpy as np
import pytest

from annotation.ingest.scale import head_size_px
from annotation.ingest.tracking import LOSS_CODES, TrackResult, track_target
from simulator.synthetic import (
    MAGNIFICATIONS_UM_PER_PX,
    RenderedTarget,
    SyntheticConfig,
    render_target_frames,
)
from tests.annotation.ingest.videos import render_frames

FPS = 15.0


def _render(mode: str, seed: int, motility: float, pixel_size_um: float = 0.5) -> RenderedTarget:
    # A 160 x 120 µm field whatever the magnification.
    width, height = round(160 / pixel_size_um), round(120 / pixel_size_um)
    config = SyntheticConfig(
        width=width, height=height, n_frames=16, failure_mode=mode, pixel_size_um=pixel_size_um
    )
    return render_target_frames(motility=motility, morphology=0.8, config=config, seed=seed)


def _track(rendered: RenderedTarget, pixel_size_um: float = 0.5) -> TrackResult:
    start = (float(rendered.track[0, 0]), float(rendered.track[0, 1]))
    return track_target(rendered.frames, start, pixel_size_um=pixel_size_um, fps=FPS)


def _accepted_errors(result: TrackResult, truth: np.ndarray) -> np.ndarray:
    """Centre error (px) of every frame the tracker kept (the rejected last row left out)."""
    kept = len(result.centres) if result.lost_at is None else result.lost_at
    return np.linalg.norm(result.centres[:kept] - truth[:kept], axis=1)


def _followed_or_reported(result: TrackResult, truth: np.ndarray, head_length_px: float) -> None:
    """No frame the tracker kept is further than half a head from the truth (the target was
    followed until it was reported lost, if it was)."""
    assert _accepted_errors(result, truth).max() < head_length_px / 2
    if result.lost_at is not None:
        assert result.loss is not None and result.loss.code in LOSS_CODES
        assert result.loss.message


@pytest.mark.parametrize("seed", range(6))
def test_a_head_leaving_the_frame_is_reported_lost_before_its_position_leaves_the_image(
    seed: int,
) -> None:
    rendered = _render("leaves_frame", seed, motility=0.9)
    height, width = rendered.frames.shape[1:]
    x, y = rendered.track[:, 0], rendered.track[:, 1]
    outside = (x < 0) | (x > width - 1) | (y < 0) | (y > height - 1)
    assert outside.any(), "the staged target must leave the frame"
    result = _track(rendered)
    assert result.lost_at is not None and result.lost_at <= int(np.argmax(outside))
    assert result.loss is not None and result.loss.code in {"left_frame", "score_drop", "ambiguous"}
    # Every position the track holds, the rejected one too, lies inside the image.
    assert (result.centres >= 0).all()
    assert (result.centres[:, 0] <= width - 1).all() and (result.centres[:, 1] <= height - 1).all()
    _followed_or_reported(result, rendered.track, head_size_px(0.5)[0])


def test_a_head_swimming_out_is_reported_with_a_sentence_naming_the_edge() -> None:
    result = _track(_render("leaves_frame", 0, motility=0.9))
    assert result.loss is not None and result.loss.code == "left_frame"
    assert "edge of the frame" in result.loss.message


@pytest.mark.parametrize("seed", range(8))
def test_a_static_cluster_beside_the_path_is_passed_or_the_loss_is_reported(seed: int) -> None:
    rendered = _render("static_cluster", seed, motility=(0.05, 0.3, 0.5, 0.8)[seed % 4])
    _followed_or_reported(_track(rendered), rendered.track, head_size_px(0.5)[0])


@pytest.mark.parametrize("seed", range(12))
def test_a_bright_neighbour_at_frame_0_is_not_taken_for_the_target_silently(seed: int) -> None:
    rendered = _render("bright_neighbour", seed, motility=(0.05, 0.3, 0.5, 0.8)[seed % 4])
    _followed_or_reported(_track(rendered), rendered.track, head_size_px(0.5)[0])


@pytest.mark.parametrize("speed", [12.0, 16.0, 20.0])
@pytest.mark.parametrize("beside", [(0.0, 9.0), (-4.0, 9.0), (-8.0, 6.0), (3.0, 8.0)])
def test_the_frame_1_jump_to_a_still_neighbour_is_avoided_or_reported(
    speed: float, beside: tuple[float, float]
) -> None:
    # A head swimming along x at `speed` px per frame, an identical still head beside its
    # start: with no velocity yet, the old tracker jumped to the neighbour in frame 1 in 11
    # of these 12 cases without a word.
    t = np.arange(6.0)
    target = np.column_stack([40 + speed * t, np.full_like(t, 50.0)])
    still = np.tile([40.0 + beside[0], 50.0 + beside[1]], (6, 1))
    frames = np.minimum(
        render_frames(target, width=200, height=120, seed=1),
        render_frames(still, width=200, height=120, seed=2),
    )
    result = track_target(frames, (40.0, 50.0), pixel_size_um=0.5, fps=FPS)
    _followed_or_reported(result, target, head_length_px=9.2)


@pytest.mark.parametrize("pixel_size_um", MAGNIFICATIONS_UM_PER_PX)
@pytest.mark.parametrize(("seed", "motility"), [(0, 0.3), (1, 0.5), (2, 0.05)])
def test_heads_of_every_magnification_are_followed_within_a_pixel(
    pixel_size_um: float, seed: int, motility: float
) -> None:
    rendered = _render("none", seed, motility=motility, pixel_size_um=pixel_size_um)
    result = _track(rendered, pixel_size_um=pixel_size_um)
    assert result.lost_at is None, result.loss
    assert _accepted_errors(result, rendered.track).mean() < 1.0


def test_a_jump_faster_than_a_sperm_swims_is_reported_as_implausible() -> None:
    # 20 px per frame at 1 µm/px and 30 fps is 600 µm/s: twice what a sperm swims. The head
    # is drawn twice the size the pixel size expects, so the window reaches it.
    t = np.arange(5.0)
    path = np.column_stack([30 + 20 * t, np.full_like(t, 60.0)])
    frames = render_frames(path, width=200, height=120, head_px=(3.0, 2.0))
    result = track_target(
        frames, (30.0, 60.0), pixel_size_um=1.0, fps=30.0, head_length_um=9.2, head_width_um=6.0
    )
    assert result.lost_at == 1
    assert result.loss is not None and result.loss.code == "implausible_jump"
    assert "µm/s" in result.loss.message


# The three targets the benchmark's sets caught off target and unreported before the crowding
# rule (benchmarks/tracking_failures.py, seed 0): a head crossed by a swimming one at 0.25
# µm/px, and two that pass a static cluster in the shifted generator's field.
_SHIFTED = {
    "background_level": 120.0, "noise_sd": 7.0, "blur": 0.9, "n_distractors": 8,
    "n_debris": 10, "motility_beta": (3.0, 1.0),
}  # fmt: skip


@pytest.mark.parametrize(
    ("pixel_size_um", "mode", "field", "seed", "motility", "morphology"),
    [
        (0.25, "none", {}, 10, 0.5914, 0.4651),
        (0.5, "static_cluster", _SHIFTED, 4, 0.8004, 0.4479),
        (0.5, "static_cluster", _SHIFTED, 10, 0.9960, 0.9280),
    ],
)
def test_a_head_crossed_by_another_or_passing_a_cluster_is_followed_or_reported(
    pixel_size_um: float,
    mode: str,
    field: dict[str, object],
    seed: int,
    motility: float,
    morphology: float,
) -> None:
    config = SyntheticConfig(
        width=round(320 / pixel_size_um), height=round(240 / pixel_size_um), n_frames=16,
        fps=FPS, pixel_size_um=pixel_size_um, failure_mode=mode, **field,  # type: ignore[arg-type]
    )  # fmt: skip
    rendered = render_target_frames(
        motility=motility, morphology=morphology, config=config, seed=seed
    )
    result = _track(rendered, pixel_size_um)
    _followed_or_reported(result, rendered.track, head_size_px(pixel_size_um)[0])
