"""Sizes from the pixel size: today's values at today's default, and growing with the head."""

from __future__ import annotations

import pytest

from annotation.ingest.pipeline import IngestConfig
from annotation.ingest.scale import DEFAULT_PIXEL_SIZE_UM, head_size_px, tracking_scale
from modeling.ml.morphometry import NEAR_CENTRE_PX, SEARCH_RADIUS_PX


def test_the_default_pixel_size_gives_today_s_sizes() -> None:
    scale = tracking_scale(DEFAULT_PIXEL_SIZE_UM)
    assert head_size_px(DEFAULT_PIXEL_SIZE_UM) == pytest.approx((9.2, 6.0))
    assert (scale.template_size, scale.search_radius, scale.crop_size) == (13, 24, 150)
    assert scale.recentre_half_size == 4
    assert (scale.recentre_guard_px, scale.recentre_max_shift_px) == (1.5, 3.0)
    assert scale.prior_scale_px == 8.0
    assert scale.morphometry_scale == 1.0
    assert IngestConfig().crop_size_at(DEFAULT_PIXEL_SIZE_UM) == 150
    assert (SEARCH_RADIUS_PX, NEAR_CENTRE_PX) == (12, 6)


@pytest.mark.parametrize(("pixel_size_um", "factor"), [(0.25, 2), (0.125, 4)])
def test_a_higher_magnification_scales_every_head_size(pixel_size_um: float, factor: int) -> None:
    scale = tracking_scale(pixel_size_um)
    length, width = head_size_px(pixel_size_um)
    assert (length, width) == pytest.approx((9.2 * factor, 6.0 * factor))
    assert scale.template_size % 2 == 1
    assert scale.template_size == pytest.approx(13 * factor, abs=1)
    assert scale.search_radius == 24 * factor
    assert scale.recentre_half_size == 4 * factor
    assert scale.crop_size == 150 * factor
    assert scale.morphometry_scale == pytest.approx(factor)
    assert scale.border_margin_px >= length / 2


def test_another_species_head_size_is_a_setting_of_the_config() -> None:
    bull = IngestConfig(head_length_um=9.2, head_width_um=4.6)
    assert bull.scale(0.5).template_size == 27
    assert bull.crop_size_at(0.5) == 300
    assert IngestConfig(crop_size=120).crop_size_at(0.125) == 120  # an explicit crop wins


@pytest.mark.parametrize("bad", [0.0, -0.5, float("nan"), float("inf")])
def test_a_pixel_size_that_is_no_positive_number_is_refused_by_name(bad: float) -> None:
    with pytest.raises(ValueError, match="pixel_size_um must be a positive number"):
        head_size_px(bad)
    with pytest.raises(ValueError, match="head_length_um must be a positive number"):
        tracking_scale(0.5, head_length_um=bad)
