"""The morphometry's segmentation takes the whole head, stained or unstained, at any pixel
size, and finds vacuoles inside it (modeling.ml.morphometry)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from modeling.ml.morphometry import frame_morphometry

BACKGROUND = 140.0
NOISE = 3.0
FIELD_UM = 30.0  # the crop's side


def head_image(
    *,
    pixel_size_um: float,
    length_um: float = 4.6,
    width_um: float = 3.0,
    angle_deg: float = 30.0,
    style: str = "stained",
    vacuole: tuple[float, float, float] | None = None,
    seed: int = 0,
) -> np.ndarray:
    """A head drawn at the crop's centre, 8 times finer and area-averaged down, lightly blurred
    by the optics (0.15 µm), with sensor noise. ``style``: "stained" (evenly dark, as after a
    stain), "unstained" (relief optics: one half darker, the other brighter than the
    background, the middle at the background's own level, a thin dark rim), or "bright".
    ``vacuole`` (dx, dy, radius) µm from the centre: a spot that departs from the head."""
    fine = 8
    size = round(FIELD_UM / pixel_size_um) | 1
    px = pixel_size_um / fine  # µm per fine px
    yy, xx = (np.mgrid[0 : size * fine, 0 : size * fine] + 0.5) * px
    centre = size * pixel_size_um / 2
    t = math.radians(angle_deg)
    u = (xx - centre) * math.cos(t) + (yy - centre) * math.sin(t)  # along the head
    v = -(xx - centre) * math.sin(t) + (yy - centre) * math.cos(t)
    r = np.hypot(u / (length_um / 2), v / (width_um / 2))  # 1 on the outline
    inside = (r <= 1).astype(np.float32)
    if style == "stained":
        value = -60.0 * inside
    elif style == "bright":
        value = 60.0 * inside
    elif style == "unstained":
        # Relief: the contrast runs from dark on one flank to bright on the other across the
        # head's width, through the background's level in the middle; plus a dark rim.
        relief = 35.0 * np.clip(v / (width_um / 2), -1, 1)
        rim = ((r > 0.85) & (r <= 1)).astype(np.float32)
        value = inside * relief - 25.0 * rim
    else:
        raise ValueError(style)
    if vacuole is not None:
        dx, dy, radius = vacuole
        spot = np.hypot(u - dx, v - dy) <= radius
        value = np.where(spot, value * 0.15, value)  # 15% of the head's contrast is left
    coarse = cv2.resize(value.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    coarse = cv2.GaussianBlur(coarse, (0, 0), 0.15 / pixel_size_um)
    noise = np.random.default_rng(seed).normal(0.0, NOISE, coarse.shape)
    return np.clip(np.round(BACKGROUND + coarse + noise), 0, 255).astype(np.uint8)


def _measure(image: np.ndarray, pixel_size_um: float) -> dict[str, float]:
    measured = frame_morphometry(image, pixel_size_um=pixel_size_um)
    assert measured is not None, "no head found"
    return measured


DRAWN_AREA = math.pi * 2.3 * 1.5  # µm² of the 4.6 x 3 µm ellipse


@pytest.mark.parametrize("pixel_size_um", [0.5, 0.17])
def test_a_stained_head_is_segmented_whole(pixel_size_um: float) -> None:
    m = _measure(head_image(pixel_size_um=pixel_size_um, style="stained"), pixel_size_um)
    assert m["area"] == pytest.approx(DRAWN_AREA, rel=0.12)
    assert m["length"] == pytest.approx(4.6, rel=0.1)
    assert m["width"] == pytest.approx(3.0, rel=0.12)


@pytest.mark.parametrize("pixel_size_um", [0.25, 0.17])
def test_an_unstained_relief_head_is_segmented_whole_not_only_its_dark_half(
    pixel_size_um: float,
) -> None:
    image = head_image(pixel_size_um=pixel_size_um, style="unstained", seed=1)
    m = _measure(image, pixel_size_um)
    # Its dark half alone would be about half the area and half the width.
    assert m["area"] == pytest.approx(DRAWN_AREA, rel=0.2)
    assert m["width"] == pytest.approx(3.0, rel=0.2)
    assert m["length"] == pytest.approx(4.6, rel=0.15)


def test_the_same_head_at_three_pixel_sizes_gives_the_same_micrometres() -> None:
    measures = [
        _measure(head_image(pixel_size_um=p, style="stained", seed=2), p) for p in (0.5, 0.25, 0.17)
    ]
    for name, rel in (("area", 0.1), ("length", 0.06), ("width", 0.08), ("ellipticity", 0.1)):
        values = np.array([m[name] for m in measures])
        assert values.max() / values.min() - 1 < rel, (name, values)
    # The same head drawn in more pixels is not measured as a larger one: the areas are µm².
    assert all(m["area"] == pytest.approx(DRAWN_AREA, rel=0.12) for m in measures)


@pytest.mark.parametrize(
    ("pixel_size_um", "style"), [(0.5, "stained"), (0.17, "stained"), (0.17, "bright")]
)
def test_a_vacuole_inside_the_head_is_found_and_none_in_a_clean_head(
    pixel_size_um: float, style: str
) -> None:
    clean = _measure(head_image(pixel_size_um=pixel_size_um, style=style, seed=3), pixel_size_um)
    vacuole = _measure(
        head_image(pixel_size_um=pixel_size_um, style=style, vacuole=(0.6, 0.2, 0.5), seed=3),
        pixel_size_um,
    )
    # A clean head: at most a dip of the noise's own, far shallower and smaller than a vacuole.
    assert clean["spot_depth"] < 0.1 and clean["spots"] < 0.1 * vacuole["spots"]
    assert vacuole["spots"] > 0.2  # µm² x depth
    assert vacuole["spot_depth"] > 0.3  # the spot keeps 15% of the head's contrast
    assert vacuole["area"] == pytest.approx(clean["area"], rel=0.1)  # still the whole head


def test_noise_alone_gives_no_head_at_any_pixel_size() -> None:
    for p in (0.5, 0.17):
        size = round(FIELD_UM / p) | 1
        flat = np.random.default_rng(4).normal(BACKGROUND, NOISE, (size, size))
        assert frame_morphometry(np.clip(flat, 0, 255).astype(np.uint8), pixel_size_um=p) is None
