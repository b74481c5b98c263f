"""The template tracker on synthetic heads with known paths, and the crop around it."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from annotation.ingest.tracking import (
    CROP_FILL,
    LOSS_THRESHOLD,
    HeadTracker,
    crop_centred,
    track_target,
)
from tests.annotation.ingest.videos import render_frames

Frames = Callable[..., tuple[np.ndarray, np.ndarray]]


def _errors(centres: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return np.linalg.norm(centres - truth[: len(centres)], axis=1)


@pytest.mark.parametrize("kind", ["straight", "circle", "zigzag", "still"])
def test_the_head_is_followed_within_half_a_pixel(synthetic_frames: Frames, kind: str) -> None:
    frames, truth = synthetic_frames(kind)
    result = track_target(frames, tuple(truth[0]))
    assert result.lost_at is None
    assert result.centres.shape == (16, 2)
    assert _errors(result.centres, truth).max() < 0.5
    assert result.scores[0] == 1.0 and result.scores.min() > 0.6


def test_a_click_beside_the_head_is_pulled_onto_it(synthetic_frames: Frames) -> None:
    frames, truth = synthetic_frames("straight")
    click = (truth[0, 0] + 2.0, truth[0, 1] - 1.5)
    recentred = track_target(frames, click)
    kept = track_target(frames, click, recentre=False)
    assert _errors(recentred.centres, truth).max() < 0.5
    # Without re-centring the whole track keeps the click's offset.
    assert _errors(kept.centres, truth).min() > 1.5


def test_a_click_close_to_the_head_s_centre_is_kept_as_it_is(synthetic_frames: Frames) -> None:
    # Within the guard distance the click is trusted: matching is more precise than a centroid.
    frames, truth = synthetic_frames("straight")
    click = (truth[0, 0] + 0.6, truth[0, 1])
    result = track_target(frames, click)
    assert tuple(result.centres[0]) == click


def test_a_long_track_of_a_still_head_does_not_drift(synthetic_frames: Frames) -> None:
    frames, truth = synthetic_frames("still", n_frames=60)
    result = track_target(frames, tuple(truth[0]))
    assert _errors(result.centres, truth).max() < 0.5


def test_a_turning_head_is_followed(synthetic_frames: Frames) -> None:
    # A long head turning 15° per frame, 225° in all: a template that could not turn loses
    # it by frame 6.
    frames, truth = synthetic_frames("circle", turn_deg_per_frame=15.0, head_px=(4.0, 1.5))
    result = track_target(frames, tuple(truth[0]))
    assert result.lost_at is None
    assert _errors(result.centres, truth).max() < 1.0
    assert result.scores.min() > 0.7


def test_a_bright_head_on_a_dark_halo_is_followed_too(synthetic_frames: Frames) -> None:
    frames, truth = synthetic_frames("zigzag", polarity=-1.0)
    click = (truth[0, 0] - 2.5, truth[0, 1])
    result = track_target(frames, click)
    assert _errors(result.centres, truth).max() < 0.5


def test_a_tracker_fed_frame_by_frame_stays_lost_once_lost(synthetic_frames: Frames) -> None:
    visible = np.arange(8) != 3
    frames, truth = synthetic_frames("straight", n_frames=8, visible=visible)
    tracker = HeadTracker(frames[0], tuple(truth[0]))
    steps = [tracker.update(frame) for frame in frames[1:]]
    assert steps == [True, True, False, False, False, False, False]
    assert tracker.lost_at == 3 and len(tracker.result().centres) == 4


def test_a_head_that_vanishes_is_lost_at_that_frame(synthetic_frames: Frames) -> None:
    visible = np.arange(16) < 9
    frames, truth = synthetic_frames("straight", visible=visible)
    result = track_target(frames, tuple(truth[0]))
    assert result.lost_at == 9
    assert len(result.centres) == 10 and result.scores[9] < 0.4


def test_a_head_that_jumps_out_of_the_search_window_is_lost(synthetic_frames: Frames) -> None:
    # The zig-zag reverses every frame: 8 px off the prediction, beyond a 2 px window.
    frames, truth = synthetic_frames("zigzag")
    result = track_target(frames, tuple(truth[0]), search_radius=2)
    assert result.lost_at is not None and result.lost_at <= 2


def test_a_head_that_keeps_outrunning_the_window_edge_is_lost() -> None:
    # Speeding up (4, 6, 8 px per frame) against a 3 px window: the best match sits on the
    # window's edge in frames 1 and 2 while it still looks like the head (a good score), so
    # the edge rule, not the score, stops the track.
    t = np.arange(10.0)
    truth = np.column_stack([20 + 3 * t + t**2, np.full_like(t, 50.0)])
    frames = render_frames(truth, width=300, height=100)
    result = track_target(frames, tuple(truth[0]), search_radius=3)
    assert result.lost_at == 2
    assert result.scores[2] > LOSS_THRESHOLD


def test_a_flat_first_frame_has_nothing_to_follow() -> None:
    frames = np.full((4, 40, 40), 120, dtype=np.uint8)
    result = track_target(frames, (20.0, 20.0))
    assert result.lost_at == 0 and result.scores.tolist() == [0.0]


def test_an_unreadable_frame_ends_the_track_without_an_exception(synthetic_frames: Frames) -> None:
    frames, truth = synthetic_frames("straight", n_frames=4)
    broken = [frames[0], frames[1], np.zeros((0, 0), dtype=np.uint8), frames[3]]
    result = track_target(broken, tuple(truth[0]))
    assert result.lost_at == 2 and result.scores[2] == 0.0


def test_an_even_template_size_is_refused(synthetic_frames: Frames) -> None:
    frames, truth = synthetic_frames("still", n_frames=2)
    with pytest.raises(ValueError, match="odd"):
        track_target(frames, tuple(truth[0]), template_size=20)


def test_a_crop_inside_the_frame_is_the_frame_s_own_pixels() -> None:
    frame = np.arange(100 * 80, dtype=np.uint32).reshape(80, 100).astype(np.uint8)
    crop = crop_centred(frame, (50.4, 40.6), 10)
    # Centre pixel (x 50, y 41) sits at index size // 2 = 5 of each axis.
    assert np.array_equal(crop, frame[36:46, 45:55])
    assert crop[5, 5] == frame[41, 50]


def test_a_crop_leaving_the_frame_is_filled_with_a_constant_and_keeps_the_centre() -> None:
    frame = np.full((20, 30), 120, dtype=np.uint8)
    frame[18, 1] = 7  # the target pixel, near the bottom-left corner
    crop = crop_centred(frame, (1.0, 18.0), 6)
    assert crop.shape == (6, 6)
    assert crop[3, 3] == 7  # the target stays at index size // 2
    # Columns -2 and -1 and row 20 lie outside the frame: the constant fill, not border pixels.
    assert (crop[:, :2] == CROP_FILL).all() and (crop[-1] == CROP_FILL).all()
    assert np.array_equal(crop[:5, 2:], frame[15:20, 0:4])
    grey = crop_centred(frame, (1.0, 18.0), 6, fill=200)
    assert (grey[:, :2] == 200).all() and grey[3, 3] == 7


def test_a_crop_wholly_outside_the_frame_is_all_fill() -> None:
    frame = np.full((20, 30), 120, dtype=np.uint8)
    assert (crop_centred(frame, (100.0, 100.0), 8) == CROP_FILL).all()


def test_a_head_that_turns_a_right_angle_between_two_frames_is_not_lost(
    synthetic_frames: Frames,
) -> None:
    # Small turns per frame cannot follow a 90° turn; the wide retry finds the head again.
    frames, truth = synthetic_frames("straight", n_frames=8, head_px=(4.0, 1.5))
    turned, _ = synthetic_frames("straight", n_frames=8, head_px=(1.5, 4.0))
    frames = np.concatenate([frames[:4], turned[4:]])
    result = track_target(frames, tuple(truth[0]))
    assert result.lost_at is None
    assert _errors(result.centres, truth).max() < 1.0
