"""Find candidate sperm heads in frame 0, so that a curator clicks near a head, not on it.

Plain numpy/OpenCV, no Django, no learned weights. In phase contrast a head is a dark,
slightly elongated blob about ``head_length_px`` long inside a bright halo; everything else in
a semen field is smaller (debris dots, tail pieces: thin lines) or larger (round cells, bubbles,
clumps). So the detector is tuned to the head's scale rather than to a fixed number of pixels:

1. a difference of Gaussians whose inner sigma matches a blob of the head's width, on the
   inverted image (dark blobs give a positive response), divided by a robust estimate of its
   own noise (the median absolute deviation over the frame): the response is in "sigmas",
   whatever the illumination and camera gain;
2. local maxima above ``min_score`` sigmas, at least half a head apart;
3. around each maximum, the dark blob is cut out (pixels darker than half-way between the
   local background and the maximum's depth) and kept only when its area and elongation fit a
   head of the expected size: a tiny dot, a line (tail) or a big round cell is dropped.

Candidates are suggestions: the page snaps a click to the nearest one and offers "tag all";
the curator decides what is a head.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from annotation.ingest.scale import HEAD_LENGTH_UM, head_size_px

# A head is about this much narrower than it is long (human sperm: 4.5 x 2.9 um).
HEAD_WIDTH_RATIO = 0.65
# Response (in robust sigmas of the filtered frame) a maximum needs to be a candidate: heads
# stand tens of sigmas above the flat field; out-of-focus specks and noise bumps stay below.
MIN_SCORE = 20.0
# Area of the cut-out blob, relative to the expected head's ellipse, that a head may have.
AREA_RANGE = (0.3, 2.5)
# Longest-to-shortest axis ratio of a head's blob; tails and streaks are thinner.
MAX_ELONGATION = 3.0
# At most this many candidates per frame, best first (the page and the API stay small).
MAX_CANDIDATES = 500


@dataclass(frozen=True)
class Candidate:
    """A detected head: its centre (px of the frame) and score (robust sigmas of contrast)."""

    x: float
    y: float
    score: float

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in asdict(self).items()}


def _dark_blob_response(gray: np.ndarray, head_length_px: float) -> np.ndarray:
    """Difference of Gaussians at the head's scale on the inverted frame, in robust sigmas."""
    width = max(head_length_px * HEAD_WIDTH_RATIO, 1.0)
    inner = max(width / (2 * math.sqrt(2)), 0.7)  # the sigma a blob of that diameter peaks at
    image = 255.0 - gray.astype(np.float32)
    response = cv2.GaussianBlur(image, (0, 0), inner) - cv2.GaussianBlur(image, (0, 0), 3 * inner)
    median = float(np.median(response))
    spread = float(np.median(np.abs(response - median))) * 1.4826
    return (response - median) / max(spread, 1e-3)


def _local_maxima(response: np.ndarray, *, min_distance: int, min_score: float) -> np.ndarray:
    """(N, 2) row, column of maxima at least ``min_score`` high, none within ``min_distance``
    of a higher one (a square neighbourhood)."""
    size = 2 * min_distance + 1
    dilated = cv2.dilate(response, cv2.getStructuringElement(cv2.MORPH_RECT, (size, size)))
    peaks = (response >= dilated) & (response >= min_score)
    return np.argwhere(peaks)


def _blob_shape(
    gray: np.ndarray, row: int, column: int, head_length_px: float
) -> tuple[float, float, float, float] | None:
    """(area px, elongation, centre x, centre y) of the dark blob at (row, column), or None
    when no blob is found there."""
    reach = max(math.ceil(1.5 * head_length_px), 4)
    top, left = max(row - reach, 0), max(column - reach, 0)
    raw = gray[top : row + reach + 1, left : column + reach + 1].astype(np.float32)
    patch = cv2.GaussianBlur(raw, (0, 0), 0.7)
    background = float(np.median(patch))
    depth = float(patch[row - top, column - left])
    if background - depth < 1.0:
        return None
    mask = (patch < (background + depth) / 2).astype(np.uint8)
    count, labels = cv2.connectedComponents(mask, connectivity=8)
    label = labels[row - top, column - left]
    if count < 2 or label == 0:
        return None
    moments = cv2.moments((labels == label).astype(np.uint8), binaryImage=True)
    area = moments["m00"]
    if area < 1:
        return None
    mu20, mu02, mu11 = moments["mu20"] / area, moments["mu02"] / area, moments["mu11"] / area
    common = math.sqrt(max(((mu20 - mu02) / 2) ** 2 + mu11**2, 0.0))
    major = (mu20 + mu02) / 2 + common
    minor = max((mu20 + mu02) / 2 - common, 1e-6)
    elongation = math.sqrt(major / minor)
    return area, elongation, left + moments["m10"] / area, top + moments["m01"] / area


def detect_heads(
    frame: np.ndarray,
    *,
    head_length_px: float,
    min_score: float = MIN_SCORE,
    max_candidates: int = MAX_CANDIDATES,
) -> list[Candidate]:
    """Candidate heads in one grey frame (H, W) uint8, best score first.

    ``head_length_px`` is the expected head length in pixels (from the pixel size); the
    filter scale, the spacing of maxima and the shape limits follow from it. Raises
    ValueError for an empty frame or a head length that is not a positive number.
    """
    if frame.ndim != 2 or frame.size == 0:
        raise ValueError("detect_heads needs one grey frame (H, W)")
    if not (head_length_px > 0 and math.isfinite(head_length_px)):
        raise ValueError(f"the head length must be a positive number of px, not {head_length_px}")
    response = _dark_blob_response(frame, head_length_px)
    peaks = _local_maxima(
        response, min_distance=max(round(head_length_px / 2), 1), min_score=min_score
    )
    expected_area = math.pi / 4 * head_length_px * head_length_px * HEAD_WIDTH_RATIO
    low, high = AREA_RANGE[0] * expected_area, AREA_RANGE[1] * expected_area
    found: list[Candidate] = []
    for row, column in sorted(peaks.tolist(), key=lambda p: -response[p[0], p[1]]):
        shape = _blob_shape(frame, row, column, head_length_px)
        if shape is None:
            continue
        area, elongation, x, y = shape
        if not (low <= area <= high) or elongation > MAX_ELONGATION:
            continue
        found.append(Candidate(x=float(x), y=float(y), score=float(response[row, column])))
        if len(found) >= max_candidates:
            break
    return found


def head_length_px_for(pixel_size_um: float, head_length_um: float = HEAD_LENGTH_UM) -> float:
    """The expected head length in px at ``pixel_size_um`` um per px (9.2 px at 0.5 um/px), from
    the same head size the tracker is scaled by (`annotation.ingest.scale`)."""
    return head_size_px(pixel_size_um, head_length_um=head_length_um)[0]
