"""The first-frame preview of an uploaded video: what the curator tags targets on.

Plain Python, no Django. Browsers decode H.264 only, so a page cannot draw frame 0 of an
MPEG-4 Part 2, MJPEG or raw AVI file itself; the worker decodes it (in the decode sandbox,
``annotation.ingest.isolation``) with the same reader ingestion uses, and writes

- ``frame0.png``: frame 0 at full resolution, grey, lossless (the page shows these pixels
  when zoomed in, so a 6 px head can be hit),
- ``overview.png``: the same frame scaled down to at most ``OVERVIEW_MAX_WIDTH`` px wide (what
  the page shows first; a 4K frame's full PNG is large),

and finds the candidate heads in frame 0 (``annotation.ingest.candidates``). The coordinates
the page sends back are in pixels of the full frame, which is also what tracking reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from annotation.ingest.candidates import Candidate, detect_heads
from annotation.ingest.video_io import IngestError, VideoInfo, video_frames_gray

FRAME_NAME = "frame0.png"
OVERVIEW_NAME = "overview.png"
OVERVIEW_MAX_WIDTH = 1024
# Candidates closer to the frame's edge than this many head lengths are not offered: such a
# head leaves the field within a frame or two, and the tracker reports it lost as soon as it
# comes within half a head length of the edge (`annotation.ingest.scale`), so "tag all"
# would only collect failures.
EDGE_MARGIN_HEADS = 1.0


@dataclass(frozen=True)
class FirstFrame:
    """What ``first_frame_preview`` made of a video."""

    info: VideoInfo
    frame_png: Path
    overview_png: Path
    candidates: list[Candidate]


def overview(frame: np.ndarray, max_width: int = OVERVIEW_MAX_WIDTH) -> np.ndarray:
    """``frame`` scaled down (area averaging) to at most ``max_width`` px wide; as it is
    when it is narrow enough already."""
    height, width = frame.shape[:2]
    if width <= max_width:
        return frame
    size = (max_width, max(1, round(height * max_width / width)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def _write_png(image: np.ndarray, path: Path) -> None:
    """Write ``image`` as PNG at ``path``, whole or not at all."""
    partial = path.with_name(f".{path.name}.partial.png")
    if not cv2.imwrite(str(partial), image):
        raise IngestError("the first frame could not be written as PNG")
    os.replace(partial, path)


def first_frame_preview(path: Path, *, out_dir: Path, head_length_px: float) -> FirstFrame:
    """Decode frame 0 of the video at ``path``, write its PNGs into ``out_dir`` and find its
    candidate heads (``head_length_px`` long). Raises IngestError when the file is not a
    readable video."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with video_frames_gray(path, 1) as (info, frames):
        frame = next(frames)
    frame_png, overview_png = out_dir / FRAME_NAME, out_dir / OVERVIEW_NAME
    _write_png(frame, frame_png)
    _write_png(overview(frame), overview_png)
    candidates = away_from_edge(
        detect_heads(frame, head_length_px=head_length_px),
        width=frame.shape[1],
        height=frame.shape[0],
        margin_px=EDGE_MARGIN_HEADS * head_length_px,
    )
    return FirstFrame(info, frame_png, overview_png, candidates)


def away_from_edge(
    candidates: list[Candidate], *, width: int, height: int, margin_px: float
) -> list[Candidate]:
    """The candidates whose centre lies at least ``margin_px`` inside a width x height frame."""
    return [
        c
        for c in candidates
        if margin_px <= c.x <= width - 1 - margin_px and margin_px <= c.y <= height - 1 - margin_px
    ]
