"""The kinematics list has one owner (annotation.ingest.kinematics.KINEMATICS_KEYS): the
measures, the clip's database fields, the API, the export and the model's input follow it."""

from __future__ import annotations

import dataclasses

import pytest
from django.db import models

from annotation.ingest.kinematics import (
    KINEMATICS_KEYS,
    KINEMATICS_TYPICAL,
    Kinematics,
    kinematics_attribute,
)
from annotation.ingest.serializers import KinematicsSerializer
from annotation.models import Clip
from datasets.export import TABLES
from modeling.ml.model import DEFAULT_KINEMATICS_FEATURES, kinematics_scales


def test_the_measures_dataclass_has_one_field_per_name_of_the_list_in_its_order() -> None:
    fields = [f.name for f in dataclasses.fields(Kinematics)]
    assert fields == [kinematics_attribute(key) for key in KINEMATICS_KEYS]
    assert kinematics_attribute("str") == "straightness" and kinematics_attribute("vcl") == "vcl"


def test_the_clip_models_kinematics_fields_equal_the_list() -> None:
    attributes = {kinematics_attribute(key) for key in KINEMATICS_KEYS}
    # Every float field of a clip but its start point is a measure; the columns are the keys.
    floats = [
        f
        for f in Clip._meta.get_fields()
        if isinstance(f, models.FloatField) and f.name not in ("start_x", "start_y")
    ]
    assert [f.column for f in floats] == list(KINEMATICS_KEYS)
    assert {f.name for f in floats} == attributes


def test_a_clips_kinematics_dict_and_fields_round_trip_through_the_list() -> None:
    values = {key: float(i) for i, key in enumerate(KINEMATICS_KEYS)}
    clip = Clip(**Clip.kinematics_fields(values))
    assert clip.kinematics_dict() == values
    assert clip.straightness == values["str"]


def test_the_api_and_the_export_name_the_kinematics_of_the_list() -> None:
    assert tuple(KinematicsSerializer().fields) == KINEMATICS_KEYS
    assert tuple(TABLES["clips"].names[-len(KINEMATICS_KEYS) :]) == KINEMATICS_KEYS


def test_the_models_default_kinematics_are_the_list_without_speed_which_repeats_vcl() -> None:
    assert tuple(k for k in KINEMATICS_KEYS if k != "speed") == DEFAULT_KINEMATICS_FEATURES
    assert kinematics_scales(KINEMATICS_KEYS) == tuple(KINEMATICS_TYPICAL.values())


def test_a_name_outside_the_list_is_refused_by_name() -> None:
    with pytest.raises(KeyError, match="'tail_length' is not a kinematics measure"):
        kinematics_attribute("tail_length")
    with pytest.raises(ValueError, match=r"Unknown kinematics feature\(s\) \['tail_length'\]"):
        kinematics_scales(("vcl", "tail_length"))


@pytest.mark.parametrize(
    ("known", "velocity", "length"), [(True, "µm/s", "µm"), (False, "px/s", "px")]
)
def test_every_measure_has_a_unit_in_micrometres_or_pixels_by_the_pixel_size(
    known: bool, velocity: str, length: str
) -> None:
    from annotation.ingest.kinematics import kinematics_units

    units = kinematics_units(pixel_size_known=known)
    assert list(units) == list(KINEMATICS_KEYS)
    assert units == {
        "vcl": velocity, "vsl": velocity, "vap": velocity, "lin": "", "str": "", "wob": "",
        "alh": length, "bcf": "Hz", "speed": velocity,
    }  # fmt: skip
