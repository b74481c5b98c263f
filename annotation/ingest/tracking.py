"""Track one sperm head through grey frames by template matching (OpenCV), and crop around it.

Plain numpy/OpenCV, no Django. Coordinates are (x, y) in pixels of the frame, with pixel
(row r, column c) centred at (c, r).

In the first frame the template is the box around the start point (a click on the head). If
the start point lies more than ``RECENTRE_GUARD_PX`` from the centre of the head's core (see
below) it is moved there first, so a careless click still gives a centred track. Then, per
frame, the tracker

1. predicts the head: the last position plus the mean velocity over the last
   ``VELOCITY_FRAMES`` frames (averaging cancels most of the head's side-to-side beat, which
   flips direction from frame to frame at 15 fps);
2. matches the template (``cv2.TM_CCOEFF_NORMED``), turned by each of ``ROTATION_STEPS_DEG``
   (a circling sperm's head turns up to ~25° a frame), at every offset up to
   ``search_radius`` px around the prediction, and keeps the best score less a motion prior
   ``PRIOR_WEIGHT * (distance / PRIOR_SCALE_PX)²``: another sperm's head crossing close by
   must match clearly better than the target near its predicted place to win. When no turn
   scores above the loss threshold, the template is tried turned all round, in steps of
   30° (a non-progressive cell can turn by a right angle between two frames). The peak is
   refined to sub-pixel by a parabola through it and its neighbours on each axis;
3. re-centres on the head (``recentre``): when the match lies more than ``RECENTRE_GUARD_PX``
   from the centroid of the head's core - the pixels that stand out from the local
   background with the head's polarity (a phase-contrast head is a dark core in a bright
   halo; the halo and the fainter midpiece are left out) - the centroid wins. Matching alone
   is the more precise of the two, the centroid the one that cannot drift;
4. updates the template: ``FIRST_TEMPLATE_WEIGHT`` x the first template, turned by the angle
   the head has turned so far, + the rest x the box at the new position. The first template
   anchors it (errors of single frames cannot add up to drift), the new box follows a head
   that changes its look (focus, a bending midpiece).

The target is lost when the best score falls below ``loss_threshold`` (the head vanished or
changed beyond recognition) or the best match lies on the edge of the search window (the head
moved further than the window reaches) in ``MAX_EDGE_HITS`` frames running. Tracking stops
there; an unreadable frame (empty, wrong shape) is a loss too, never an exception.

The settings were tuned on `simulator.synthetic` videos (see ``benchmarks/ingestion.py``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

FIRST_TEMPLATE_WEIGHT = 0.7
ROTATION_STEPS_DEG: tuple[float, ...] = (-15.0, 0.0, 15.0)
# Tried only when none of those matches well enough to keep the target.
WIDE_ROTATION_STEPS_DEG: tuple[float, ...] = tuple(float(a) for a in range(-150, 181, 30) if a != 0)
VELOCITY_FRAMES = 3
PRIOR_WEIGHT = 0.1
PRIOR_SCALE_PX = 8.0
MAX_EDGE_HITS = 2
# Re-centring: the core centroid is taken in a (2 h + 1)² window, from the pixels whose
# contrast exceeds this fraction of the strongest; it overrides the match beyond the guard
# distance, unless it lies so far off that it found something else.
RECENTRE_HALF_SIZE = 4
RECENTRE_THRESHOLD = 0.3
RECENTRE_GUARD_PX = 1.5
RECENTRE_MAX_SHIFT_PX = 3.0
RECENTRE_ITERATIONS = 3
# Default loss threshold: correct matches on the synthetic benchmark score >= 0.66, the best
# match on empty background about 0.3 (median).
LOSS_THRESHOLD = 0.5
# Grey level of a crop where it reaches past the frame's edge: black, darker than any
# phase-contrast background, so the edge of the field is plain to see.
CROP_FILL = 0


@dataclass(frozen=True)
class TrackResult:
    """Where the tracker put the head in each frame it read.

    ``centres`` (T, 2) and ``scores`` (T,) have one row per frame read; frame 0 scores 1. When
    the target was lost, ``lost_at`` is that frame's index, tracking stopped there
    (T = lost_at + 1) and the last row holds the rejected match and its score.
    """

    centres: np.ndarray  # (T, 2) float64, (x, y) px
    scores: np.ndarray  # (T,) float64, TM_CCOEFF_NORMED of the chosen match
    lost_at: int | None


def crop_centred(
    frame: np.ndarray,
    centre_xy: tuple[float, float] | np.ndarray,
    size: int,
    *,
    fill: int = CROP_FILL,
) -> np.ndarray:
    """The (size, size) box of ``frame`` centred on the pixel nearest ``centre_xy``.

    No resampling: the box holds the frame's own pixels, pixel ``size // 2`` of each axis being
    the centre. Where the box leaves the frame it is filled with the constant ``fill``, so the
    target stays at the centre and an expert sees where the frame ends (repeated border pixels
    would smear into streaks that look like cells). Only the clips cut for people and the model
    use this; matching (``_patch``) still repeats the border, which suits correlation.
    """
    height, width = frame.shape[:2]
    left = round(centre_xy[0]) - size // 2
    top = round(centre_xy[1]) - size // 2
    if top >= 0 and left >= 0 and top + size <= height and left + size <= width:
        return frame[top : top + size, left : left + size].copy()  # inside: a plain slice
    crop = np.full((size, size, *frame.shape[2:]), fill, dtype=frame.dtype)
    # The part of the box inside the frame, in frame and in crop coordinates.
    y0, y1 = max(top, 0), min(top + size, height)
    x0, x1 = max(left, 0), min(left + size, width)
    if y0 < y1 and x0 < x1:
        crop[y0 - top : y1 - top, x0 - left : x1 - left] = frame[y0:y1, x0:x1]
    return crop


def _patch(frame: np.ndarray, centre: np.ndarray, size: int) -> np.ndarray:
    """(size, size) float32 patch centred exactly on ``centre`` (bilinear, border repeated)."""
    point = (float(centre[0]), float(centre[1]))
    return cv2.getRectSubPix(frame, (size, size), point, None, cv2.CV_32F)


def _centre_crop(box: np.ndarray, size: int) -> np.ndarray:
    margin = (len(box) - size) // 2
    return box[margin : margin + size, margin : margin + size]


def _rotated(box: np.ndarray, degrees: float) -> np.ndarray:
    """``box`` turned by ``degrees`` about its centre pixel."""
    if degrees == 0:
        return box
    centre = (len(box) - 1) / 2
    matrix = cv2.getRotationMatrix2D((centre, centre), degrees, 1.0)
    return cv2.warpAffine(
        box, matrix, box.shape[::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def _border(patch: np.ndarray) -> np.ndarray:
    return np.concatenate([patch[0], patch[-1], patch[1:-1, 0], patch[1:-1, -1]])


def _parabola_peak(left: float, centre: float, right: float) -> float:
    """Offset in [-0.5, 0.5] of the vertex of the parabola through three samples at -1, 0, 1."""
    curvature = left - 2.0 * centre + right
    if curvature >= 0:  # not a maximum (flat or noisy): keep the integer peak
        return 0.0
    return float(np.clip(0.5 * (left - right) / curvature, -0.5, 0.5))


def _head_polarity(frame: np.ndarray, centre: np.ndarray) -> float:
    """+1 when the head at ``centre`` is darker than the background, -1 when brighter."""
    patch = _patch(frame, centre, 2 * RECENTRE_HALF_SIZE + 1)
    background = float(np.median(_border(patch)))
    return 1.0 if background - float(patch.min()) >= float(patch.max()) - background else -1.0


def _head_centroid(frame: np.ndarray, centre: np.ndarray, polarity: float) -> np.ndarray:
    """Centroid of the head's core near ``centre`` (see the module docstring)."""
    size = 2 * RECENTRE_HALF_SIZE + 1
    offsets = np.arange(size, dtype=np.float32) - RECENTRE_HALF_SIZE
    refined = centre.copy()
    for _ in range(RECENTRE_ITERATIONS):
        patch = _patch(frame, refined, size)
        # The window border is mostly background; its median is robust to a tail crossing it.
        contrast = np.maximum(polarity * (np.median(_border(patch)) - patch), 0.0)
        # Only what stands clearly out counts, so noise does not pull the centroid back to the
        # window centre.
        weight = np.maximum(contrast - RECENTRE_THRESHOLD * contrast.max(), 0.0)
        total = float(weight.sum())
        if total <= 0:
            break
        # Offset from the window centre: weighted mean of the column and row offsets.
        shift = np.array([weight.sum(axis=0) @ offsets, weight.sum(axis=1) @ offsets]) / total
        refined = refined + shift
        if np.abs(shift).max() < 0.05:
            break
    return refined


def _as_gray(frame: np.ndarray) -> np.ndarray:
    image = np.asarray(frame)
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"not a grey image: shape {image.shape}")
    return image if image.dtype == np.uint8 else image.astype(np.float32)


class HeadTracker:
    """Follows one head frame by frame: ``HeadTracker(first_frame, start_xy)``, then
    ``update(frame)`` for each next frame until it returns False (lost). ``track_target`` runs
    it over a sequence; the ingestion pipeline drives it while it decodes."""

    def __init__(
        self,
        first_frame: np.ndarray,
        start_xy: tuple[float, float],
        *,
        template_size: int = 13,
        search_radius: int = 24,
        recentre: bool = True,
        loss_threshold: float = LOSS_THRESHOLD,
    ) -> None:
        if template_size < 3 or template_size % 2 == 0:
            raise ValueError(f"template_size must be an odd number >= 3, not {template_size}")
        if search_radius < 1:
            raise ValueError(f"search_radius must be at least 1, not {search_radius}")
        self.template_size = template_size
        self.search_radius = search_radius
        self.recentre = recentre
        self.loss_threshold = loss_threshold
        self.centres: list[np.ndarray] = []
        self.scores: list[float] = []
        self.lost_at: int | None = None
        self._edge_hits = 0
        offsets = np.arange(-search_radius, search_radius + 1, dtype=np.float32)
        squared_distance = offsets[None, :] ** 2 + offsets[:, None] ** 2
        self._prior = PRIOR_WEIGHT * squared_distance / PRIOR_SCALE_PX**2
        # Frame 1 has no velocity yet: a fast head may be anywhere in the window.
        reach = max(float(search_radius), PRIOR_SCALE_PX)
        self._first_prior = PRIOR_WEIGHT * squared_distance / reach**2

        centre = np.asarray(start_xy, dtype=np.float64)
        try:
            frame = _as_gray(first_frame)
        except ValueError:
            self._stop(centre, 0.0)
            return
        self._polarity = _head_polarity(frame, centre)
        if recentre:
            centre = self._recentred(frame, centre)
        # Templates are cut from boxes wide enough to rotate them without losing corners.
        self._box_size = template_size + 2 * math.ceil(template_size * (math.sqrt(2) - 1) / 2)
        self._first_box = _patch(frame, centre, self._box_size)
        self._last_box = self._first_box
        self._angle = 0.0  # degrees the head turned since the first frame
        # A flat box matches nothing: there is no head to follow.
        if float(_centre_crop(self._first_box, template_size).std()) < 1e-3:
            self._stop(centre, 0.0)
        else:
            self.centres.append(centre)
            self.scores.append(1.0)

    @property
    def lost(self) -> bool:
        return self.lost_at is not None

    def result(self) -> TrackResult:
        return TrackResult(
            centres=np.array(self.centres, dtype=np.float64).reshape(-1, 2),
            scores=np.array(self.scores, dtype=np.float64),
            lost_at=self.lost_at,
        )

    def update(self, frame: np.ndarray) -> bool:
        """Find the head in the next frame; False when the target is (or was already) lost."""
        if self.lost:
            return False
        try:
            image = _as_gray(frame)
        except ValueError:
            self._stop(self.centres[-1], 0.0)
            return False

        radius = self.search_radius
        predicted = np.round(self._predict())
        window = _patch(image, predicted, self.template_size + 2 * radius)
        prior = self._prior if len(self.centres) > 1 else self._first_prior
        base = cv2.addWeighted(
            _rotated(self._first_box, self._angle),
            FIRST_TEMPLATE_WEIGHT,
            self._last_box,
            1.0 - FIRST_TEMPLATE_WEIGHT,
            0.0,
        )
        best = self._best_match(window, base, prior, ROTATION_STEPS_DEG)
        if float(best[3][best[2][1], best[2][0]]) < self.loss_threshold:
            # A head that turned sharply (a non-progressive cell can turn by a right angle
            # between two frames) matches none of the small turns: try all round first.
            wide = self._best_match(window, base, prior, WIDE_ROTATION_STEPS_DEG)
            if wide[0] > best[0]:
                best = wide
        _, turn, (peak_x, peak_y), response = best
        score = float(response[peak_y, peak_x])
        on_edge = peak_x in (0, 2 * radius) or peak_y in (0, 2 * radius)
        offset = np.array([peak_x - radius, peak_y - radius], dtype=np.float64)
        if not on_edge:
            offset[0] += _parabola_peak(*response[peak_y, peak_x - 1 : peak_x + 2])
            offset[1] += _parabola_peak(*response[peak_y - 1 : peak_y + 2, peak_x])
        centre = predicted + offset
        self._edge_hits = self._edge_hits + 1 if on_edge else 0
        if score < self.loss_threshold or self._edge_hits >= MAX_EDGE_HITS:
            self._stop(centre, score)
            return False

        if self.recentre:
            centre = self._recentred(image, centre)
        self.centres.append(centre)
        self.scores.append(score)
        self._angle += turn
        self._last_box = _patch(image, centre, self._box_size)
        return True

    def _best_match(
        self,
        window: np.ndarray,
        base: np.ndarray,
        prior: np.ndarray,
        turns: tuple[float, ...],
    ) -> tuple[float, float, tuple[int, int], np.ndarray]:
        """(score less prior, turn, peak (x, y), response) of the best of ``base`` turned by
        each of ``turns`` over ``window``."""
        best: tuple[float, float, tuple[int, int], np.ndarray]
        best = (-np.inf, 0.0, (0, 0), np.zeros((1, 1), np.float32))
        for turn in turns:
            template = _centre_crop(_rotated(base, turn), self.template_size)
            response = cv2.matchTemplate(window, template, cv2.TM_CCOEFF_NORMED)
            # A flat window gives NaN or inf: no match there.
            np.nan_to_num(response, copy=False, nan=-1.0, posinf=-1.0, neginf=-1.0)
            _, value, _, peak = cv2.minMaxLoc(response - prior)
            if value > best[0]:
                best = (value, turn, (int(peak[0]), int(peak[1])), response)
        return best

    def _predict(self) -> np.ndarray:
        history = self.centres[-(VELOCITY_FRAMES + 1) :]
        if len(history) < 2:
            return history[-1]
        return history[-1] + (history[-1] - history[0]) / (len(history) - 1)

    def _recentred(self, frame: np.ndarray, centre: np.ndarray) -> np.ndarray:
        head = _head_centroid(frame, centre, self._polarity)
        distance = float(np.linalg.norm(head - centre))
        return head if RECENTRE_GUARD_PX < distance <= RECENTRE_MAX_SHIFT_PX else centre

    def _stop(self, centre: np.ndarray, score: float) -> None:
        self.lost_at = len(self.centres)
        self.centres.append(centre)
        self.scores.append(score)


def track_target(
    frames: Iterable[np.ndarray],
    start_xy: tuple[float, float],
    *,
    template_size: int = 13,
    search_radius: int = 24,
    recentre: bool = True,
    loss_threshold: float = LOSS_THRESHOLD,
) -> TrackResult:
    """Follow the head that lies at ``start_xy`` in the first of ``frames`` (H, W) uint8.

    ``template_size`` (odd, px) is the side of the matched box: a little more than the head
    (about 9 x 6 px at 0.5 µm/px), so the tail, which bends from frame to frame, weighs
    little. ``search_radius`` (px) is how far from the predicted position the head may be
    found in the next frame. Reading stops at the frame where the target is lost. See the
    module docstring for the method.
    """
    tracker: HeadTracker | None = None
    for frame in frames:
        if tracker is None:
            tracker = HeadTracker(
                frame,
                start_xy,
                template_size=template_size,
                search_radius=search_radius,
                recentre=recentre,
                loss_threshold=loss_threshold,
            )
        elif not tracker.update(frame):
            break
        if tracker.lost:
            break
    if tracker is None:
        return TrackResult(np.zeros((0, 2)), np.zeros(0), lost_at=None)
    return tracker.result()
