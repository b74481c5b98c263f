"""Head morphometry of a clip, measured the way CASA-Morph systems measure it: plain numbers
the model's head can use beside the kinematics.

A small backbone trained from scratch on a few hundred clips does not learn the shape of a
head a few pixels across, yet graders look at it (shape, vacuoles). These features give the
model's head those measures directly (``MORPHOMETRY_FEATURES``, in this order):

- ``area``: the segmented head (px²);
- ``length``, ``width``: full axes of the ellipse with the head's second moments (px);
- ``ellipticity``: length / width;
- ``roughness``: perimeter² / (4 π area): 1 for a disc, larger for a long or ragged outline;
- ``solidity``: area / area of its convex hull: 1 for a convex head;
- ``asymmetry``: |skewness| of the head along its long axis: 0 for an oval, more for a pear;
- ``darkness``: the head's mean contrast over its peak contrast (pale spots lower it);
- ``spots``: the summed depth of small pale spots inside the head (a morphological black-hat
  of the contrast map, less half the noise SD), px² times the fraction of the peak: vacuoles;
- ``spot_depth``: the deepest such spot, as a fraction of the peak;
- ``texture``: the standard deviation of the contrast inside the head over its peak;
- ``contrast``: the head's peak contrast over the background noise (focus, staining).

Lengths and areas are in pixels of the crop: the clips of one dataset share a magnification,
and the model standardises every feature on its training split anyway.

How, per frame: the crops are centred on the tracked head. The background level and noise are
the crop's median and MAD. The head's polarity (dark in phase contrast, bright in other
optics) is the sign of the centre's contrast. The window around the centre is upsampled
``UPSAMPLE`` times (bicubic; the head is only ~9 x 6 px, so whole-pixel masks would quantise
every measure), thresholded at half the head's peak contrast and opened with a disc that cuts
the thin midpiece; the head is the connected component nearest the centre, its holes filled
(a vacuole paler than half the peak is still part of the head). Moments,
perimeter and hull do not depend on the head's orientation. A clip's feature is the median
over its frames, which ignores the odd frame where the head touches another cell. A frame
without a head (a flat patch) gives nothing; a clip without any gives ``NO_HEAD``: finite
values, never NaN.

For the model, the features are standardised on the training split and joined by the head's
abnormality (:func:`standardised_inputs`). Plain numpy/OpenCV (torch for the model's inputs),
no Django.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

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
# What the model's head takes: the standardised features, then the standardised abnormality.
MORPHOMETRY_INPUTS: tuple[str, ...] = (*MORPHOMETRY_FEATURES, "abnormality")
_SHAPE_INDEX = [MORPHOMETRY_FEATURES.index(name) for name in SHAPE_FEATURES]
# What a clip without a visible head gets.
NO_HEAD: dict[str, float] = {name: 0.0 for name in MORPHOMETRY_FEATURES} | {
    "ellipticity": 1.0,
    "roughness": 1.0,
    "solidity": 1.0,
}

SEARCH_RADIUS_PX = 12  # the head lies within this of the crop's centre (tracking error)
NEAR_CENTRE_PX = 6  # the head's peak contrast is looked for this close to the centre
UPSAMPLE = 4
MASK_LEVEL = 0.5  # the head's outline: where its contrast falls to this fraction of the peak
MIN_CONTRAST = 4.0  # a head stands out from the background by this many noise SDs
OPENING_PX = 2.25  # diameter of the disc that cuts the midpiece (~1 µm wide at 0.5 µm/px)
SPOT_PX = 3.0  # diameter of the largest pale spot counted as a vacuole
SPOT_FLOOR = 0.5  # dips shallower than this many noise SDs are the noise's own


def _disc(diameter_px: float) -> np.ndarray:
    size = max(3, round(diameter_px * UPSAMPLE) | 1)  # odd, in upsampled pixels
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


_OPENING = _disc(OPENING_PX)
_SPOT = _disc(SPOT_PX)
_RIM = _disc(1.0)


def frame_morphometry(frame: np.ndarray, *, search_scale: float = 1.0) -> dict[str, float] | None:
    """The morphometry of the head at the centre of one grey ``frame`` (H, W), uint8 or float
    in any range; None when no head stands out from the background near the centre.

    ``search_scale`` multiplies the windows the head is looked for in (``SEARCH_RADIUS_PX``,
    ``NEAR_CENTRE_PX``, sized for a ~9 x 6 px head): the head's length in px over 9.2, i.e.
    ``annotation.ingest.scale.tracking_scale(pixel_size_um).morphometry_scale``. At 1 every
    measure is what it always was."""
    if not (search_scale > 0 and math.isfinite(search_scale)):
        raise ValueError(f"search_scale must be a positive number, not {search_scale}")
    image = np.asarray(frame, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"a frame must have shape (H, W), got {image.shape}")
    level = float(np.median(image))
    noise = 1.4826 * float(np.median(np.abs(image - level)))
    noise = max(noise, 1e-3 * max(abs(level), 1.0))  # a noiseless frame: no division by 0
    h, w = image.shape
    r, cy, cx = round(SEARCH_RADIUS_PX * search_scale), h // 2, w // 2
    window = image[max(cy - r, 0) : cy + r + 1, max(cx - r, 0) : cx + r + 1] - level
    wy, wx = cy - max(cy - r, 0), cx - max(cx - r, 0)  # the crop's centre in the window
    c = max(round(2 * search_scale), 2)  # the centre's box: 5 x 5 px at scale 1
    centre = window[max(wy - c, 0) : wy + c + 1, max(wx - c, 0) : wx + c + 1]
    window = window if centre.mean() >= 0 else -window  # contrast: positive inside the head
    u = UPSAMPLE
    contrast = cv2.resize(window, None, fx=u, fy=u, interpolation=cv2.INTER_CUBIC)
    contrast = cv2.GaussianBlur(contrast, (0, 0), 0.5 * u)  # half a pixel: noise, not shape
    uy, ux = wy * u + u // 2, wx * u + u // 2
    n = round(NEAR_CENTRE_PX * search_scale) * u
    peak = float(contrast[max(uy - n, 0) : uy + n, max(ux - n, 0) : ux + n].max())
    if not peak > MIN_CONTRAST * noise:
        return None
    mask: np.ndarray = (contrast > MASK_LEVEL * peak).astype(np.uint8)
    opened = cv2.morphologyEx(mask, cv2.MORPH_OPEN, _OPENING)
    if opened.any():
        mask = opened  # a head too small to survive the opening keeps its raw mask
    _, labels, _, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
    # The component nearest the centre: the tracked head, not a neighbour or debris.
    label = 1 + int(np.argmin(np.hypot(centroids[1:, 0] - ux, centroids[1:, 1] - uy)))
    contours, _ = cv2.findContours(
        (labels == label).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
    )
    outline = max(contours, key=len)
    # Filled: a vacuole paler than half the peak is a hole in the mask but part of the head.
    head_u8 = cv2.drawContours(np.zeros_like(mask), [outline], -1, 1, thickness=-1)
    head = head_u8.astype(bool)

    area = float(head.sum()) / u**2  # px²
    ys, xs = np.nonzero(head)
    points = np.stack([xs, ys], axis=1) / u  # (N, 2) px
    centred = points - points.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred / len(points))  # ascending
    # An ellipse with semi-axis a has variance a² / 4 along it.
    length = 4 * math.sqrt(max(float(eigenvalues[1]), 0.0))
    width = max(4 * math.sqrt(max(float(eigenvalues[0]), 0.0)), 1.0 / u)
    along = centred @ eigenvectors[:, 1]
    spread = float(along.std())
    asymmetry = abs(float((along**3).mean())) / spread**3 if spread > 0 else 0.0

    perimeter = max(cv2.arcLength(outline, closed=True) / u, 1e-6)
    hull = np.zeros_like(head_u8)
    cv2.fillConvexPoly(hull, cv2.convexHull(outline), 1)
    inside = contrast[head]
    # Pale spots: where closing (filling dips narrower than SPOT_PX) raises the contrast map,
    # away from the rim (where the head's own edge is a dip).
    dips = cv2.morphologyEx(contrast, cv2.MORPH_CLOSE, _SPOT) - contrast
    inner = cv2.erode(head_u8, _RIM).astype(bool)
    # Dips shallower than SPOT_FLOOR noise SDs are the noise's own.
    depth = (
        np.clip(dips[inner] - SPOT_FLOOR * noise, 0.0, None)
        if inner.any()
        else np.zeros(1, np.float32)
    )
    return {
        "area": area,
        "length": length,
        "width": width,
        "ellipticity": length / width,
        "roughness": perimeter**2 / (4 * math.pi * area),
        "solidity": min(float(head.sum()) / max(float(hull.sum()), 1.0), 1.0),
        "asymmetry": asymmetry,
        "darkness": float(inside.mean()) / peak,
        "spots": float(depth.sum()) / peak / u**2,
        "spot_depth": float(depth.max()) / peak,
        "texture": float(inside.std()) / peak,
        "contrast": peak / noise,
    }


def clip_morphometry(frames: np.ndarray, *, search_scale: float = 1.0) -> np.ndarray:
    """The morphometry of a clip's head, ``(len(MORPHOMETRY_FEATURES),)`` float32: each
    feature's median over the frames (T, H, W) where a head was found (``NO_HEAD`` if none).
    ``search_scale``: see ``frame_morphometry``."""
    frames = np.asarray(frames)
    if frames.ndim != 3:
        raise ValueError(f"a clip's frames must have shape (T, H, W), got {frames.shape}")
    found = (frame_morphometry(frame, search_scale=search_scale) for frame in frames)
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


def clips_morphometry(frames: np.ndarray) -> np.ndarray:
    """:func:`clip_morphometry` of every clip of ``frames`` (N, T, H, W): (N, K) float32."""
    frames = np.asarray(frames)
    if frames.ndim != 4:
        raise ValueError(f"clips must have shape (N, T, H, W), got {frames.shape}")
    rows = [clip_morphometry(clip) for clip in frames]
    return np.stack(rows) if rows else np.zeros((0, len(MORPHOMETRY_FEATURES)), np.float32)
