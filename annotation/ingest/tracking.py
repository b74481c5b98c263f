"""Track one sperm head through grey frames by template matching (OpenCV), and crop around it.

Plain numpy/OpenCV, no Django. Coordinates are (x, y) in pixels of the frame, with pixel
(row r, column c) centred at (c, r).

Every size below is for a head of about 9 x 6 px (0.5 µm/px, the project's default); the
tracker takes the microscope's pixel size and derives its sizes from the expected head size
in µm (`annotation.ingest.scale`), so a head of 36 px is followed with a 49 px template.

In the first frame the template is the box around the start point (a click on the head). If
the start point lies more than the re-centring guard (1.5 px) from the centre of the head's
core (see below) it is moved there first, so a careless click still gives a centred track.
The head's long axis and the side its tail leaves from give the direction it swims in (a
sperm swims head first). Then, per frame, the tracker

1. predicts the head: the last position plus the mean velocity over the last
   ``VELOCITY_FRAMES`` frames (averaging cancels most of the head's side-to-side beat, which
   flips direction from frame to frame at 15 fps);
2. matches the template (``cv2.TM_CCOEFF_NORMED``), turned by each of ``ROTATION_STEPS_DEG``
   (a circling sperm's head turns up to ~25° a frame), at every offset up to the search
   radius (24 px) around the prediction, and keeps the best score less a motion prior
   ``PRIOR_WEIGHT * (distance / 8 px)²``: another sperm's head crossing close by must match
   clearly better than the target near its predicted place to win. In frame 1 there is no
   velocity yet: the prior is wider, and offsets off the head's own direction (sideways, or
   backwards when the tail shows) cost ``ORIENTATION_WEIGHT`` more, so a neighbour beside the
   target does not win by its score alone. When no turn scores above the loss threshold,
   the template is tried turned all round, in steps of 30° (a non-progressive cell can turn
   by a right angle between two frames). The peak is refined to sub-pixel by a parabola
   through it and its neighbours on each axis;
3. re-centres on the head (``recentre``): when the match lies more than the guard from the
   centroid of the head's core - the pixels that stand out from the local background with
   the head's polarity (a phase-contrast head is a dark core in a bright halo; the halo and
   the fainter midpiece are left out) - the centroid wins. Matching alone is the more precise
   of the two, the centroid the one that cannot drift;
4. updates the template: ``FIRST_TEMPLATE_WEIGHT`` x the first template, turned by the angle
   the head has turned so far, + the rest x the box at the new position. The first template
   anchors it (errors of single frames cannot add up to drift), the new box follows a head
   that changes its look (focus, a bending midpiece).

**Loss.** The tracker would rather stop than follow something else: a clip of the wrong cell
is graded as if it were the target. It stops, with a ``Loss`` (a short code and a sentence a
curator reads), at the first frame where

- ``left_frame``: the head's match reaches the frame's border (its centre closer to the edge
  than half a head length): the head is leaving the field, and border pixels repeated into
  the window would keep the score high while it swims off (a prediction past the border is
  searched for from inside it);
- ``low_score``: the best score falls below ``loss_threshold`` (the head vanished or changed
  beyond recognition);
- ``score_drop``: the score falls well below the target's own history (``BASELINE_SIGMAS``
  robust SDs under the median of its scores so far, or under ``BASELINE_FRACTION`` of that
  median) in two frames running: a head that matched at 0.9 and now matches at 0.6 is
  probably something else, even though 0.6 clears the fixed threshold. One such frame alone,
  matched where the head was expected (within a footprint of the prediction), is kept on
  probation (a tail or another cell passing over the head for a frame), its score left out
  of the history; the loss is reported at the first of the two;
- ``ambiguous``: another peak, beyond the head's own footprint (half a head length), scores
  within ``AMBIGUITY_MARGIN`` of the best after the motion prior (two heads match alike); or
  the match lands where a swimming head was in the previous frame (a crossing); or it meets
  a still head the last frames' matches saw beside the target and the track then stops
  there (latched onto a cell of a cluster it passes, or a still cell beside it); or the match
  dips below the head's history (``SOFT_SIGMAS`` robust SDs) with a still head within
  ``CROWD_HEADS`` head lengths, or drops by the ``score_drop`` rule with any other head that
  close (one swimming over the target): the match may be of the other head;
- ``implausible_jump``: the step between two frames is faster than ``MAX_SPEED_UM_S`` or
  differs from the step before by more than ``MAX_STEP_CHANGE_UM`` (needs the pixel size and
  the frame rate; a jump no sperm makes is a jump to another cell);
- ``outran_window``: the best match lies on the edge of the search window (the head moved
  further than the window reaches) in ``MAX_EDGE_HITS`` frames running;
- ``unreadable_frame`` (empty, wrong shape), or ``no_head`` in frame 0 (a flat box).

Frames just before a loss whose match already dipped below the history are taken as the
loss's beginning (its frame is the first of them). Tracking stops there; none of these
raises. The settings were tuned on `simulator.synthetic` videos (see
``benchmarks/ingestion.py``); the loss rules' constants were chosen from what a sperm can do
before their effect was measured (``benchmarks/tracking_failures.py``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from annotation.ingest.scale import (
    DEFAULT_PIXEL_SIZE_UM,
    HEAD_LENGTH_UM,
    HEAD_WIDTH_UM,
    TrackingScale,
    tracking_scale,
)

FIRST_TEMPLATE_WEIGHT = 0.7
ROTATION_STEPS_DEG: tuple[float, ...] = (-15.0, 0.0, 15.0)
# Tried only when none of those matches well enough to keep the target.
WIDE_ROTATION_STEPS_DEG: tuple[float, ...] = tuple(float(a) for a in range(-150, 181, 30) if a != 0)
VELOCITY_FRAMES = 3
PRIOR_WEIGHT = 0.1
MAX_EDGE_HITS = 2
# Re-centring: the core centroid is taken in a (2 h + 1)² window (h = 4 px at the reference
# scale), from the pixels whose contrast exceeds this fraction of the strongest; it overrides
# the match beyond the guard distance, unless it lies so far off that it found something else.
RECENTRE_THRESHOLD = 0.3
RECENTRE_ITERATIONS = 3
# Default loss threshold: correct matches on the synthetic benchmark score >= 0.66, the best
# match on empty background about 0.3 (median).
LOSS_THRESHOLD = 0.5
# Grey level of a crop where it reaches past the frame's edge: black, darker than any
# phase-contrast background, so the edge of the field is plain to see.
CROP_FILL = 0

# The loss rules. Chosen from what a head does, before measuring their effect:
# - frame 1, orientation: a sideways offset of 1.5 head lengths costs as much as the whole
#   motion prior at its scale; a head's side-to-side beat moves it well under one head length
#   sideways between two frames, so the target's own move costs little.
ORIENTATION_WEIGHT = 0.1
ORIENTATION_SCALE_HEADS = 1.5
# The tail is told from the nose when the contrast behind the head differs by this many grey
# levels between the two ends of its long axis; a head less elongated than this has no axis.
TAIL_CONTRAST_MIN = 3.0
MIN_ELONGATION = 1.25
# - score history: correct matches of one head vary by a few hundredths from frame to frame
#   (turns, focus); a drop of 6 robust SDs (at least 0.03 each: 0.18) or to 70 % of its median
#   is not the same head any more. Judged from the 4th accepted frame on.
BASELINE_MIN_FRAMES = 4
BASELINE_SIGMAS = 6.0
BASELINE_SIGMA_FLOOR = 0.03
BASELINE_FRACTION = 0.7
# - crowding: a score below the history by half the score-drop rule's SDs (3) is no loss on
#   its own, but with a still head within 1.5 head lengths (the scale of the frame-1
#   orientation rule; a beat moves a head well under one) the match may be of that head: the
#   target is lost there. A drop by the full rule (which alone is kept on probation for a
#   frame) is a loss beside a swimming head too: one crossing over the target. Frames of a
#   slight dip just before any loss are taken as its beginning.
SOFT_SIGMAS = 3.0
CROWD_HEADS = 1.5
# - ambiguity: a rival within 0.05 of the best (after the prior) is as likely as the target.
AMBIGUITY_MARGIN = 0.05
# - a neighbour: the (up to) 3 best other head-like peaks (scoring >= the loss threshold) of
#   a frame, at least a head length from the target (nearer is its own midpiece or halo), are
#   remembered for 3 frames (0.2 s at 15 fps); one seen at the same place in two of them is a
#   still cell, and a match within a footprint of it is the target running into that head.
NEIGHBOUR_PEAKS = 3
NEIGHBOUR_MEMORY_FRAMES = 3
# Meeting a still head is a loss only when the track then stops there: its net displacement
# per frame over the next 2 frames falls below a third of its mean step before (a swimming
# target crosses a still cell and swims on; one latched onto the cell stands still with it).
CONTACT_FRAMES = 2
CONTACT_STOP_FRACTION = 1 / 3
# - path: human sperm swim at up to about 250 µm/s (VCL of hyperactivated cells); 300 leaves
#   room for tracking noise. A step that differs from the previous one by more than 12 µm
#   (2.5 head lengths) is no beat (ALH is at most ~7 µm, a lateral offset of 2 x that).
MAX_SPEED_UM_S = 300.0
MAX_STEP_CHANGE_UM = 12.0


@dataclass(frozen=True)
class Loss:
    """Why a target was lost: ``code`` (one of ``LOSS_CODES``) and a sentence for a curator."""

    code: str
    message: str


LOSS_CODES: tuple[str, ...] = (
    "no_head",
    "unreadable_frame",
    "left_frame",
    "low_score",
    "score_drop",
    "ambiguous",
    "implausible_jump",
    "outran_window",
)


@dataclass(frozen=True)
class TrackResult:
    """Where the tracker put the head in each frame it read.

    ``centres`` (T, 2) and ``scores`` (T,) have one row per frame read; frame 0 scores 1. When
    the target was lost, ``lost_at`` is that frame's index, tracking stopped there
    (T = lost_at + 1), the last row holds the rejected match and its score, and ``loss`` says
    why.
    """

    centres: np.ndarray  # (T, 2) float64, (x, y) px
    scores: np.ndarray  # (T,) float64, TM_CCOEFF_NORMED of the chosen match
    lost_at: int | None
    loss: Loss | None = None


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


def _head_polarity(frame: np.ndarray, centre: np.ndarray, half_size: int) -> float:
    """+1 when the head at ``centre`` is darker than the background, -1 when brighter."""
    patch = _patch(frame, centre, 2 * half_size + 1)
    background = float(np.median(_border(patch)))
    return 1.0 if background - float(patch.min()) >= float(patch.max()) - background else -1.0


def _core_weight(patch: np.ndarray, polarity: float) -> np.ndarray:
    """Per pixel of ``patch``, how much it belongs to the head's core (0: background)."""
    # The window border is mostly background; its median is robust to a tail crossing it.
    contrast = np.maximum(polarity * (np.median(_border(patch)) - patch), 0.0)
    # Only what stands clearly out counts, so noise does not pull the centroid back to the
    # window centre.
    return np.maximum(contrast - RECENTRE_THRESHOLD * contrast.max(), 0.0)


def _head_centroid(
    frame: np.ndarray, centre: np.ndarray, polarity: float, half_size: int
) -> np.ndarray:
    """Centroid of the head's core near ``centre`` (see the module docstring)."""
    size = 2 * half_size + 1
    offsets = np.arange(size, dtype=np.float32) - half_size
    refined = centre.copy()
    for _ in range(RECENTRE_ITERATIONS):
        weight = _core_weight(_patch(frame, refined, size), polarity)
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


def _head_direction(
    frame: np.ndarray, centre: np.ndarray, polarity: float, scale: TrackingScale
) -> tuple[np.ndarray, bool] | None:
    """The direction the head at ``centre`` swims in: (unit vector (x, y), whether its sign is
    known), or None for a head with no clear long axis.

    The axis is the core's principal axis (second moments of its weights); the sign comes from
    the tail: behind a head its midpiece and tail stand out with the head's polarity, in front
    of it lies background (or the halo, of the other polarity).
    """
    half = scale.recentre_half_size
    patch = _patch(frame, centre, 2 * half + 1)
    weight = _core_weight(patch, polarity)
    total = float(weight.sum())
    if total <= 0:
        return None
    offsets = np.arange(2 * half + 1, dtype=np.float64) - half
    ys, xs = np.meshgrid(offsets, offsets, indexing="ij")
    mx, my = float((weight * xs).sum()) / total, float((weight * ys).sum()) / total
    cxx = float((weight * (xs - mx) ** 2).sum()) / total
    cyy = float((weight * (ys - my) ** 2).sum()) / total
    cxy = float((weight * (xs - mx) * (ys - my)).sum()) / total
    spread = math.hypot(cxx - cyy, 2 * cxy)
    major, minor = (cxx + cyy + spread) / 2, (cxx + cyy - spread) / 2
    if minor <= 0 or math.sqrt(major / minor) < MIN_ELONGATION:
        return None
    angle = 0.5 * math.atan2(2 * cxy, cxx - cyy)
    axis = np.array([math.cos(angle), math.sin(angle)])
    # Contrast along the axis beyond each end of the head (0.6 to 1.3 head lengths out).
    length = scale.head_length_px
    reach = math.ceil(1.4 * length)
    around = _patch(frame, centre, 2 * reach + 1)
    background = float(np.median(_border(around)))
    ends = []
    for sign in (1.0, -1.0):
        points = [centre + sign * distance * axis for distance in np.linspace(0.6, 1.3, 5) * length]
        values = [float(_patch(frame, point, 1)[0, 0]) for point in points]
        ends.append(float(np.mean([polarity * (background - v) for v in values])))
    if abs(ends[0] - ends[1]) < TAIL_CONTRAST_MIN:
        return axis, False
    # The tail lies where the contrast is strong: the head points the other way.
    return (axis if ends[1] > ends[0] else -axis), True


class HeadTracker:
    """Follows one head frame by frame: ``HeadTracker(first_frame, start_xy)``, then
    ``update(frame)`` for each next frame until it returns False (lost). ``track_target`` runs
    it over a sequence; the ingestion pipeline drives it while it decodes.

    Sizes come from ``pixel_size_um`` and the expected head size (`annotation.ingest.scale`);
    ``template_size`` and ``search_radius`` override the derived ones. Without ``fps`` the
    speed rule of the path is not applied (the step-change rule is)."""

    def __init__(
        self,
        first_frame: np.ndarray,
        start_xy: tuple[float, float],
        *,
        template_size: int | None = None,
        search_radius: int | None = None,
        recentre: bool = True,
        loss_threshold: float = LOSS_THRESHOLD,
        pixel_size_um: float = DEFAULT_PIXEL_SIZE_UM,
        fps: float | None = None,
        head_length_um: float = HEAD_LENGTH_UM,
        head_width_um: float = HEAD_WIDTH_UM,
    ) -> None:
        scale = tracking_scale(
            pixel_size_um, head_length_um=head_length_um, head_width_um=head_width_um
        )
        template_size = scale.template_size if template_size is None else template_size
        search_radius = scale.search_radius if search_radius is None else search_radius
        if template_size < 3 or template_size % 2 == 0:
            raise ValueError(f"template_size must be an odd number >= 3, not {template_size}")
        if search_radius < 1:
            raise ValueError(f"search_radius must be at least 1, not {search_radius}")
        if fps is not None and not (fps > 0 and math.isfinite(fps)):
            raise ValueError(f"fps must be a positive number, not {fps}")
        self.scale = scale
        self.template_size = template_size
        self.search_radius = search_radius
        self.recentre = recentre
        self.loss_threshold = loss_threshold
        self.pixel_size_um = pixel_size_um
        self.fps = fps
        self.centres: list[np.ndarray] = []
        self.scores: list[float] = []
        self.lost_at: int | None = None
        self.loss: Loss | None = None
        self._edge_hits = 0
        self._frame_size = (0, 0)
        # Other heads the last match saw beside the target (frame px): running into one of
        # them is the moment the tracker may swap cells.
        self._neighbours: list[tuple[int, np.ndarray]] = []  # (frame, position)
        # The scores of the frames kept (not those on probation), and the frame on probation.
        self._baseline: list[float] = []
        self._dip_at: int | None = None
        # Frames kept whose score lay below the history's usual band (see SOFT_SIGMAS).
        self._soft_dips: set[int] = set()
        # (frame, mean step before, px) of the last meeting with a still neighbour.
        self._contact: tuple[int, float, float] | None = None
        offsets = np.arange(-search_radius, search_radius + 1, dtype=np.float32)
        self._dx, self._dy = np.meshgrid(offsets, offsets)
        squared_distance = self._dx**2 + self._dy**2
        # The head's own footprint, a disc, as a mask (see _blank).
        half = math.floor(scale.footprint_px)
        disc = np.arange(-half, half + 1) ** 2
        self._disc = disc[None, :] + disc[:, None] <= scale.footprint_px**2
        self._prior = PRIOR_WEIGHT * squared_distance / scale.prior_scale_px**2
        # Frame 1 has no velocity yet: a fast head may be anywhere in the window.
        reach = max(float(search_radius), scale.prior_scale_px)
        self._first_prior = PRIOR_WEIGHT * squared_distance / reach**2

        centre = np.asarray(start_xy, dtype=np.float64)
        try:
            frame = _as_gray(first_frame)
        except ValueError:
            self._stop(centre, 0.0, "unreadable_frame", "frame 0 could not be read")
            return
        self._frame_size = (frame.shape[1], frame.shape[0])
        self._polarity = _head_polarity(frame, centre, scale.recentre_half_size)
        if recentre:
            centre = self._recentred(frame, centre)
        # Templates are cut from boxes wide enough to rotate them without losing corners.
        self._box_size = template_size + 2 * math.ceil(template_size * (math.sqrt(2) - 1) / 2)
        self._first_box = _patch(frame, centre, self._box_size)
        self._last_box = self._first_box
        self._angle = 0.0  # degrees the head turned since the first frame
        # A flat box matches nothing: there is no head to follow.
        if float(_centre_crop(self._first_box, template_size).std()) < 1e-3:
            self._stop(centre, 0.0, "no_head", "there is no sperm head here in frame 0")
            return
        self.centres.append(centre)
        self.scores.append(1.0)
        direction = _head_direction(frame, centre, self._polarity, scale)
        if direction is not None:
            self._first_prior = self._first_prior + self._orientation_prior(*direction)

    def _orientation_prior(self, forward: np.ndarray, signed: bool) -> np.ndarray:
        """Extra cost in frame 1 of offsets off the head's direction (see the docstring)."""
        along = self._dx * forward[0] + self._dy * forward[1]
        across = -self._dx * forward[1] + self._dy * forward[0]
        off = across**2 + (np.minimum(along, 0.0) ** 2 if signed else 0.0)
        scale_px = ORIENTATION_SCALE_HEADS * self.scale.head_length_px
        return np.asarray(ORIENTATION_WEIGHT * off / scale_px**2, dtype=np.float32)

    @property
    def lost(self) -> bool:
        return self.lost_at is not None

    def result(self) -> TrackResult:
        return TrackResult(
            centres=np.array(self.centres, dtype=np.float64).reshape(-1, 2),
            scores=np.array(self.scores, dtype=np.float64),
            lost_at=self.lost_at,
            loss=self.loss,
        )

    def update(self, frame: np.ndarray) -> bool:
        """Find the head in the next frame; False when the target is (or was already) lost."""
        if self.lost:
            return False
        index = len(self.centres)
        try:
            image = _as_gray(frame)
        except ValueError:
            self._stop(self.centres[-1], 0.0, "unreadable_frame", f"frame {index} is unreadable")
            return False

        radius = self.search_radius
        # A prediction past the border is searched for inside it: the head found near the
        # border is leaving (the rule on the match below), one found further in turned back.
        predicted = np.round(self._inside(self._predict(), self.scale.border_margin_px))
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
        value, turn, (peak_x, peak_y), response = best
        score = float(response[peak_y, peak_x])
        on_edge = peak_x in (0, 2 * radius) or peak_y in (0, 2 * radius)
        offset = np.array([peak_x - radius, peak_y - radius], dtype=np.float64)
        if not on_edge:
            offset[0] += _parabola_peak(*response[peak_y, peak_x - 1 : peak_x + 2])
            offset[1] += _parabola_peak(*response[peak_y - 1 : peak_y + 2, peak_x])
        centre = predicted + offset
        self._edge_hits = self._edge_hits + 1 if on_edge else 0
        dip_at = self._dip_at
        loss = self._judge(index, centre, score, value, response - prior, (peak_x, peak_y))
        if loss is not None:
            if dip_at is not None and loss[0] == "score_drop":
                # The match fell two frames running: the loss began at the first of them.
                centre, score = self.centres.pop(), self.scores.pop()
            if loss[0] == "ambiguous" and self._contact is not None:
                # Latched: the loss began where the track met the still head.
                while len(self.centres) > self._contact[0]:
                    centre, score = self.centres.pop(), self.scores.pop()
            # Frames just before, already matched worse than usual, were the loss beginning.
            while len(self.centres) > 1 and len(self.centres) - 1 in self._soft_dips:
                centre, score = self.centres.pop(), self.scores.pop()
            self._stop(self._inside(centre), score, *loss)
            return False

        if self._dip_at is None:
            self._baseline.append(score)
        self._neighbours = [
            (seen, other)
            for seen, other in self._neighbours
            if seen > index - NEIGHBOUR_MEMORY_FRAMES
        ] + [
            (index, other) for other in self._head_like_peaks(response, (peak_x, peak_y), predicted)
        ]
        if self.recentre:
            centre = self._recentred(image, centre)
        self.centres.append(centre)
        self.scores.append(score)
        self._angle += turn
        self._last_box = _patch(image, centre, self._box_size)
        return True

    def _judge(
        self,
        index: int,
        centre: np.ndarray,
        score: float,
        value: float,
        adjusted: np.ndarray,
        peak: tuple[int, int],
    ) -> tuple[str, str] | None:
        """(code, message) of the first loss rule the match breaks, or None: keep it."""
        if score < self.loss_threshold:
            return "low_score", (
                f"the head no longer matches its template at frame {index} (score "
                f"{score:.2f}, below {self.loss_threshold:.2f}): it vanished, left the focus "
                "or changed beyond recognition"
            )
        if self._edge_hits >= MAX_EDGE_HITS:
            return "outran_window", (
                f"the head moved further than the tracker looks ({self.search_radius} px "
                f"from where it was expected) at frame {index}"
            )
        if self._near_border(centre):
            return "left_frame", self._left_message(index)
        dipped = self._dip_at is not None
        history = self._baseline
        self._dip_at = None
        if len(history) >= BASELINE_MIN_FRAMES:
            # statistics.median: a dozen floats, far cheaper than numpy's on tiny arrays.
            median = statistics.median(history)
            spread = statistics.median(abs(value - median) for value in history)
            sigma = max(1.4826 * spread, BASELINE_SIGMA_FLOOR)
            soft = score < median - SOFT_SIGMAS * sigma
            hard = score < median - BASELINE_SIGMAS * sigma or score < BASELINE_FRACTION * median
            if soft:
                # A slight dip counts only beside a still head (a cell of a cluster the track
                # may slip onto); a deep one beside a head swimming in too.
                crowd = self._crowded(index, centre, still_only=not hard)
                if crowd is not None:
                    return "ambiguous", (
                        f"at frame {index} the match fell to {score:.2f} (this head's own "
                        f"{median:.2f} so far) with another head {crowd:.0f} px away: the "
                        "tracker cannot tell which one is the target"
                    )
                self._soft_dips.add(index)
            if hard:
                near_edge = self._near_border(centre, self.scale.head_length_px)
                if not dipped and not near_edge:
                    # One frame, away from the border (where a drop is the head leaving):
                    # kept, on probation.
                    self._dip_at = index
                    return self._other_rules(index, centre, value, adjusted, peak)
                return "score_drop", (
                    f"the match fell to {score:.2f} at frame {index} and stayed there, far "
                    f"below this head's own {median:.2f} so far: it is probably hidden by, or "
                    "confused with, something else"
                )
        return self._other_rules(index, centre, value, adjusted, peak)

    def _other_rules(
        self,
        index: int,
        centre: np.ndarray,
        value: float,
        adjusted: np.ndarray,
        peak: tuple[int, int],
    ) -> tuple[str, str] | None:
        """The rules after the score's: ambiguity, a still neighbour, the path."""
        rival = self._rival(adjusted, peak)
        if rival is not None and rival[0] >= value - AMBIGUITY_MARGIN:
            return "ambiguous", (
                f"at frame {index} another object {rival[1]:.0f} px from the head matches "
                f"nearly as well ({rival[0]:.2f} against {value:.2f}): the tracker cannot "
                "tell which one is the target"
            )
        is_still = self._still_mask()
        reach = self.scale.footprint_px
        for (seen, other), is_one in zip(self._neighbours, is_still, strict=True):
            met = math.hypot(centre[0] - other[0], centre[1] - other[1]) <= reach
            if not is_one and seen == index - 1 and met:
                return "ambiguous", (
                    f"at frame {index} the match landed where another head was in frame "
                    f"{seen}, {np.linalg.norm(other - self.centres[seen]):.0f} px from the "
                    "target: the tracker cannot tell which one is the target"
                )
        still = [n for n, keep in zip(self._neighbours, is_still, strict=True) if keep]
        latched = self._latched(index, centre, still)
        if latched is not None:
            return latched
        return self._implausible(index, centre)

    def _latched(
        self, index: int, centre: np.ndarray, still: list[tuple[int, np.ndarray]]
    ) -> tuple[str, str] | None:
        """The ``ambiguous`` loss of a track that met a still neighbour and stopped there."""
        if self._contact is None:
            for _, other in still:
                if float(np.linalg.norm(centre - other)) <= self.scale.footprint_px:
                    steps = np.diff(np.array(self.centres[-(VELOCITY_FRAMES + 1) :]), axis=0)
                    before = float(np.linalg.norm(steps, axis=1).mean()) if len(steps) else 0.0
                    self._contact = (index, before, float(np.linalg.norm(other - centre)))
                    break
            return None
        met, before, _ = self._contact
        # Net displacement per frame since the meeting: a still head's jitter cancels out.
        moved = float(np.linalg.norm(centre - self.centres[met])) / (index - met)
        if moved < CONTACT_STOP_FRACTION * before:
            return "ambiguous", (
                f"at frame {met} the head met a still head and the track stopped there: it "
                "probably latched onto that cell; the tracker cannot tell which one is the target"
            )
        if index - met >= CONTACT_FRAMES:
            self._contact = None  # it swam on
        return None

    def _crowded(self, index: int, centre: np.ndarray, *, still_only: bool) -> float | None:
        """The distance (px) of the nearest other head within ``CROWD_HEADS`` head lengths of
        the target: a still one, or (unless ``still_only``) one the last frame's match saw
        swimming beside it; None when no head is that close."""
        reach = CROWD_HEADS * self.scale.head_length_px
        footprint = self.scale.footprint_px
        # How far each remembered head lay from the target in the frame it was seen: one seen
        # as far in an earlier frame too keeps beside the target (its own midpiece and tail,
        # whose side changes with the beat) instead of coming closer.
        gaps = [
            (seen, float(np.linalg.norm(other - self.centres[seen])))
            for seen, other in self._neighbours
        ]
        nearest: float | None = None
        for (seen, other), is_still in zip(self._neighbours, self._still_mask(), strict=True):
            if not (is_still or (seen == index - 1 and not still_only)):
                continue
            gap = float(np.linalg.norm(other - self.centres[seen]))
            if any(when < seen and abs(gap - earlier) <= footprint for when, earlier in gaps):
                continue  # it kept beside the target: the target's own midpiece

            # A moving head is judged by where it was against where the target was then.
            place = centre if is_still else self.centres[-1]
            distance = float(np.linalg.norm(other - place))
            if distance <= reach and (nearest is None or distance < nearest):
                nearest = distance
        return nearest

    def _still_mask(self) -> list[bool]:
        """Per remembered neighbour, whether it was seen at the same place (within a
        footprint) in another frame too: a still cell. A swimming one has moved on from where
        it was seen, and the target passing there later is no confusion."""
        if not self._neighbours:
            return []
        frames = np.array([seen for seen, _ in self._neighbours])
        places = np.array([place for _, place in self._neighbours])
        gaps = np.hypot(*(places[:, None, :] - places[None, :, :]).transpose(2, 0, 1))
        close = (gaps <= self.scale.footprint_px) & (frames[:, None] != frames[None, :])
        return [bool(row) for row in close.any(axis=1)]

    def _blank(self, image: np.ndarray, x: int, y: int) -> None:
        """Set the footprint (a disc) around pixel (x, y) of ``image`` to -inf, in place."""
        r = self._disc.shape[0] // 2
        height, width = image.shape
        y0, y1, x0, x1 = max(y - r, 0), min(y + r + 1, height), max(x - r, 0), min(x + r + 1, width)
        disc = self._disc[y0 - (y - r) : y1 - (y - r), x0 - (x - r) : x1 - (x - r)]
        image[y0:y1, x0:x1][disc] = -np.inf

    def _head_like_peaks(
        self, response: np.ndarray, peak: tuple[int, int], origin: np.ndarray
    ) -> list[np.ndarray]:
        """Frame positions of up to ``NEIGHBOUR_PEAKS`` other peaks of ``response`` (beyond the
        footprint of ``peak`` and of each other) that score like a head (>= loss_threshold);
        ``origin`` is the frame position of the response's centre."""
        found: list[np.ndarray] = []
        masked = response.copy()
        x, y = peak
        for _ in range(NEIGHBOUR_PEAKS):
            self._blank(masked, x, y)
            _, value, _, (x, y) = cv2.minMaxLoc(masked)
            if not value >= self.loss_threshold:
                break
            # Closer than a head length to the target is the target's own midpiece or halo.
            if math.hypot(x - peak[0], y - peak[1]) >= self.scale.head_length_px:
                found.append(origin + np.array([x, y], dtype=np.float64) - self.search_radius)
        return found

    def _rival(self, adjusted: np.ndarray, peak: tuple[int, int]) -> tuple[float, float] | None:
        """(score less prior, distance px) of the best peak outside the head's footprint."""
        masked = np.array(adjusted, dtype=np.float32)
        self._blank(masked, *peak)
        _, value, _, (x, y) = cv2.minMaxLoc(masked)
        if not math.isfinite(value):
            return None
        return float(value), math.hypot(x - peak[0], y - peak[1])

    def _implausible(self, index: int, centre: np.ndarray) -> tuple[str, str] | None:
        step = (centre - self.centres[-1]) * self.pixel_size_um  # µm
        if self.fps is not None:
            speed = float(np.linalg.norm(step)) * self.fps
            if speed > MAX_SPEED_UM_S:
                return "implausible_jump", (
                    f"the track jumps {np.linalg.norm(step):.1f} µm into frame {index} "
                    f"({speed:.0f} µm/s, more than the {MAX_SPEED_UM_S:.0f} µm/s a sperm "
                    "swims): it probably jumped to another cell"
                )
        if len(self.centres) >= 2:
            previous = (self.centres[-1] - self.centres[-2]) * self.pixel_size_um
            change = float(np.linalg.norm(step - previous))
            if change > MAX_STEP_CHANGE_UM:
                return "implausible_jump", (
                    f"the track's step changes by {change:.1f} µm from frame {index - 1} to "
                    f"{index} (more than the {MAX_STEP_CHANGE_UM:.0f} µm a beating head "
                    "moves): it probably jumped to another cell"
                )
        return None

    def _near_border(self, centre: np.ndarray, extra: float = 0.0) -> bool:
        width, height = self._frame_size
        margin = self.scale.border_margin_px + extra
        x, y = float(centre[0]), float(centre[1])
        return not (margin <= x <= width - 1 - margin and margin <= y <= height - 1 - margin)

    def _inside(self, centre: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """``centre`` moved into the frame, at least ``margin`` px from its edges."""
        width, height = self._frame_size
        return np.array(
            [
                min(max(float(centre[0]), margin), width - 1.0 - margin),
                min(max(float(centre[1]), margin), height - 1.0 - margin),
            ]
        )

    def _left_message(self, index: int) -> str:
        return (
            f"the head reached the edge of the frame at frame {index}: it is swimming out of "
            "the field"
        )

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
        scale = self.scale
        head = _head_centroid(frame, centre, self._polarity, scale.recentre_half_size)
        distance = float(np.linalg.norm(head - centre))
        if scale.recentre_guard_px < distance <= scale.recentre_max_shift_px:
            return head
        return centre

    def _stop(self, centre: np.ndarray, score: float, code: str, message: str) -> None:
        self.lost_at = len(self.centres)
        self.loss = Loss(code, message)
        self.centres.append(centre)
        self.scores.append(score)


def track_target(
    frames: Iterable[np.ndarray],
    start_xy: tuple[float, float],
    *,
    template_size: int | None = None,
    search_radius: int | None = None,
    recentre: bool = True,
    loss_threshold: float = LOSS_THRESHOLD,
    pixel_size_um: float = DEFAULT_PIXEL_SIZE_UM,
    fps: float | None = None,
    head_length_um: float = HEAD_LENGTH_UM,
    head_width_um: float = HEAD_WIDTH_UM,
) -> TrackResult:
    """Follow the head that lies at ``start_xy`` in the first of ``frames`` (H, W) uint8.

    ``template_size`` (odd, px) is the side of the matched box: a little more than the head
    (13 px for a head of about 9 x 6 px at 0.5 µm/px), so the tail, which bends from frame to
    frame, weighs little. ``search_radius`` (px) is how far from the predicted position the
    head may be found in the next frame. Both default to the sizes derived from
    ``pixel_size_um`` and the head size (`annotation.ingest.scale`). Reading stops at the frame
    where the target is lost. See the module docstring for the method.
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
                pixel_size_um=pixel_size_um,
                fps=fps,
                head_length_um=head_length_um,
                head_width_um=head_width_um,
            )
        elif not tracker.update(frame):
            break
        if tracker.lost:
            break
    if tracker is None:
        return TrackResult(np.zeros((0, 2)), np.zeros(0), lost_at=None)
    return tracker.result()
