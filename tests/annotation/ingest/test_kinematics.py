"""Kinematics against tracks whose WHO measures can be worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from annotation.ingest.kinematics import KINEMATICS_KEYS, average_path, kinematics


def test_a_straight_line_at_constant_speed_is_its_own_average_path() -> None:
    # 11 positions 2 px apart along (3, 4) / 5, 10 fps: 1 s, 20 px, 0.5 µm/px -> 10 µm/s.
    track = np.arange(11)[:, None] * np.array([1.2, 1.6])
    k = kinematics(track, fps=10, pixel_size_um=0.5)
    assert k.vcl == pytest.approx(10.0)
    assert k.vsl == pytest.approx(10.0)
    assert k.vap == pytest.approx(10.0)
    assert (k.lin, k.straightness, k.wob) == pytest.approx((1.0, 1.0, 1.0))
    assert k.alh == pytest.approx(0.0, abs=1e-9)
    assert k.bcf == 0.0
    assert k.speed == k.vcl


def test_a_full_circle_has_no_straight_line_velocity() -> None:
    # 24 chords of a 10 px circle, 24 fps: 1 s for 24 * 2 r sin(pi / 24) px.
    angles = np.linspace(0, 2 * math.pi, 25)
    track = 10 * np.column_stack([np.cos(angles), np.sin(angles)])
    k = kinematics(track, fps=24, pixel_size_um=1.0)
    assert k.vcl == pytest.approx(24 * 2 * 10 * math.sin(math.pi / 24))
    assert k.vsl == pytest.approx(0.0, abs=1e-9)
    assert k.lin == pytest.approx(0.0, abs=1e-9)
    # The moving average cuts the corners: a shorter path, always on the inside.
    assert 0 < k.vap < k.vcl
    assert k.bcf == 0.0


def test_a_zig_zag_has_the_hand_computed_measures() -> None:
    # (0,0) (1,1) (2,0) ... (8,0): 9 positions at 8 fps = 1 s, 2 µm per px, window 3.
    x = np.arange(9.0)
    track = np.column_stack([x, x % 2])
    k = kinematics(track, fps=8, pixel_size_um=2.0, smoothing_window=3)
    # The average path is (i, 1/3) for odd i, (i, 2/3) for even inner i: steps of (1, ±1/3).
    expected_average = np.column_stack([x, [0, 1 / 3, 2 / 3, 1 / 3, 2 / 3, 1 / 3, 2 / 3, 1 / 3, 0]])
    np.testing.assert_allclose(average_path(track, smoothing_window=3), expected_average)
    assert k.vcl == pytest.approx(2 * 8 * math.sqrt(2))
    assert k.vsl == pytest.approx(2 * 8)
    assert k.vap == pytest.approx(2 * 8 * math.sqrt(10) / 3)
    assert k.lin == pytest.approx(1 / math.sqrt(2))
    assert k.wob == pytest.approx(math.sqrt(10) / 3 / math.sqrt(2))
    # Largest offset 2/3 px: peak to peak 4/3 px = 8/3 µm.
    assert k.alh == pytest.approx(8 / 3)
    # Frames 1..7 alternate sides (the ends lie on the path): 6 crossings in 1 s.
    assert k.bcf == pytest.approx(6.0)


def test_the_default_window_of_five_smooths_more_than_three() -> None:
    x = np.arange(9.0)
    track = np.column_stack([x, x % 2])
    wide = kinematics(track, fps=8, pixel_size_um=1.0)
    narrow = kinematics(track, fps=8, pixel_size_um=1.0, smoothing_window=3)
    assert wide.vap < narrow.vap
    assert wide.bcf == pytest.approx(6.0)


def test_a_stationary_head_has_all_measures_zero_without_dividing_by_zero() -> None:
    track = np.full((16, 2), 75.0)
    with np.errstate(all="raise"):
        k = kinematics(track, fps=15, pixel_size_um=0.5)
    assert all(value == 0.0 for value in k.as_dict().values())


def test_a_two_point_track_moves_in_a_straight_line() -> None:
    k = kinematics(np.array([[0.0, 0.0], [3.0, 4.0]]), fps=10, pixel_size_um=0.5)
    assert (k.vcl, k.vsl, k.vap) == pytest.approx((25.0, 25.0, 25.0))
    assert (k.lin, k.straightness, k.wob, k.alh, k.bcf) == pytest.approx((1.0, 1.0, 1.0, 0.0, 0.0))


def test_a_single_position_has_no_motion() -> None:
    assert kinematics(np.array([[5.0, 5.0]]), fps=15, pixel_size_um=1.0).vcl == 0.0


def test_passing_through_the_average_path_counts_as_one_crossing() -> None:
    # y repeats 1, 0, -1: every inner 3-window averages to y = 0, so the inner offsets are
    # 0, -1, 1, 0, -1, 1; the frames on the path have no side: - + - + is 3 crossings.
    x = np.arange(8.0)
    track = np.column_stack([x, [1, 0, -1, 1, 0, -1, 1, 0]])
    assert np.allclose(average_path(track, smoothing_window=3)[1:7, 1], 0.0)
    k = kinematics(track, fps=7, pixel_size_um=1.0, smoothing_window=3)
    assert k.bcf == pytest.approx(3.0)


def test_a_window_of_one_makes_the_track_its_own_average_path() -> None:
    x = np.arange(5.0)
    track = np.column_stack([x, x % 2])
    k = kinematics(track, fps=4, pixel_size_um=1.0, smoothing_window=1)
    assert k.vap == k.vcl
    assert k.alh == 0.0 and k.bcf == 0.0


def test_as_dict_uses_the_who_names() -> None:
    k = kinematics(np.array([[0.0, 0.0], [1.0, 0.0]]), fps=1, pixel_size_um=1.0)
    assert tuple(k.as_dict()) == KINEMATICS_KEYS
    assert k.as_dict()["str"] == k.straightness


@pytest.mark.parametrize("window", [0, 4, -3])
def test_an_even_or_non_positive_smoothing_window_is_refused(window: int) -> None:
    with pytest.raises(ValueError, match="odd"):
        kinematics(np.zeros((4, 2)), fps=15, pixel_size_um=1.0, smoothing_window=window)
