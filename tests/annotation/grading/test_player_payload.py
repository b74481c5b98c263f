"""The one clip-player payload (annotation/player.py): what every page and API that plays a
clip hands out, and nothing about votes, distribution, retirement or predictions."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from annotation.models import Clip
from annotation.player import ClipPlayerSerializer, clip_player
from tests.grading_support import client_for

pytestmark = pytest.mark.django_db

PLAYER_KEYS = {
    "id", "clip_id", "n_frames", "crop_size", "fps", "filmstrip_url", "crop_url",
    "preview_url", "track", "video_width", "video_height",
}  # fmt: skip
TELLING = ("vote", "distribution", "retire", "predict", "panel", "p_a", "grade")


def test_an_experts_unanswered_clip_payload_says_nothing_about_its_votes(
    make_user, make_clip, cast_votes
) -> None:
    clip = make_clip()
    cast_votes(clip, "AAB")  # three other experts answered it
    clip.refresh_from_db()
    assert clip.votes_total == 3
    expert = make_user("expert")
    answer = client_for(expert).get(reverse("api-grading-next"))
    assert answer.status_code == 200
    payload = answer.json()
    assert set(payload) == PLAYER_KEYS and payload == ClipPlayerSerializer(clip).data
    text = json.dumps(payload).lower()
    assert not [word for word in TELLING if word in text]


def test_the_page_player_options_come_from_the_one_payload(make_clip) -> None:
    clip = make_clip(n_frames=8)
    data = ClipPlayerSerializer(Clip.objects.get(pk=clip.pk)).data
    assert clip_player(clip) == {
        "filmstrip": data["filmstrip_url"],
        "nFrames": 8,
        "size": data["crop_size"],
        "fps": data["fps"],
        "preview": data["preview_url"],
        "track": data["track"],
        "videoWidth": data["video_width"],
        "videoHeight": data["video_height"],
    }


def test_a_field_guide_reference_is_the_one_payload_with_the_curators_grade_and_note(
    make_user, make_clip
) -> None:
    from annotation.grading.field_guide import reference_clip_add

    clip = make_clip(retired=True)
    curator = make_user("curator")
    reference = reference_clip_add(curator=curator, clip=clip, grade="B", note="straight")
    sections = client_for(make_user("expert")).get(reverse("api-field-guide")).json()
    [shown] = [r for s in sections for r in s["references"]]
    player = {k: v for k, v in ClipPlayerSerializer(clip).data.items() if k != "id"}
    assert shown == {"id": reference.pk, "grade": "B", "note": "straight", **player}
