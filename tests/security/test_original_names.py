"""A video's original upload file name is the curator's: no page, API answer or header an expert
or a trainee can open shows it (it often carries a patient's name, a date or a lab's folder).

The crawl of every route (tests/security/test_blindness_crawl.py's walker) runs as an expert
who holds clip X and as a trainee, with X's video named after a marker; curators still see it.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from annotation.models import Video
from tests.security.test_blindness_crawl import _crawl, _urls, blind_world  # noqa: F401

pytestmark = pytest.mark.django_db

MARKER = "Patient-Jane-Doe-2026-03-01"


def _name_videos(world: dict[str, Any]) -> None:
    Video.objects.filter(pk__in=[world["x"].video_id, world["answered"].video_id]).update(
        original_name=f"{MARKER}.mp4"
    )


def _shown(client: Client, urls: list[str]) -> list[str]:
    crawl = _crawl(client, urls)
    return [
        f"{url} ({status})"
        for url, (status, body, headers) in crawl.responses.items()
        if MARKER.encode() in body or MARKER.encode() in headers
    ]


def test_no_page_or_api_an_expert_or_trainee_can_open_shows_an_original_file_name(
    request, make_user
) -> None:
    world = request.getfixturevalue("blind_world")
    _name_videos(world)
    urls = _urls(world)
    trainee = Client()
    trainee.force_login(make_user("trainee"))
    shown = _shown(world["client"], urls) + _shown(trainee, urls)
    assert not shown, "the original file name is shown at:\n" + "\n".join(shown[:20])


def test_curators_still_see_the_original_file_name(request, make_user) -> None:
    world = request.getfixturevalue("blind_world")
    _name_videos(world)
    curator = Client()
    curator.force_login(make_user("curator"))
    video_id = world["x"].video_id
    assert MARKER in curator.get(f"/videos/{video_id}/").content.decode()
    assert curator.get(f"/api/videos/{video_id}/").json()["original_name"] == f"{MARKER}.mp4"
