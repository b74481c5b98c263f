"""Media paths are checked as the file they resolve to, never as the text asked for.

Source videos (media/videos/) are for curators. A path with a `.` or `..` segment, a
backslash, a NUL or a `%` left after decoding is refused before anything else, so
`/media/./videos/<name>` and `/media/clips/%2e%2e/videos/<name>` no longer serve a source video
to an expert or a trainee. Checked through Django's test client and, since a client may tidy
a path before the view sees it, with raw HTTP bytes against a live server.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from tests.security.conftest import MP4_BYTES
from tests.web_server_support import gunicorn_running

# Spellings of videos/<name> that leave or detour through another folder.
DETOURS = (
    "./videos/{name}",
    "clips/%2e%2e/videos/{name}",
    "clips/../videos/{name}",
    "clips/%2E%2E/videos/{name}",
    "videos/./{name}",
    "clips/.%2e/videos/{name}",
    "clips/%252e%252e/videos/{name}",
    "clips%2f..%2fvideos/{name}",
    "clips\\..\\videos\\{name}",
    "clips/..%5cvideos/{name}",
    "videos//{name}",
    "clips/x%00/../../videos/{name}",
)


@pytest.fixture
def source_video(settings, tmp_path) -> str:
    folder = Path(settings.MEDIA_ROOT) / "videos"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "3f2a9c.mp4").write_bytes(MP4_BYTES)
    (Path(settings.MEDIA_ROOT) / "clips").mkdir(exist_ok=True)
    return "3f2a9c.mp4"


def _client(make_user, role: str) -> Client:
    client = Client()
    client.force_login(make_user(role))
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["expert", "trainee"])
@pytest.mark.parametrize("detour", DETOURS)
def test_a_detour_to_a_source_video_serves_nothing_to_experts_or_trainees(
    make_user, source_video: str, role: str, detour: str
) -> None:
    client = _client(make_user, role)
    assert client.get(f"/media/videos/{source_video}").status_code == 403
    answer = client.get("/media/" + detour.format(name=source_video))
    assert answer.status_code in (400, 403, 404), (detour, answer.status_code)
    body = b"".join(answer.streaming_content) if answer.streaming else answer.content
    assert MP4_BYTES not in body


@pytest.mark.django_db
def test_curators_get_source_videos_by_their_plain_path_only(make_user, source_video) -> None:
    client = _client(make_user, "curator")
    answer = client.get(f"/media/videos/{source_video}")
    assert answer.status_code == 200
    assert b"".join(answer.streaming_content) == MP4_BYTES
    assert client.get(f"/media/./videos/{source_video}").status_code == 404


@pytest.fixture
def gunicorn_media(transactional_db, settings, source_video) -> Iterator[tuple[str, int]]:
    """gunicorn as deployed (config/gunicorn.py) on a free port, serving this test's media.

    Not Django's live server: it answers MEDIA_URL itself, without the media view.
    """
    with gunicorn_running(MERSV_MEDIA_ROOT=str(settings.MEDIA_ROOT)) as address:
        yield address


def _raw_get(address: tuple[str, int], path: str, session: str) -> tuple[int, bytes]:
    """GET `path` exactly as written, byte for byte, with the session cookie."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Cookie: {settings.SESSION_COOKIE_NAME}={session}\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")
    with socket.create_connection(address, timeout=20) as sock:
        sock.sendall(request)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    return int(raw.split(b" ", 2)[1]), raw


def test_raw_http_detours_to_a_source_video_are_refused_by_the_web_server(
    gunicorn_media, make_user, source_video: str
) -> None:
    client = Client()
    client.force_login(make_user("expert"))
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    plain = _raw_get(gunicorn_media, f"/media/videos/{source_video}", session)
    assert plain[0] == 403, plain[1][:300]  # signed in, and refused the plain path
    served = []
    for detour in DETOURS:
        path = "/media/" + detour.format(name=source_video).replace("\\", "%5c")
        status, raw = _raw_get(gunicorn_media, path, session)
        if status not in (400, 403, 404) or MP4_BYTES in raw:
            served.append(f"{path}: {status}")
    assert not served, "served a source video to an expert:\n" + "\n".join(served)
