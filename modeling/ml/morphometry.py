"""Head morphometry of a clip, measured the way CASA-Morph systems measure it: plain numbers
in micrometres that the model's head can use beside the kinematics.

A small backbone trained from scratch on a few hundred clips does not learn the shape of a
head a few pixels across, yet graders look at it (shape, vacuoles). These features give the
model's head those measures directly (``MORPHOMETRY_FEATURES``, in this order):

- ``area``: the segmented head (µm²);
- ``length``, ``width``: full axes of the ellipse with the head's second moments (µm);
- ``ellipticity``: length / width;
- ``roughness``: perimeter² / (4 π area): 1 for a disc, larger for a long or ragged outline;
- ``solidity``: area / area of its convex hull: 1 for a convex head;
- ``asymmetry``: |skewness| of the head along its long axis: 0 for an oval, more for a pear;
- ``darkness``: the head's mean contrast over its peak contrast (pale spots lower it);
- ``spots``: vacuoles: the summed excess depth of the small spots inside the head that stand
  out from the head's own texture (µm² times the fraction of the peak contrast);
- ``spot_depth``: the deepest such spot, as a fraction of the peak;
- ``texture``: the standard deviation of the contrast inside the head over its peak;
- ``contrast``: the head's peak contrast over the background noise (focus, staining).

Scale. Every size the method uses is a size on the head: it is given in pixels at the
reference scale of ``annotation.ingest.scale`` (a 4.6 x 3.0 µm head at 0.5 µm/px, 9.2 x 6 px,
the generator's default) and multiplied by that module's factor for the frame's pixel size and
head size (``pixel_size_um``, ``head_length_um``, ``head_width_um``; a lab's settings
``MERSV_HEAD_LENGTH_UM``/``WIDTH_UM`` are the head size). Lengths and areas are reported in
µm and µm² (px times the pixel size), so the same head imaged at 0.5, 0.25 or 0.17 µm/px gives
the same measures. At the default pixel size the windows are today's. Training and inference
pass each clip's own pixel size (the export's ``pixel_size_um``; ``modeling.ml.data``,
``modeling.ml.train.predict``); a model records the range it was trained on
(:func:`pixel_size_summary`) and a clip far outside it is flagged (:func:`pixel_size_outside`).

How, per frame: the crops are centred on the tracked head. The background level is the crop's
median, the noise its MAD or, if smaller, the MAD of neighbouring pixels' differences over
sqrt 2 (a head that fills much of the crop widens the plain MAD). The window around the
centre is upsampled so that the expected head is at least ``MIN_HEAD_LENGTH_UPSAMPLED`` px
long (bicubic; whole-pixel masks of a 9 x 6 px head would quantise every measure) and
smoothed by a quarter of a micrometre. The head is segmented on its local contrast, the
absolute difference from the background, so a head that is dark, bright, or both (an
unstained head under relief optics: a dark and a bright half, a pale middle inside a dark
rim) is taken whole:

1. the strong part: the map above its Otsu level within the window (kept between
   ``MIN_LEVEL`` noise SDs and ``MASK_LEVEL`` of the peak);
2. the grown part: what connects to the strong part above ``GROW_LEVEL`` of the peak
   (hysteresis: the faint half of a relief head);
3. each is closed by a disc half the head's width (joining a rim or a relief head's two
   halves), filled, opened by a disc half the head's width (cutting the midpiece and tail),
   and its component nearest the centre taken, filled (a vacuole is part of the head);
4. the grown head wins when it is ``HALF_HEAD_GAIN`` times larger than the strong one (the
   strong part was half a head); otherwise the strong one (a head of even contrast, stained
   or phase contrast, whose outline growing would only push out into the blur of its edge).

The head's polarity (dark in phase contrast, bright in other optics) is the sign of its mean
contrast; ``darkness``, ``texture`` and the vacuoles are on the contrast of that polarity.
Moments, perimeter and hull do not depend on the head's orientation.

Vacuoles: inside the head less its rim, the morphological black-hat of the contrast (the
dips narrower than ``SPOT_PX``: a spot paler than a dark head, or darker than a bright one)
measures how far a spot departs from the head's surrounding texture; a spot counts where it
dips by more than ``SPOT_FLOOR`` noise SDs and by more than ``SPOT_TEXTURE`` robust SDs above
the head's typical dip (the rest is the head's own texture, not a vacuole).

Known limits (seen on MHSMA and on drawn heads): a head whose faint half stays below
``GROW_LEVEL`` of the peak is still measured by its strong half (a few in a hundred MHSMA
images, by eye); on a relief head the valley between its dark and bright halves can score as
a spot.

A clip's feature is the median over its frames, which ignores the odd frame where the head
touches another cell. A frame without a head (a flat patch) gives nothing; a clip without any
gives ``NO_HEAD``: finite values, never NaN.

For the model, the features are standardised on the training split and joined by the head's
abnormality (:func:`standardised_inputs`); standardisation makes the model's inputs the same
whether the clips' lengths are in µm or px. Plain numpy/OpenCV (torch for the model's inputs),
no Django.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import torch

from annotation.ingest.scale import (
    DEFAULT_PIXEL_SIZE_UM,
    HEAD_LENGTH_UM,
    HEAD_WIDTH_UM,
    REFERENCE_HEAD_LENGTH_PX,
    tracking_scale,
)

# The outline's measures. A head is abnormal when any of them lies far from the typical head
# in either direction (too small or too large, too round or too elongated: the WHO limits on
# head length and width are two-sided), which no weighted sum of the measures expresses; so
# the model also takes their "abnormality" (:func:`abnormality`).
SHAPE_FEATURES: tuple[str, ...] = (
    "area",
    "length",
    "width",
    "ellipticity",
    "roughness",
    "solidity",
    "asymmetry",
)
MORPHOMETRY_FEATURES: tuple[str, ...] = (
    *SHAPE_FEATURES,
    "darkness",
    "spots",
    "spot_depth",
    "texture",
    "contrast",
)
# The unit of each feature, for documentation and reports.
FEATURE_UNITS: dict[str, str] = {
    "area": "µm²",
    "length": "µm",
    "width": "µm",
    "spots": "µm²·fraction of peak",
} | {name: "1" for name in MORPHOMETRY_FEATURES if name not in ("area", "length", "width", "spots")}
# What the model's head takes: the standardised features, then the standardised abnormality.
MORPHOMETRY_INPUTS: tuple[str, ...] = (*MORPHOMETRY_FEATURES, "abnormality")
_SHAPE_INDEX = [MORPHOMETRY_FEATURES.index(name) for name in SHAPE_FEATURES]
# What a clip without a visible head gets.
NO_HEAD: dict[str, float] = {name: 0.0 for name in MORPHOMETRY_FEATURES} | {
    "ellipticity": 1.0,
    "roughness": 1.0,
    "solidity": 1.0,
}

# Sizes on the head, in px at the reference scale (a 9.2 x 6 px head); see the docstring.
SEARCH_RADIUS_PX = 12  # the head lies within this of the crop's centre (tracking error)
NEAR_CENTRE_PX = 6  # the head's peak contrast is looked for this close to the centre
SMOOTHING_PX = 0.5  # Gaussian sigma of the contrast map: the noise, not the shape
OPENING_PX = 3.0  # diameter of the disc that cuts the midpiece and tail: half the head width
CLOSING_PX = 4.5  # diameter of the disc that closes a rim or a relief head's halves: half its width
SPOT_PX = 3.0  # diameter of the largest spot counted as a vacuole
RIM_PX = 1.0  # the rim left out of the vacuole search (the head's own edge is a dip)
# The expected head is upsampled to at least this many px long (4 x at the reference scale).
MIN_HEAD_LENGTH_UPSAMPLED = 4 * REFERENCE_HEAD_LENGTH_PX
MIN_CONTRAST = 4.0  # a head stands out from the background by this many noise SDs
MIN_LEVEL = 2.0  # the outline's level: at least this many noise SDs (after smoothing)...
MASK_LEVEL = 0.5  # ...and at most this fraction of the peak contrast (Otsu's level between)
GROW_LEVEL = 0.25  # the faint side of a head joins the strong side down to this fraction
HALF_HEAD_GAIN = 1.5  # ...when that makes the head this much larger (it was half a head)
SPOT_FLOOR = 0.5  # departures shallower than this many noise SDs are the noise's own
SPOT_TEXTURE = 3.0  # ...or than this many robust SDs of the head's own departures


def _disc(diameter_px: float) -> np.ndarray:
    size = max(3, round(diameter_px) | 1)  # odd
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold of ``values`` (any float range): the level that best splits them into
    two classes (largest between-class variance), on a 256-bin histogram."""
    lo, hi = float(values.min()), float(values.max())
    if not hi > lo:
        return hi
    counts, edges = np.histogram(values, bins=256, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(counts).astype(np.float64)  # class 0: bins <= i
    mass = np.cumsum(counts * centres)
    total, total_mass = weight[-1], mass[-1]
    w1 = total - weight
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total_mass * weight - total * mass) ** 2 / (weight * w1)
    between[~np.isfinite(between)] = -1.0
    return float(edges[int(np.argmax(between)) + 1])


def _check_positive(name: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive number, not {value}")


def frame_morphometry(
    frame: np.ndarray,
    *,
    pixel_size_um: float = DEFAULT_PIXEL_SIZE_UM,
    head_length_um: float = HEAD_LENGTH_UM,
    head_width_um: float = HEAD_WIDTH_UM,
) -> dict[str, float] | None:
    """The morphometry of the head at the centre of one grey ``frame`` (H, W), uint8 or float
    in any range, imaged at ``pixel_size_um`` µm/px, the expected head being
    ``head_length_um`` x ``head_width_um``; None when no head stands out from the background
    near the centre. Lengths in µm, areas in µm² (see the module docstring)."""
    _check_positive("pixel_size_um", pixel_size_um)
    s = tracking_scale(
        pixel_size_um, head_length_um=head_length_um, head_width_um=head_width_um
    ).factor
    image = np.asarray(frame, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"a frame must have shape (H, W), got {image.shape}")
    level = float(np.median(image))
    # The noise: the crop's MAD, or, where a head fills much of the crop (and widens the
    # MAD), the MAD of neighbouring pixels' differences (over sqrt 2), which a head's smooth
    # shading hardly moves.
    spread = float(np.median(np.abs(image - level)))
    steps = np.abs(np.diff(image, axis=1)).ravel() if image.shape[1] > 1 else np.zeros(1)
    noise = 1.4826 * min(spread, float(np.median(steps)) / math.sqrt(2))
    noise = max(noise, 1e-3 * max(abs(level), 1.0))  # a noiseless frame: no division by 0
    h, w = image.shape
    r, cy, cx = round(SEARCH_RADIUS_PX * s), h // 2, w // 2
    window = image[max(cy - r, 0) : cy + r + 1, max(cx - r, 0) : cx + r + 1] - level
    wy, wx = cy - max(cy - r, 0), cx - max(cx - r, 0)  # the crop's centre in the window
    u = max(1, math.ceil(MIN_HEAD_LENGTH_UPSAMPLED / (REFERENCE_HEAD_LENGTH_PX * s) - 1e-9))
    signed = cv2.resize(window, None, fx=u, fy=u, interpolation=cv2.INTER_CUBIC)
    signed = cv2.GaussianBlur(signed, (0, 0), SMOOTHING_PX * s * u)
    magnitude = np.abs(signed)
    uy, ux = wy * u + u // 2, wx * u + u // 2
    n = max(round(NEAR_CENTRE_PX * s * u), 1)
    peak = float(magnitude[max(uy - n, 0) : uy + n, max(ux - n, 0) : ux + n].max())
    if not peak > MIN_CONTRAST * noise:
        return None
    threshold = min(max(_otsu(magnitude), MIN_LEVEL * noise), MASK_LEVEL * peak)
    strong = _head_region((magnitude > threshold).astype(np.uint8), ux, uy, size_px=s * u)
    grown = _head_region(
        _hysteresis(magnitude, high=threshold, low=max(GROW_LEVEL * peak, MIN_LEVEL * noise)),
        ux,
        uy,
        size_px=s * u,
    )
    # A head whose strong contrast is one half of it (relief optics, a dark rim on one side)
    # grows into its faint half; a head of even contrast keeps the outline at its own level
    # (growing would only push that outline out into the blur of its edge).
    head_u8 = grown if grown.sum() > HALF_HEAD_GAIN * strong.sum() else strong
    head = head_u8.astype(bool)
    contours, _ = cv2.findContours(head_u8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    outline = max(contours, key=len)

    px = pixel_size_um / u  # µm per upsampled px
    area = float(head.sum()) * px**2
    ys, xs = np.nonzero(head)
    points = np.stack([xs, ys], axis=1) * px  # (N, 2) µm
    centred = points - points.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred / len(points))  # ascending
    # An ellipse with semi-axis a has variance a² / 4 along it.
    length = 4 * math.sqrt(max(float(eigenvalues[1]), 0.0))
    width = max(4 * math.sqrt(max(float(eigenvalues[0]), 0.0)), px)
    along = centred @ eigenvectors[:, 1]
    spread = float(along.std())
    asymmetry = abs(float((along**3).mean())) / spread**3 if spread > 0 else 0.0

    perimeter = max(cv2.arcLength(outline, closed=True) * px, 1e-9)
    hull = np.zeros_like(head_u8)
    cv2.fillConvexPoly(hull, cv2.convexHull(outline), 1)
    # The head's polarity: dark heads (phase contrast) have negative contrast.
    polarity = 1.0 if float(signed[head].mean()) >= 0 else -1.0
    contrast = polarity * signed
    inside = contrast[head]
    spots, spot_depth = _vacuoles(contrast, head_u8, noise=noise, size_px=s * u)
    return {
        "area": area,
        "length": length,
        "width": width,
        "ellipticity": length / width,
        "roughness": perimeter**2 / (4 * math.pi * area),
        "solidity": min(float(head.sum()) / max(float(hull.sum()), 1.0), 1.0),
        "asymmetry": asymmetry,
        "darkness": float(inside.mean()) / peak,
        "spots": spots * px**2 / peak,
        "spot_depth": spot_depth / peak,
        "texture": float(inside.std()) / peak,
        "contrast": peak / noise,
    }


def _head_region(mask: np.ndarray, ux: int, uy: int, *, size_px: float) -> np.ndarray:
    """The head in a thresholded contrast ``mask`` (uint8 0/1), as a filled uint8 mask: the
    mask closed (joining a rim or the halves of a relief head), filled, opened (cutting the
    midpiece and tail), and its component nearest the centre (``ux``, ``uy``), not a
    neighbour or debris. ``size_px``: px per reference px."""
    mask = _filled(cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _disc(CLOSING_PX * size_px)))
    opened = cv2.morphologyEx(mask, cv2.MORPH_OPEN, _disc(OPENING_PX * size_px))
    if opened.any():
        mask = opened  # a head too small to survive the opening keeps its raw mask
    count, labels, _, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count < 2:
        return mask
    label = 1 + int(np.argmin(np.hypot(centroids[1:, 0] - ux, centroids[1:, 1] - uy)))
    return _filled((labels == label).astype(np.uint8))


def _hysteresis(values: np.ndarray, *, high: float, low: float) -> np.ndarray:
    """uint8 0/1: where ``values`` > ``low`` in a component that reaches above ``high``."""
    weak = (values > low).astype(np.uint8)
    count, labels = cv2.connectedComponents(weak, connectivity=8)
    strong = np.unique(labels[values > high])
    keep = np.zeros(count, np.uint8)
    keep[strong[strong > 0]] = 1
    return keep[labels]


def _filled(mask: np.ndarray) -> np.ndarray:
    """``mask`` (uint8 0/1) with every hole filled (each outer contour drawn solid)."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return cv2.drawContours(np.zeros_like(mask), contours, -1, 1, thickness=-1)


def _vacuoles(
    contrast: np.ndarray, head_u8: np.ndarray, *, noise: float, size_px: float
) -> tuple[float, float]:
    """(summed excess depth, in contrast x upsampled px², and the deepest dip) of the spots
    inside the head whose contrast dips below the head's surrounding texture: narrower than
    ``SPOT_PX`` (``size_px``: upsampled px per reference px) and deeper than the floor."""
    spot = _disc(SPOT_PX * size_px)
    # How far each pixel lies below the surface that closing leaves: a spot paler than a dark
    # head (darker than a bright one), measured against the head around it.
    dips = cv2.morphologyEx(contrast, cv2.MORPH_CLOSE, spot) - contrast
    inner = cv2.erode(head_u8, _disc(RIM_PX * size_px)).astype(bool)
    if not inner.any():
        return 0.0, 0.0
    inside = dips[inner]
    typical = float(np.median(inside))
    texture = 1.4826 * float(np.median(np.abs(inside - typical)))
    floor = max(SPOT_FLOOR * noise, typical + SPOT_TEXTURE * texture)
    excess = np.clip(inside - floor, 0.0, None)
    if not excess.any():
        return 0.0, 0.0
    return float(excess.sum()), float(inside.max())


def clip_morphometry(
    frames: np.ndarray,
    *,
    pixel_size_um: float = DEFAULT_PIXEL_SIZE_UM,
    head_length_um: float = HEAD_LENGTH_UM,
    head_width_um: float = HEAD_WIDTH_UM,
) -> np.ndarray:
    """The morphometry of a clip's head, ``(len(MORPHOMETRY_FEATURES),)`` float32: each
    feature's median over the frames (T, H, W) where a head was found (``NO_HEAD`` if none).
    The scale arguments: see ``frame_morphometry``."""
    frames = np.asarray(frames)
    if frames.ndim != 3:
        raise ValueError(f"a clip's frames must have shape (T, H, W), got {frames.shape}")
    found = (
        frame_morphometry(
            frame,
            pixel_size_um=pixel_size_um,
            head_length_um=head_length_um,
            head_width_um=head_width_um,
        )
        for frame in frames
    )
    measured = [m for m in found if m is not None]
    if not measured:
        return np.array([NO_HEAD[name] for name in MORPHOMETRY_FEATURES], dtype=np.float32)
    table = np.array([[m[name] for name in MORPHOMETRY_FEATURES] for m in measured])
    return np.median(table, axis=0).astype(np.float32)


def abnormality(z: torch.Tensor) -> torch.Tensor:
    """How far each head's outline lies from the typical head, (N,), from its standardised
    morphometry ``z`` (N, K): the mean over ``SHAPE_FEATURES`` of log(1 + |z|) (a soft count
    of the measures outside the normal range; the log keeps one extreme measure from
    outweighing the others)."""
    return torch.log1p(z[:, _SHAPE_INDEX].abs()).mean(dim=1)


def standardised_inputs(
    values: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """The model's morphometry inputs (N, K + 1) (``MORPHOMETRY_INPUTS``) from the clips'
    morphometry ``values`` (N, K) and a :func:`morphometry_standardisation` (K + 1 each)."""
    k = len(MORPHOMETRY_FEATURES)
    z = (values - shift[:k]) / scale[:k]  # (N, K)
    a = (abnormality(z) - shift[k]) / scale[k]  # (N,)
    return torch.cat([z, a.unsqueeze(1)], dim=1)


def morphometry_standardisation(
    values: np.ndarray,
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The shift and scale, ``len(MORPHOMETRY_INPUTS)`` each, that standardise the
    morphometry ``values`` (N, K) of N clips (e.g. the training split) and their abnormality:
    each feature's median (the typical head, from which abnormality counts) and standard
    deviation, then the mean and standard deviation of the abnormality. Whatever does not
    vary gets scale 1."""
    values = np.asarray(values, dtype=np.float64)
    k = len(MORPHOMETRY_FEATURES)
    if values.ndim != 2 or values.shape[1] != k or len(values) == 0:
        raise ValueError(f"need morphometry of shape (N >= 1, {k}), got {values.shape}")

    def spread(std: np.ndarray) -> list[float]:
        return [float(s) if s > 1e-6 else 1.0 for s in np.atleast_1d(std)]

    shift = [float(m) for m in np.median(values, axis=0)]
    scale = spread(values.std(axis=0))
    z = (torch.from_numpy(values) - torch.tensor(shift, dtype=torch.float64)) / torch.tensor(
        scale, dtype=torch.float64
    )
    a = abnormality(z).numpy()
    return (*shift, float(a.mean())), (*scale, *spread(a.std()))


def clips_morphometry(
    frames: np.ndarray,
    *,
    pixel_size_um: float | Sequence[float] | np.ndarray = DEFAULT_PIXEL_SIZE_UM,
) -> np.ndarray:
    """:func:`clip_morphometry` of every clip of ``frames`` (N, T, H, W): (N, K) float32.
    ``pixel_size_um``: one pixel size for all clips, or one per clip (N,)."""
    frames = np.asarray(frames)
    if frames.ndim != 4:
        raise ValueError(f"clips must have shape (N, T, H, W), got {frames.shape}")
    sizes = np.broadcast_to(np.asarray(pixel_size_um, dtype=np.float64), (len(frames),))
    rows = [
        clip_morphometry(clip, pixel_size_um=float(size))
        for clip, size in zip(frames, sizes, strict=True)
    ]
    return np.stack(rows) if rows else np.zeros((0, len(MORPHOMETRY_FEATURES)), np.float32)


# --------------------------------------------------------------------------------------------
# The pixel sizes a model was trained on

# A clip whose pixel size lies more than this factor outside the range a model was trained on
# is flagged in its prediction: its head covers 25 % more (or fewer) pixels than any head the
# model saw, more than the spread of normal human head lengths (WHO 2021: 4.0-5.5 µm, about
# +-16 % around 4.7 µm). Chosen before any run; not tuned.
PIXEL_SIZE_TOLERANCE = 1.25


def pixel_size_summary(sizes: Sequence[float] | np.ndarray, *, n_defaulted: int) -> dict[str, Any]:
    """What a model file records of the pixel sizes (µm/px) of its training clips: their
    range and median, how many clips there were, and how many of them had no recorded pixel
    size and were measured at the default (``default_um``)."""
    values = np.asarray(sizes, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no pixel sizes to summarise")
    return {
        "min_um": float(values.min()),
        "max_um": float(values.max()),
        "median_um": float(np.median(values)),
        "n_clips": int(values.size),
        "n_defaulted": int(n_defaulted),
        "default_um": DEFAULT_PIXEL_SIZE_UM,
    }


def pixel_size_outside(summary: dict[str, Any] | None, pixel_size_um: float) -> str | None:
    """Why a clip at ``pixel_size_um`` lies far outside the pixel sizes a model was trained
    on (``pixel_size_summary``; more than ``PIXEL_SIZE_TOLERANCE`` beyond its range), or
    None when it does not (or the model recorded none: files saved before it did)."""
    if not summary:
        return None
    low, high = float(summary["min_um"]), float(summary["max_um"])
    if low / PIXEL_SIZE_TOLERANCE <= pixel_size_um <= high * PIXEL_SIZE_TOLERANCE:
        return None
    return (
        f"pixel size {pixel_size_um:g} µm/px lies far outside the {low:g}-{high:g} µm/px the "
        f"model was trained on (more than x{PIXEL_SIZE_TOLERANCE:g}): its heads look "
        f"{'larger' if pixel_size_um < low else 'smaller'} in pixels than any it saw"
    )
