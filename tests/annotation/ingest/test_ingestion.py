"""Upload -> ingestion in a real Celery worker -> clips; pages and API of the foundation."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from django.test import Client
from rest_framework.test import APIClient

from annotation.models import Clip, Video
from tests.conftest import PASSWORD, wait_for


def _upload(client: APIClient, path: Path, targets: list[dict], **extra: str):
    import json

    with path.open("rb") as handle:
        return client.post(
            "/api/videos/",
            {
                "file": handle,
                "patient_code": extra.get("patient_code", "P-test-1"),
                "pixel_size_um": extra.get("pixel_size_um", "0.5"),
                "targets": json.dumps(targets),
            },
            format="multipart",
        )


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_an_uploaded_video_is_ingested_by_the_worker_into_a_clip(
    celery_worker_process, make_user, synthetic_small: Path
) -> None:
    clips = pd.read_csv(synthetic_small / "clips.csv")
    row = clips.iloc[0]
    curator = make_user("curator")
    api = APIClient()
    api.force_authenticate(curator)
    response = _upload(
        api, synthetic_small / row.video, [{"x": row.x, "y": row.y, "external_id": "up-1"}]
    )
    assert response.status_code == 201, response.content
    video_id = response.json()["id"]
    assert response.json()["status"] == "pending"
    wait_for(
        lambda: Video.objects.get(pk=video_id).status in ("ready", "failed"),
        timeout=90,
        what="the worker to ingest the video",
    )
    video = Video.objects.get(pk=video_id)
    assert video.status == "ready", video.error
    assert (video.width, video.height) == (400, 300)
    assert len(video.sha256) == 64
    clip = Clip.objects.get(external_id="up-1")
    assert clip.video_id == video_id and len(clip.track) == 16
    assert clip.vcl >= clip.vsl >= 0
    status = api.get(f"/api/videos/{video_id}/").json()
    assert status["status"] == "ready" and status["clip_ids"] == ["up-1"]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_file_with_a_video_signature_but_no_video_ends_as_a_clear_error_on_its_video(
    celery_worker_process, make_user, tmp_path: Path
) -> None:
    # An MP4 box header followed by an SVG passes the upload's signature check; the decoder
    # in the worker finds no video in it.
    fake = tmp_path / "clip.mp4"
    svg = b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"
    fake.write_bytes(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + svg)
    api = APIClient()
    api.force_authenticate(make_user("curator"))
    response = _upload(api, fake, [{"x": 10, "y": 10}])
    assert response.status_code == 201, response.content
    video_id = response.json()["id"]
    wait_for(lambda: Video.objects.get(pk=video_id).status == "failed", timeout=60, what="failure")
    video = Video.objects.get(pk=video_id)
    assert "not a readable video" in video.error
    assert not Clip.objects.filter(video=video).exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("case", "message"),
    [("outside", "outside"), ("zero_frames", "frames"), ("corrupt", "not a readable video")],
)
def test_bad_videos_fail_with_a_clear_error_and_no_clip(
    case: str, message: str, make_user, synthetic_small: Path, tmp_path: Path
) -> None:
    from annotation.ingest.services import Target, video_create, video_ingest

    clips = pd.read_csv(synthetic_small / "clips.csv")
    source = synthetic_small / clips.video.iloc[0]
    target = Target(x=float(clips.x.iloc[0]), y=float(clips.y.iloc[0]))
    if case == "outside":
        target = Target(x=2000, y=10)
    elif case == "zero_frames":
        import cv2

        source = tmp_path / "empty.avi"
        writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"MJPG"), 15, (64, 48))
        writer.release()
    elif case == "corrupt":
        data = bytearray(source.read_bytes())
        data[100:] = bytes(len(data) - 100)  # keep the header, zero the rest
        source = tmp_path / "corrupt.mp4"
        source.write_bytes(bytes(data))
    with source.open("rb") as handle:
        video = video_create(
            fileobj=handle, original_name=source.name, patient_code="P9", pixel_size_um=0.5,
            targets=[target], uploaded_by=make_user("curator"), enqueue=False,
        )  # fmt: skip
    video = video_ingest(video_id=video.pk)
    assert video.status == "failed"
    assert message in video.error
    assert not video.clips.exists()


@pytest.mark.django_db
def test_an_upload_with_another_extension_is_refused(make_user, tmp_path: Path) -> None:
    api = APIClient()
    api.force_authenticate(make_user("curator"))
    page = tmp_path / "evil.html"
    page.write_text("<script>alert(1)</script>")
    response = _upload(api, page, [{"x": 1, "y": 1}])
    assert response.status_code == 400
    assert "not an MP4 or AVI file" in response.json()["detail"]
    assert not Video.objects.exists()


@pytest.mark.django_db
def test_experts_and_trainees_cannot_reach_curator_pages_or_the_clip_api(make_user) -> None:
    for role in ("expert", "trainee"):
        client = Client()
        client.login(username=make_user(role).username, password=PASSWORD)
        assert client.get("/clips/").status_code == 403
        assert client.get("/videos/upload/").status_code == 403
        assert client.get("/api/clips/").status_code == 403
        assert client.get("/api/videos/").status_code == 403


def test_anonymous_users_are_sent_to_the_login_page(client) -> None:
    response = client.get("/clips/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert client.get("/api/clips/").status_code in (401, 403)


@pytest.mark.django_db
def test_curators_see_the_clip_list_and_a_clip_page(make_user, synthetic_small: Path) -> None:
    from django.core.management import call_command

    call_command("import_dataset", str(synthetic_small), "--no-progress")
    client = Client()
    client.login(username=make_user("curator").username, password=PASSWORD)
    listing = client.get("/clips/")
    assert listing.status_code == 200
    assert b"c0001" in listing.content and b"P0001" in listing.content
    page = client.get("/clips/c0001/")
    assert page.status_code == 200
    assert b'id="crop-canvas"' in page.content and b"player-data" in page.content
    assert "Content-Security-Policy" in page.headers
    clip = Clip.objects.get(external_id="c0001")
    strip = client.get(clip.filmstrip_file.url)
    assert strip.status_code == 200 and strip["Content-Type"] == "image/png"
    api = client.get("/api/clips/c0001/").json()
    assert api["clip_id"] == "c0001" and set(api["kinematics"]) >= {"vcl", "vsl", "alh", "bcf"}


@pytest.mark.django_db
def test_token_auth_and_the_openapi_schema(make_user) -> None:
    user = make_user("curator")
    token = APIClient().post("/api/token/", {"username": user.username, "password": PASSWORD})
    assert token.status_code == 200
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.json()['token']}")
    assert api.get("/api/clips/").status_code == 200
    schema = api.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/videos/" in schema.content and b"/api/clips/{clip_id}/" in schema.content


@pytest.mark.django_db
def test_media_paths_cannot_leave_the_media_folder(make_user) -> None:
    client = Client()
    client.login(username=make_user("curator").username, password=PASSWORD)
    for path in (
        "/media/../config/settings.py",
        "/media/%2e%2e/%2e%2e/etc/passwd",
        "/media//etc/passwd",
    ):
        assert client.get(path).status_code == 404
