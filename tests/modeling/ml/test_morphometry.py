"""Head morphometry of a clip (modeling.ml.morphometry) and the model's use of it."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from modeling.ml.model import GradeDistributionModel, build_model
from modeling.ml.morphometry import (
    MORPHOMETRY_FEATURES,
    MORPHOMETRY_INPUTS,
    NO_HEAD,
    SHAPE_FEATURES,
    clip_morphometry,
    clips_morphometry,
    frame_morphometry,
    morphometry_standardisation,
    standardised_inputs,
)
from modeling.ml.train import TrainConfig
from simulator.synthetic import render_target_frames

SIZE = 150
BACKGROUND = 150.0


def _canvas(seed: int = 0, noise: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return BACKGROUND + rng.normal(0.0, noise, (SIZE, SIZE))


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def ellipse_frame(
    *,
    semi_major: float,
    semi_minor: float,
    angle_deg: float = 0.0,
    value: float = -70.0,
    spot: tuple[float, float, float] | None = None,
    seed: int = 0,
) -> np.ndarray:
    """A head drawn as an ellipse at the crop's centre, ``value`` grey levels from the
    background (dark for negative); ``spot`` (dx, dy, radius): a pale disc inside it. Drawn
    8 times finer and area-averaged down, so the edge has exact partial-pixel coverage."""
    fine = 8
    head = np.zeros((SIZE * fine, SIZE * fine), np.float32)
    centre = (SIZE * fine // 2 + fine // 2, SIZE * fine // 2 + fine // 2)  # pixel 75's centre
    axes = (round(semi_major * fine), round(semi_minor * fine))
    cv2.ellipse(head, centre, axes, angle_deg, 0, 360, 1.0, thickness=-1)
    if spot is not None:
        dx, dy, radius = spot
        spot_centre = (centre[0] + round(dx * fine), centre[1] + round(dy * fine))
        cv2.circle(head, spot_centre, round(radius * fine), 0.2, thickness=-1)
    head = cv2.resize(head, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    return _to_uint8(_canvas(seed) + value * head)


def _measure(frame: np.ndarray) -> dict[str, float]:
    measured = frame_morphometry(frame)
    assert measured is not None
    return measured


def test_an_ellipse_of_known_axes_gives_its_length_width_and_area() -> None:
    # At the default 0.5 µm/px: a 16 x 8 px ellipse is 8 x 4 µm.
    m = _measure(ellipse_frame(semi_major=8.0, semi_minor=4.0))
    assert m["length"] == pytest.approx(8.0, rel=0.06)
    assert m["width"] == pytest.approx(4.0, rel=0.08)
    assert m["area"] == pytest.approx(math.pi * 4 * 2, rel=0.06)
    assert m["ellipticity"] == pytest.approx(2.0, rel=0.08)
    assert m["solidity"] > 0.95  # convex
    assert m["asymmetry"] < 0.1  # symmetric about its middle
    assert m["spots"] < 0.125 and m["spot_depth"] < 0.1  # only the noise's own dips
    assert m["contrast"] > 10  # 70 grey levels against noise of SD 3


def test_a_head_of_sperm_size_is_measured_too() -> None:
    # 4.6 x 3 µm at 0.5 µm/px: a 9 x 6 px head, as the platform's crops show them.
    m = _measure(ellipse_frame(semi_major=4.6, semi_minor=3.0))
    assert m["length"] == pytest.approx(4.6, rel=0.1)
    assert m["width"] == pytest.approx(3.0, rel=0.1)
    assert m["area"] == pytest.approx(math.pi * 2.3 * 1.5, rel=0.1)


def test_the_measures_do_not_depend_on_the_heads_orientation() -> None:
    measures = [
        _measure(ellipse_frame(semi_major=7.0, semi_minor=4.0, angle_deg=angle, seed=1))
        for angle in (0, 25, 45, 70, 90, 135)
    ]
    for name, rel in (("area", 0.04), ("length", 0.04), ("width", 0.05), ("ellipticity", 0.06)):
        values = np.array([m[name] for m in measures])
        assert values.max() / values.min() - 1 < 2 * rel, (name, values)
    roughness = np.array([m["roughness"] for m in measures])
    assert roughness.max() / roughness.min() - 1 < 0.12


def test_a_pale_spot_inside_the_head_scores_as_a_vacuole() -> None:
    plain = _measure(ellipse_frame(semi_major=6.0, semi_minor=4.5, seed=2))
    vacuole = _measure(ellipse_frame(semi_major=6.0, semi_minor=4.5, spot=(1, 0, 1.2), seed=2))
    assert vacuole["spots"] > plain["spots"] + 0.25  # µm² x depth
    assert vacuole["spot_depth"] > 0.2 > plain["spot_depth"]
    assert vacuole["darkness"] < plain["darkness"]
    # The outline is the same head.
    assert vacuole["area"] == pytest.approx(plain["area"], rel=0.1)


def test_a_pear_head_is_more_asymmetric_than_an_oval_one() -> None:
    oval = ellipse_frame(semi_major=6.0, semi_minor=4.0, seed=3)
    pear = oval.astype(np.float64)
    # A disc added to one end makes it wide at the front, narrow at the back.
    pear[70:81, 76:85] = np.minimum(pear[70:81, 76:85], BACKGROUND - 60)
    assert _measure(_to_uint8(pear))["asymmetry"] > _measure(oval)["asymmetry"] + 0.15


def test_a_bright_head_is_measured_like_a_dark_one() -> None:
    dark = _measure(ellipse_frame(semi_major=7.0, semi_minor=4.0, value=-70))
    bright = _measure(ellipse_frame(semi_major=7.0, semi_minor=4.0, value=70))
    for name in ("area", "length", "width", "ellipticity"):
        assert bright[name] == pytest.approx(dark[name], rel=0.05)


def test_a_flat_patch_has_no_head_and_the_clip_gets_finite_defaults() -> None:
    flat_noise = _to_uint8(_canvas(seed=4))
    constant = np.full((SIZE, SIZE), 150, np.uint8)
    assert frame_morphometry(flat_noise) is None
    assert frame_morphometry(constant) is None
    clip = clip_morphometry(np.stack([flat_noise, constant]))
    assert clip.shape == (len(MORPHOMETRY_FEATURES),) and np.isfinite(clip).all()
    assert dict(zip(MORPHOMETRY_FEATURES, clip.tolist(), strict=True)) == NO_HEAD
    assert clips_morphometry(np.zeros((0, 2, SIZE, SIZE), np.uint8)).shape == (0, 12)


def test_a_clip_takes_the_median_over_the_frames_that_show_a_head() -> None:
    head = ellipse_frame(semi_major=7.0, semi_minor=4.0)
    larger = ellipse_frame(semi_major=9.0, semi_minor=4.0)
    flat = _to_uint8(_canvas(seed=5))
    clip = clip_morphometry(np.stack([head, head, larger, flat]))
    area = clip[MORPHOMETRY_FEATURES.index("area")]
    assert area == pytest.approx(_measure(head)["area"], rel=1e-6)  # not pulled by the others


def test_synthetic_heads_show_their_morphology() -> None:
    """The generator's heads (about 9 x 6 px, dark, with a bright halo): a defective head
    with vacuoles scores more spots and a rounder or rougher outline than a normal one."""

    def centre_crops(morphology: float) -> np.ndarray:
        rendered = render_target_frames(motility=0.1, morphology=morphology, seed=3)
        crops = []
        for frame, (x, y) in zip(rendered.frames, rendered.track, strict=False):
            padded = np.pad(frame, 30, mode="reflect")  # a head near the field's edge
            x0, y0 = round(x), round(y)  # the crop's top left, in the padded frame
            crops.append(padded[y0 : y0 + 61, x0 : x0 + 61])
        return np.stack(crops[:8]), rendered.cell

    normal, normal_cell = centre_crops(0.95)
    defective, defective_cell = centre_crops(0.1)
    assert normal_cell.n_vacuoles == 0 and defective_cell.n_vacuoles >= 1
    a = dict(zip(MORPHOMETRY_FEATURES, clip_morphometry(normal), strict=True))
    b = dict(zip(MORPHOMETRY_FEATURES, clip_morphometry(defective), strict=True))
    # The segmented area is the drawn head's (its outline, in µm), within 20%.
    x, y = normal_cell.head_outline_um.T
    drawn = 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))
    assert a["area"] == pytest.approx(drawn, rel=0.2)
    assert b["spots"] > a["spots"] + 0.0125  # µm² x depth (0.05 px²)
    assert b["roughness"] > a["roughness"]


def test_standardisation_centres_on_the_median_and_keeps_constant_features_finite() -> None:
    values = np.tile(np.arange(1.0, 13.0), (5, 1))
    values[:, 0] = [1.0, 2.0, 3.0, 4.0, 100.0]
    shift, scale = morphometry_standardisation(values)
    assert len(shift) == len(scale) == len(MORPHOMETRY_INPUTS)
    assert shift[0] == 3.0 and scale[0] == pytest.approx(values[:, 0].std())
    assert shift[1] == 2.0 and scale[1] == 1.0  # constant: scale 1, not 0
    with pytest.raises(ValueError, match="morphometry of shape"):
        morphometry_standardisation(np.zeros((0, len(MORPHOMETRY_FEATURES))))


def test_a_head_far_from_the_typical_one_in_either_direction_is_abnormal() -> None:
    rng = np.random.default_rng(0)
    typical = 10.0 + rng.normal(0.0, 1.0, (40, len(MORPHOMETRY_FEATURES)))
    shift, scale = morphometry_standardisation(typical)
    inputs = standardised_inputs(
        torch.from_numpy(typical),
        torch.tensor(shift, dtype=torch.float64),
        torch.tensor(scale, dtype=torch.float64),
    )
    # On the clips it was computed from, every input is standardised: mean 0, std 1 for the
    # abnormality (the features are centred on their median instead).
    assert inputs[:, -1].mean().item() == pytest.approx(0.0, abs=1e-9)
    assert inputs[:, -1].std(unbiased=False).item() == pytest.approx(1.0, rel=1e-9)
    ellipticity = MORPHOMETRY_FEATURES.index("ellipticity")
    odd = np.tile(np.median(typical, axis=0), (3, 1))
    odd[1, ellipticity] += 5.0  # too elongated
    odd[2, ellipticity] -= 5.0  # too round
    a = standardised_inputs(
        torch.from_numpy(odd),
        torch.tensor(shift, dtype=torch.float64),
        torch.tensor(scale, dtype=torch.float64),
    )[:, -1]
    assert a[1] > a[0] + 0.5 and a[2] > a[0] + 0.5
    assert a[1].item() == pytest.approx(a[2].item(), rel=0.05)
    # Vacuoles are not part of the outline's abnormality.
    spots = np.tile(np.median(typical, axis=0), (1, 1))
    spots[0, MORPHOMETRY_FEATURES.index("spots")] += 5.0
    assert "spots" not in SHAPE_FEATURES
    b = standardised_inputs(
        torch.from_numpy(spots),
        torch.tensor(shift, dtype=torch.float64),
        torch.tensor(scale, dtype=torch.float64),
    )[0, -1]
    assert b.item() == pytest.approx(a[0].item())


# --------------------------------------------------------------------------------------------
# The model's morphometry input


def _model(*, morphometry: bool) -> GradeDistributionModel:
    torch.manual_seed(0)
    k = len(MORPHOMETRY_INPUTS)
    return build_model(
        backbone="timesformer",
        n_kinematics_features=8,
        morphometry_shift=[1.0] * k if morphometry else None,
        morphometry_scale=[2.0] * k if morphometry else None,
    )


def _clips() -> tuple[torch.Tensor, torch.Tensor]:
    frames = np.stack(
        [np.stack([ellipse_frame(semi_major=6.0, semi_minor=4.0, seed=s)] * 8) for s in range(2)]
    )  # (2, 8, H, W) uint8
    x = torch.from_numpy(frames).float().div(255).unsqueeze(2)  # (B, T, 1, H, W)
    return x, torch.rand(2, 8) * 100


def test_a_model_with_morphometry_measures_it_on_its_input_when_not_given() -> None:
    model = _model(morphometry=True).eval()
    head = model.head[1]
    assert head.in_features == model.n_features + 8 + len(MORPHOMETRY_INPUTS)
    with torch.no_grad():
        head.weight.normal_()  # the head starts at 0: make the inputs matter
    x, speed = _clips()
    measured = torch.from_numpy(clips_morphometry((x[:, :, 0] * 255).round().numpy()))
    with torch.no_grad():
        inputs = model.morphometry_inputs(x, measured)
        torch.testing.assert_close(model(x, speed), model(x, speed, measured), atol=1e-5, rtol=0)
        assert not torch.allclose(model(x, speed), model(x, speed, measured + 5))
    z = (measured - 1.0) / 2.0
    torch.testing.assert_close(inputs[:, :-1], z)
    shape = [MORPHOMETRY_FEATURES.index(name) for name in SHAPE_FEATURES]
    torch.testing.assert_close(inputs[:, -1], (torch.log1p(z[:, shape].abs()).mean(1) - 1) / 2)


def test_the_morphometry_standardisation_travels_with_the_model_description() -> None:
    model = _model(morphometry=True)
    described = model.describe()
    assert described["morphometry_shift"] == [1.0] * len(MORPHOMETRY_INPUTS)
    rebuilt = GradeDistributionModel(**described)
    assert rebuilt.uses_morphometry and rebuilt.head[1].in_features == model.head[1].in_features
    rebuilt.load_state_dict(model.state_dict())


def test_a_model_described_before_morphometry_existed_has_no_morphometry_input() -> None:
    without = _model(morphometry=False)
    described = without.describe()
    assert "morphometry_shift" not in described  # what older checkpoints stored
    old = GradeDistributionModel(**described)
    assert not old.uses_morphometry and old.head[1].in_features == old.n_features + 8
    x, speed = _clips()
    with torch.no_grad():
        assert old.eval()(x, speed).shape == (2, 5)
    with pytest.raises(ValueError, match="morphometry shifts and scales"):
        GradeDistributionModel(
            backbone="timesformer",
            preset="small",
            n_kinematics_features=1,
            kinematics_scale=[100.0],
            morphometry_shift=[0.0],
            morphometry_scale=[1.0],
        )


def test_morphometry_is_on_for_small_presets_and_off_for_the_paper_and_older_configs() -> None:
    assert TrainConfig(preset="small").morphometry is True
    assert TrainConfig(preset="paper").morphometry is False
    assert TrainConfig(preset="small", morphometry=False).morphometry is False
    stored = TrainConfig(preset="small").to_dict()
    assert stored["morphometry"] is True
    del stored["morphometry"]  # a run stored before the option existed
    assert TrainConfig.from_dict(stored).morphometry is False


def test_a_head_four_times_larger_is_found_whole_at_its_pixel_size() -> None:
    # A 4.6 x 3 µm head at 0.125 µm/px is about 37 x 24 px: the default window (12 px around
    # the centre) cuts it, the window for its pixel size (annotation.ingest.scale) holds it.
    frame = ellipse_frame(semi_major=18.4, semi_minor=12.0)
    cut = frame_morphometry(frame)
    whole = frame_morphometry(frame, pixel_size_um=0.125)
    assert whole is not None
    assert whole["length"] == pytest.approx(4.6, rel=0.06)
    assert whole["area"] == pytest.approx(math.pi * 2.3 * 1.5, rel=0.06)
    assert cut is None or cut["length"] < 30 * 0.5
    np.testing.assert_allclose(
        clip_morphometry(np.stack([frame, frame]), pixel_size_um=0.125)[
            MORPHOMETRY_FEATURES.index("length")
        ],
        whole["length"],
        rtol=1e-5,
    )


@pytest.mark.parametrize("bad", [0.0, -0.5, float("nan")])
def test_a_pixel_size_that_is_no_positive_number_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="pixel_size_um must be a positive number"):
        frame_morphometry(ellipse_frame(semi_major=4.6, semi_minor=3.0), pixel_size_um=bad)
