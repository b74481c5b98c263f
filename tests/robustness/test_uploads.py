"""Hostile uploads: oversized or chunked bodies, files that are no videos, names and paths
that try to leave the media and export folders, stored files served as pages."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from django.conf import settings
from django.test import Client

from annotation.ingest import services
from annotation.models import Video
from datasets.export import validate_export_path, verify_export
from datasets.importer import ImportValidationError, dataset_validate
from tests.conftest import copy_dataset
from tests.web_server_support import gunicorn_running

pytestmark = pytest.mark.django_db

HTML = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><rect/></svg>'
# An HTML page whose comment holds a video signature, but not where a video's is.
POLYGLOT_LATE = b"<html><!-- \x00\x00\x00\x18ftypisom --><script>alert(1)</script></html>"
# A real MP4 signature followed by a page: passes the upload check, so it is what the
# media view must never render (see the media tests).
POLYGLOT_MP4_HEAD = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00" + HTML


def _curator_client(make_user) -> Client:
    client = Client()
    client.force_login(make_user("curator"))
    return client


def _avi_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "tiny.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15, (64, 48), False)
    for index in range(4):
        writer.write(np.full((48, 64), 40 * index, dtype=np.uint8))
    writer.release()
    return path.read_bytes()


def _create(data: bytes, name: str = "upload.mp4") -> Video:
    return services.video_create(
        fileobj=io.BytesIO(data),
        original_name=name,
        patient_code="P-hostile",
        pixel_size_um=0.5,
        targets=[services.Target(10, 10)],
        uploaded_by=None,
        enqueue=False,
    )


# --- sizes and counts, answered from the headers ---------------------------------------------


@pytest.fixture
def gunicorn_url(transactional_db) -> Iterator[tuple[str, int]]:
    """The production server (gunicorn, as in docker/) on a free loopback port."""
    with gunicorn_running() as address:
        yield address


def test_a_huge_content_length_is_refused_with_413_before_the_body_is_read(gunicorn_url) -> None:
    for path in ("/api/videos/", "/videos/upload/", "/api/grading/ratings/"):
        start = time.monotonic()
        with socket.create_connection(gunicorn_url, timeout=10) as sock:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Type: multipart/form-data; boundary=xyz\r\n"
                "Content-Length: 107374182400\r\n\r\n--xyz\r\n".encode()
            )
            answer = ""
            with contextlib.suppress(TimeoutError):
                while "MB" not in answer and (chunk := sock.recv(4096)):  # headers, then body
                    answer += chunk.decode(errors="replace")
        assert answer.startswith("HTTP/1.1 413"), (path, answer[:200])
        assert "too large" in answer
        # Sending 100 GB would take minutes: an answer within seconds was made from the headers.
        assert time.monotonic() - start < 5, "the server waited for a body it should refuse"


def test_upload_routes_accept_up_to_max_upload_mb_and_other_routes_far_less(make_user) -> None:
    client = _curator_client(make_user)
    big = str((settings.MAX_REQUEST_MB + 1) * 1024 * 1024)
    answer = client.post("/api/grading/ratings/", b"{}", "application/json", CONTENT_LENGTH=big)
    assert answer.status_code == 413
    assert f"requests up to {settings.MAX_REQUEST_MB} MB" in answer.content.decode()
    too_big = str((settings.MAX_UPLOAD_MB + 1) * 1024 * 1024)
    answer = client.post(
        "/api/videos/", b"", "multipart/form-data; boundary=x", CONTENT_LENGTH=too_big
    )
    assert answer.status_code == 413
    assert f"videos up to {settings.MAX_UPLOAD_MB} MB" in answer.content.decode()


def test_a_chunked_upload_without_content_length_is_refused(make_user) -> None:
    client = _curator_client(make_user)
    answer = client.post(
        "/api/videos/", b"", "multipart/form-data; boundary=x", HTTP_TRANSFER_ENCODING="chunked"
    )
    assert answer.status_code == 411
    assert "Content-Length" in answer.content.decode()


def test_too_many_files_in_one_request_are_refused(make_user, synthetic_small: Path) -> None:
    client = _curator_client(make_user)
    video = next((synthetic_small / "videos").iterdir()).read_bytes()
    files = {
        f"file{i}": io.BytesIO(video) for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FILES + 1)
    }
    for handle in files.values():
        handle.name = "v.mp4"
    answer = client.post(
        "/api/videos/", {**files, "patient_code": "P1", "pixel_size_um": "0.5", "targets": "[]"}
    )
    assert answer.status_code == 400
    assert Video.objects.count() == 0


# --- only real videos ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [HTML, SVG, POLYGLOT_LATE, b"", b"RIFF\x00\x00\x00\x00WAVE", b"\x89PNG\r\n\x1a\n" + bytes(64)],
    ids=["html", "svg", "html-with-late-signature", "empty", "riff-wave", "png"],
)
def test_a_file_that_is_no_video_is_refused_whatever_its_name(data: bytes) -> None:
    for name in ("clip.mp4", "clip.avi"):
        with pytest.raises(services.ServiceError, match="not an MP4 or AVI video"):
            _create(data, name)
    assert Video.objects.count() == 0
    assert not (Path(settings.MEDIA_ROOT) / "videos").exists() or not any(
        (Path(settings.MEDIA_ROOT) / "videos").iterdir()
    )


def test_real_mp4_and_avi_content_is_accepted_under_either_name(
    synthetic_small: Path, tmp_path: Path
) -> None:
    mp4 = next((synthetic_small / "videos").iterdir()).read_bytes()
    avi = _avi_bytes(tmp_path)
    assert services.video_sniff_format(io.BytesIO(mp4)) == "MP4"
    assert services.video_sniff_format(io.BytesIO(avi)) == "AVI"
    stored = _create(avi, "renamed.mp4")
    assert Path(stored.file.path).read_bytes() == avi  # read from the start, stored whole


def test_the_api_answers_a_disguised_page_with_a_clear_400(make_user) -> None:
    client = _curator_client(make_user)
    page = io.BytesIO(HTML)
    page.name = "holiday.mp4"
    answer = client.post(
        "/api/videos/",
        {"file": page, "patient_code": "P1", "pixel_size_um": "0.5",
         "targets": json.dumps([{"x": 5, "y": 5}])},
    )  # fmt: skip
    assert answer.status_code == 400
    assert "not an MP4 or AVI video" in answer.content.decode()
    assert Video.objects.count() == 0


@pytest.mark.parametrize(
    "name",
    ["../../../../tmp/evil.mp4", "/etc/cron.d/evil.mp4", "evil\x00.sh.mp4", "a" * 5000 + ".mp4",
     "..\\..\\evil.mp4"],
    ids=["dotdot", "absolute", "nul", "very-long", "backslashes"],
)  # fmt: skip
def test_the_uploaded_name_never_decides_where_the_file_is_written(
    name: str, synthetic_small: Path
) -> None:
    video = _create(next((synthetic_small / "videos").iterdir()).read_bytes(), name)
    stored = Path(video.file.path).resolve()
    assert stored.parent == (Path(settings.MEDIA_ROOT) / "videos").resolve()
    assert len(stored.name) == len("0123456789abcdef0123456789abcdef.mp4")
    assert len(video.original_name) <= 255 and "/" not in video.original_name
    assert "\x00" not in video.original_name


# --- serving: nothing uploaded is ever rendered as a page ------------------------------------


def _media_file(relative: str, data: bytes) -> None:
    path = Path(settings.MEDIA_ROOT) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_a_stored_mp4_whose_bytes_are_html_is_served_as_video_with_nosniff(make_user) -> None:
    _media_file("clips/v1/clip_0.mp4", HTML)
    answer = _curator_client(make_user).get("/media/clips/v1/clip_0.mp4")
    assert answer.status_code == 200
    assert answer["Content-Type"] == "video/mp4"
    assert answer["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("name", ["page.html", "image.svg", "page.htm", "noext", "x.mp4.html"])
def test_files_of_other_types_are_only_ever_downloaded(make_user, name: str) -> None:
    _media_file(f"clips/v1/{name}", SVG)
    answer = _curator_client(make_user).get(f"/media/clips/v1/{name}")
    assert answer.status_code == 200
    assert answer["Content-Type"] == "application/octet-stream"
    assert answer["Content-Disposition"].startswith("attachment")
    assert answer["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "path",
    ["../secret.txt", "%2e%2e/secret.txt", "..%2fsecret.txt", "%2e%2e%2fsecret.txt",
     "clips/../../secret.txt", "clips/%2e%2e/%2e%2e/secret.txt", "..%5csecret.txt",
     "/" + "SECRET_ABS", "clips/%00/../../secret.txt", "clips/x%00.mp4",
     "..%252fsecret.txt", "clips/" + "a" * 5000],
)  # fmt: skip
def test_the_media_view_never_reads_outside_media_root(make_user, path: str) -> None:
    secret = Path(settings.MEDIA_ROOT).parent / "secret.txt"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text("TOP SECRET")
    _media_file("clips/v1/clip_0.png", b"\x89PNG")
    path = path.replace("SECRET_ABS", str(secret).lstrip("/"))
    answer = _curator_client(make_user).get(f"/media/{path}")
    assert answer.status_code in (400, 404), answer.status_code
    body = b"".join(answer.streaming_content) if answer.streaming else answer.content
    assert b"TOP SECRET" not in body


# --- dataset import and export paths -------------------------------------------------------


@pytest.mark.parametrize(
    "video",
    ["../outside.mp4", "/etc/passwd", "videos/\x00.mp4", "videos\\..\\..\\x.mp4",
     "videos/" + "a" * 2000 + ".mp4"],
    ids=["dotdot", "absolute", "nul", "backslashes", "very-long"],
)  # fmt: skip
def test_an_import_cannot_name_a_video_outside_its_folder(
    video: str, synthetic_small: Path, tmp_path: Path
) -> None:
    root = copy_dataset(synthetic_small, tmp_path / "data")
    (tmp_path / "outside.mp4").write_bytes(next((root / "videos").iterdir()).read_bytes())
    clips = pd.read_csv(root / "clips.csv")
    clips.loc[0, "video"] = video
    clips.to_csv(root / "clips.csv", index=False)
    with pytest.raises(ImportValidationError) as refused:
        dataset_validate(root)
    assert any("relative path inside DIR" in p for p in refused.value.problems)


@pytest.mark.parametrize(
    "path",
    ["../x.csv", "/etc/passwd", "a/../../x", "a\\b", "a\x00b", "a\nb", "", "a//b", "a/", "x" * 256],
)
def test_export_paths_that_could_leave_the_export_are_refused(path: str) -> None:
    with pytest.raises(ValueError, match="Export path"):
        validate_export_path(path)


def test_a_manifest_naming_files_outside_the_export_is_reported_not_read(tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    digest = "0" * 64
    (export / "MANIFEST.sha256").write_text(
        f"{digest}  ../secret.txt\n{digest}  /etc/passwd\n{digest}  a/../../secret.txt\n"
    )
    problems = verify_export(export)
    assert len([p for p in problems if "Export path" in p]) == 3, problems
    assert not any("altered" in p for p in problems)
