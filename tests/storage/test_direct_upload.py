"""Uploads straight to the bucket: presigned multipart parts sent over HTTP to the S3 server,
then the worker's verification (size, content signature, SHA-256) before the Video exists."""

from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from annotation.models import DirectUpload, Video
from tests.conftest import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
PART = 5 * 1024 * 1024  # the tests' MERSV_DIRECT_UPLOAD_PART_MB (S3's smallest part)


def _put(url: str, data: bytes) -> str:
    """PUT one part to its presigned URL, as the page's script does; the part's ETag."""
    # A raw body: urllib's default form type would make the server parse the part as a form.
    request = urllib.request.Request(  # noqa: S310 (loopback)
        url, data=data, method="PUT", headers={"Content-Type": "application/octet-stream"}
    )
    with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310
        return answer.headers["ETag"]


def _send(api: APIClient, payload: bytes, *, name: str = "big.mp4", sha256: str | None = None):
    started = api.post(
        "/api/uploads/",
        {
            "name": name, "size": len(payload), "patient_code": "P-direct",
            "pixel_size_um": 0.5, "sha256": sha256 or hashlib.sha256(payload).hexdigest(),
        },
        format="json",
    )  # fmt: skip
    assert started.status_code == 201, started.content
    body = started.json()
    assert body["part_bytes"] == PART and len(body["parts"]) == -(-len(payload) // PART)
    parts = []
    for part in body["parts"]:
        n = part["part_number"]
        parts.append(
            {"part_number": n, "etag": _put(part["url"], payload[(n - 1) * PART : n * PART])}
        )
    done = api.post(f"/api/uploads/{body['id']}/complete/", {"parts": parts}, format="json")
    assert done.status_code == 202, done.content
    assert done.json()["status"] == "verifying"
    return body["id"]


def _wait_verified(token: str) -> DirectUpload:
    wait_for(
        lambda: DirectUpload.objects.get(token=token).status in ("ready", "failed"),
        timeout=120,
        what="the worker to verify the upload",
    )
    return DirectUpload.objects.get(token=token)


def test_a_video_sent_in_presigned_parts_is_verified_and_becomes_a_video(
    s3_worker: Path, object_storage, make_user, synthetic_small: Path
) -> None:
    api = APIClient()
    api.force_authenticate(make_user("curator"))
    video_bytes = next(synthetic_small.glob("videos/*")).read_bytes()
    # Padded past two parts: the bytes after the video are part of the file as sent.
    payload = video_bytes + b"\0" * (2 * PART + 1000 - len(video_bytes))
    token = _send(api, payload)
    upload = _wait_verified(token)
    assert upload.status == "ready", upload.error
    video = Video.objects.get(pk=upload.video_id)
    assert video.sha256 == hashlib.sha256(payload).hexdigest()
    assert video.status == "needs_targets", video.error
    assert video.original_name == "big.mp4"
    assert f"media/{video.file.name}" in object_storage.keys("media/videos/")
    # The worker kept the verified copy in its cache, under the content hash.
    cached = [p.name for p in (s3_worker / "cache" / "files").rglob("*") if p.is_file()]
    assert f"{video.sha256}.mp4" in cached
    # The worker goes on to draw the first frame (its own task, on its own queue) into the bucket.
    wait_for(
        lambda: (
            Video.objects.filter(pk=video.pk).exclude(first_frame="").exists()
            or Video.objects.get(pk=video.pk).status == "failed"
        ),
        timeout=180,
        what="the first frame",
    )
    video.refresh_from_db()
    assert video.status == "needs_targets", video.error
    assert f"media/{video.first_frame.name}" in object_storage.keys("media/")
    state = api.get(f"/api/uploads/{token}/").json()
    assert state["status"] == "ready" and state["video_id"] == video.pk
    # Completing it again is refused: the parts are joined once.
    parts = [{"part_number": n, "etag": "x"} for n in (1, 2, 3)]
    again = api.post(f"/api/uploads/{token}/complete/", {"parts": parts}, format="json")
    assert again.status_code == 409 and "ready already" in str(again.content)


def test_an_upload_whose_bytes_differ_from_the_declared_hash_is_refused_and_deleted(
    s3_worker: Path, object_storage, make_user, synthetic_small: Path
) -> None:
    api = APIClient()
    api.force_authenticate(make_user("curator"))
    payload = next(synthetic_small.glob("videos/*")).read_bytes()
    token = _send(api, payload, sha256="ab" * 32)
    upload = _wait_verified(token)
    assert upload.status == "failed" and "not the declared" in upload.error
    assert upload.video_id is None and not Video.objects.exists()
    assert f"media/{upload.key}" not in object_storage.keys("media/videos/")


def test_an_upload_that_is_no_video_is_refused_by_its_content_signature(
    s3_worker: Path, object_storage, make_user
) -> None:
    api = APIClient()
    api.force_authenticate(make_user("curator"))
    token = _send(api, b"<html>not a video</html>" * 100, name="page.mp4")
    upload = _wait_verified(token)
    assert upload.status == "failed" and "not an MP4 or AVI" in upload.error
    assert not Video.objects.exists()


def test_an_upload_over_the_size_limit_or_without_object_storage_is_refused_at_the_start(
    object_storage, make_user, settings
) -> None:
    api = APIClient()
    api.force_authenticate(make_user("curator"))
    settings.DIRECT_UPLOAD_MAX_MB = 1
    big = {"name": "a.mp4", "size": 2 * 1024 * 1024, "patient_code": "P", "pixel_size_um": 0.5}
    answer = api.post("/api/uploads/", big, format="json")
    assert answer.status_code == 400 and "MERSV_DIRECT_UPLOAD_MAX_MB" in str(answer.content)
    assert not DirectUpload.objects.exists()
    expert = APIClient()
    expert.force_authenticate(make_user("expert"))
    assert expert.post("/api/uploads/", {**big, "size": 10}, format="json").status_code == 403
    from config.settings import storages_setting

    settings.STORAGES = storages_setting("")
    answer = api.post("/api/uploads/", {**big, "size": 10}, format="json")
    assert answer.status_code == 400 and "need object storage" in str(answer.content)
