"""Reading frames as grey: the luma plane, taken as decoded, equals OpenCV's conversion."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from annotation import video_io
from annotation.synthetic import video_write
from annotation.video_io import read_frames_gray
from tests.ingest.videos import head_path, render_frames

N_FRAMES = 8


def _converted(path: Path, n: int) -> np.ndarray:
    """The first ``n`` frames through OpenCV's BGR conversion and BGR-to-grey (the reference)."""
    with video_io._capture(path) as capture:
        return np.stack([video_io._read_gray(capture) for _ in range(n)])


def _frames() -> np.ndarray:
    return render_frames(
        head_path("straight", N_FRAMES, start=(40.0, 50.0)), width=160, height=120, seed=3
    )


def _luma_used(monkeypatch) -> list[bool]:  # type: ignore[no-untyped-def]
    used: list[bool] = []
    original = video_io._luma_reader

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        reader = original(*args, **kwargs)
        used.append(reader is not None)
        return reader

    monkeypatch.setattr(video_io, "_luma_reader", spy)
    return used


@pytest.mark.parametrize("video_format", ["mp4", "avi"])  # limited range, full range (JPEG)
def test_the_luma_plane_gives_the_converted_grey_frames(
    tmp_path: Path, monkeypatch, video_format: str
) -> None:
    path = tmp_path / f"v.{video_format}"
    video_write(path, _frames(), fps=15, video_format=video_format)
    used = _luma_used(monkeypatch)
    frames = read_frames_gray(path, N_FRAMES)
    assert used == [True]
    reference = _converted(path, N_FRAMES)
    assert frames.shape == reference.shape and frames.dtype == np.uint8
    assert np.abs(frames.astype(int) - reference).max() <= 1


def test_a_video_whose_luma_plane_is_not_grey_is_read_through_the_conversion(
    tmp_path: Path, monkeypatch
) -> None:
    # A packed RGB video (PNG frames): the decoder's own format is no grey plane.
    path = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MPNG"), 15.0, (160, 120))
    assert writer.isOpened()
    colour = np.zeros((120, 160, 3), np.uint8)
    for index, frame in enumerate(_frames()):
        colour[..., 0], colour[..., 1], colour[..., 2] = frame, frame // 2, 255 - frame
        colour[0, 0] = index
        writer.write(colour)
    writer.release()
    used = _luma_used(monkeypatch)
    frames = read_frames_gray(path, N_FRAMES)
    assert used == [False]
    assert np.array_equal(frames, _converted(path, N_FRAMES))
