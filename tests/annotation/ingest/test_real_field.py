"""The tracker on a real semen field (``../shared/data/real-field/S_0001.mp4``, see its
PROVENANCE.md): heads picked on frame 0 are followed plausibly or reported lost, never
followed somewhere implausible without a word.

The file is read at run time from the shared data folder beside the checkout (or
``MERSV_SHARED_DATA``); it is never copied into the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from annotation.ingest.tracking import LOSS_CODES, MAX_SPEED_UM_S, TrackResult, track_target
from annotation.ingest.video_io import video_frames_luma

REPO_ROOT = Path(__file__).resolve().parents[3]
N_FRAMES = 16
FPS = 30.0
# The pixel size is not known (PROVENANCE.md): heads are about 6-9 px long here, so a 4.6 µm
# head at 0.6 µm/px (7.7 px) is the guess a curator would give.
PIXEL_SIZE_UM = 0.6
# A head stands out from the local background by at least this many grey levels.
HEAD_CONTRAST = 15.0
N_HEADS = 10


def _field_video() -> Path:
    root = Path(os.environ.get("MERSV_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    path = root / "real-field" / "S_0001.mp4"
    if not path.is_file():
        pytest.fail(
            f"the real field video is missing: {path} (set MERSV_SHARED_DATA to the folder "
            "that holds real-field/S_0001.mp4)"
        )
    return path


def _contrast(frame: np.ndarray) -> np.ndarray:
    """How much darker than its surroundings (a 8 px Gaussian) each pixel is, lightly smoothed."""
    grey = frame.astype(np.float32)
    return cv2.GaussianBlur(grey, (0, 0), 8) - cv2.GaussianBlur(grey, (0, 0), 1)


def _heads(frame: np.ndarray, count: int) -> list[tuple[float, float]]:
    """The ``count`` most contrasted head-sized dark blobs of ``frame``, 30 px inside it: our
    own simple finder (blobs of 12-100 px, at most 14 px across), not the product's."""
    contrast = _contrast(frame)
    mask = (contrast > HEAD_CONTRAST).astype(np.uint8)
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(mask)
    height, width = frame.shape
    found = []
    for label in range(1, n):
        _, _, w, h, area = stats[label]
        x, y = centroids[label]
        if 12 <= area <= 100 and max(w, h) <= 14 and 30 < x < width - 30 and 30 < y < height - 30:
            found.append((float(contrast[labels == label].max()), float(x), float(y)))
    found.sort(reverse=True)
    return [(x, y) for _, x, y in found[:count]]


@pytest.fixture(scope="module")
def field_frames() -> np.ndarray:
    with video_frames_luma(_field_video(), N_FRAMES) as (_, frames, _):
        return np.stack([next(frames) for _ in range(N_FRAMES)])


def _plausible(result: TrackResult, frames: np.ndarray) -> list[str]:
    """What is implausible about the frames the tracker kept (empty: nothing)."""
    kept = len(result.centres) if result.lost_at is None else result.lost_at
    centres = result.centres[:kept]
    height, width = frames.shape[1:]
    problems = []
    if not ((centres >= 0).all() and (centres[:, 0] <= width - 1).all()):
        problems.append("a position outside the image")
    if not (centres[:, 1] <= height - 1).all():
        problems.append("a position outside the image")
    speeds = np.linalg.norm(np.diff(centres, axis=0), axis=1) * PIXEL_SIZE_UM * FPS
    if len(speeds) and speeds.max() > MAX_SPEED_UM_S:
        problems.append(f"a step at {speeds.max():.0f} µm/s")
    for index, (x, y) in enumerate(centres):
        contrast = _contrast(frames[index])
        r0, c0 = round(y), round(x)
        if contrast[max(r0 - 2, 0) : r0 + 3, max(c0 - 2, 0) : c0 + 3].max() < HEAD_CONTRAST:
            problems.append(f"no head under the track in frame {index}")
    return problems


def test_heads_picked_on_a_real_field_are_followed_plausibly_or_reported_lost(
    field_frames: np.ndarray,
) -> None:
    heads = _heads(field_frames[0], N_HEADS)
    assert len(heads) == N_HEADS, "the field shows dozens of heads"
    followed = 0
    for start in heads:
        result = track_target(field_frames, start, pixel_size_um=PIXEL_SIZE_UM, fps=FPS)
        assert _plausible(result, field_frames) == [], start
        if result.lost_at is None:
            followed += 1
            assert len(result.centres) == N_FRAMES
        else:
            assert result.loss is not None and result.loss.code in LOSS_CODES
    # Most of them are clear heads: the tracker must not give up on all of them.
    assert followed >= N_HEADS // 2
