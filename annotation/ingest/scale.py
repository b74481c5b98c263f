"""Sizes in pixels from the microscope's pixel size: how big a sperm head looks in a video.

Plain Python, no Django. The tracker, the crop and the morphometry were tuned on heads of
about 9 x 6 px (the generator's default, `simulator.synthetic`: a 4.6 x 3.0 µm head at
0.5 µm/px). At a higher magnification the same head covers more pixels, so every size that
is about the head (the template, how far it may move in a frame, the re-centring window, the
border margin) must grow with it, or the tracker matches a part of the head and drifts.

Everything here is one factor, ``head length in px / REFERENCE_HEAD_LENGTH_PX``, applied to
the values that were tuned at the reference scale; at ``DEFAULT_PIXEL_SIZE_UM`` with the
default head every value is exactly today's (a test pins that).

The expected head is a human sperm head, about 4.6 µm long and 3.0 µm wide (WHO 2021 gives
4.0-5.5 x 2.5-3.5 µm for normal heads); a lab with another species sets
``MERSV_HEAD_LENGTH_UM`` / ``MERSV_HEAD_WIDTH_UM`` (bull heads are about 8-9 x 4-5 µm).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

HEAD_LENGTH_UM = 4.6
HEAD_WIDTH_UM = 3.0
# The project's default pixel size (the generator's, and what the tracker was tuned at).
DEFAULT_PIXEL_SIZE_UM = 0.5
REFERENCE_HEAD_LENGTH_PX = HEAD_LENGTH_UM / DEFAULT_PIXEL_SIZE_UM  # 9.2 px

# The values tuned at the reference scale (see `annotation.ingest.tracking`).
REFERENCE_TEMPLATE_SIZE = 13
REFERENCE_SEARCH_RADIUS = 24
REFERENCE_RECENTRE_HALF_SIZE = 4
REFERENCE_RECENTRE_GUARD_PX = 1.5
REFERENCE_RECENTRE_MAX_SHIFT_PX = 3.0
REFERENCE_PRIOR_SCALE_PX = 8.0
REFERENCE_CROP_SIZE = 150  # the paper's crop: 75 µm of field at 0.5 µm/px


@dataclass(frozen=True)
class TrackingScale:
    """The pixel sizes of one magnification (``tracking_scale``)."""

    pixel_size_um: float
    head_length_px: float
    head_width_px: float
    factor: float  # head_length_px / REFERENCE_HEAD_LENGTH_PX
    template_size: int  # odd
    search_radius: int
    recentre_half_size: int
    recentre_guard_px: float
    recentre_max_shift_px: float
    prior_scale_px: float
    # The head's box must stay this far inside the frame; closer, it is leaving it.
    border_margin_px: int
    # Peaks of the match closer than this to the best are the same head (its own footprint).
    footprint_px: float
    crop_size: int
    morphometry_scale: float  # multiplies the morphometry's head search window


def _check(name: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive number, not {value}")


def head_size_px(
    pixel_size_um: float,
    *,
    head_length_um: float = HEAD_LENGTH_UM,
    head_width_um: float = HEAD_WIDTH_UM,
) -> tuple[float, float]:
    """(length, width) in px of the expected head at ``pixel_size_um`` µm/px."""
    for name, value in (
        ("pixel_size_um", pixel_size_um),
        ("head_length_um", head_length_um),
        ("head_width_um", head_width_um),
    ):
        _check(name, value)
    return head_length_um / pixel_size_um, head_width_um / pixel_size_um


def _odd(value: float, minimum: int = 3) -> int:
    """The odd integer nearest ``value`` (rounding up from even), at least ``minimum``."""
    rounded = round(value)
    return max(rounded if rounded % 2 else rounded + 1, minimum)


def tracking_scale(
    pixel_size_um: float,
    *,
    head_length_um: float = HEAD_LENGTH_UM,
    head_width_um: float = HEAD_WIDTH_UM,
) -> TrackingScale:
    """Every head-dependent size of the tracker, the crop and the morphometry at this scale."""
    length, width = head_size_px(
        pixel_size_um, head_length_um=head_length_um, head_width_um=head_width_um
    )
    factor = length / REFERENCE_HEAD_LENGTH_PX
    template = _odd(REFERENCE_TEMPLATE_SIZE * factor)
    return TrackingScale(
        pixel_size_um=pixel_size_um,
        head_length_px=length,
        head_width_px=width,
        factor=factor,
        template_size=template,
        search_radius=max(round(REFERENCE_SEARCH_RADIUS * factor), 2),
        recentre_half_size=max(round(REFERENCE_RECENTRE_HALF_SIZE * factor), 2),
        # The guard is about precision, not size: the centroid of a larger head is no less
        # precise in px (more pixels average the noise), so it stays 1.5 px.
        recentre_guard_px=REFERENCE_RECENTRE_GUARD_PX,
        recentre_max_shift_px=REFERENCE_RECENTRE_MAX_SHIFT_PX * factor,
        prior_scale_px=REFERENCE_PRIOR_SCALE_PX * factor,
        # Half the head's length: at the reference scale 5 px, where the head itself touches
        # the edge and the 13 px template starts to match repeated border pixels.
        border_margin_px=max(math.ceil(length / 2), 1),
        # A head's own match falls off within half its length: on clean synthetic tracks the
        # best match half a head length away or more is the background's, 0.09 or more below.
        footprint_px=length / 2,
        crop_size=max(round(REFERENCE_CROP_SIZE * factor), 16),
        morphometry_scale=factor,
    )
