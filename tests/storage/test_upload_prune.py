"""Abandoned uploads straight to the bucket: the prune aborts their multipart uploads on the S3
server (moto) and expires their rows; a fresh upload, one still receiving parts and one being
completed are kept; a dry run changes nothing."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
import urllib.request
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from annotation import storage as media_storage
from annotation.ingest import services
from annotation.ingest.upload_prune import uploads_prune
from annotation.models import AuditEvent, DirectUpload
from tests.conftest import wait_for
from tests.storage.conftest import BUCKET

pytestmark = [pytest.mark.django_db(transaction=True)]
PART = 5 * 1024 * 1024  # the tests' MERSV_DIRECT_UPLOAD_PART_MB
IDLE = dt.timedelta(seconds=1)  # the TTL of these tests: an upload idle for 1 s is abandoned


def _start(api: APIClient, size: int, *, sha256: str = "") -> dict:
    answer = api.post(
        "/api/uploads/",
        {"name": "big.mp4", "size": size, "patient_code": "P-prune", "pixel_size_um": 0.5,
         "sha256": sha256},
        format="json",
    )  # fmt: skip
    assert answer.status_code == 201, answer.content
    return answer.json()


def _put(url: str, data: bytes) -> str:
    request = urllib.request.Request(  # noqa: S310 (loopback)
        url, data=data, method="PUT", headers={"Content-Type": "application/octet-stream"}
    )
    with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310
        return answer.headers["ETag"]


def _bucket_uploads(s3) -> dict[str, str]:
    """The bucket's multipart uploads under this session's prefix: upload id -> key."""
    listed = s3.client().list_multipart_uploads(Bucket=BUCKET, Prefix=f"{s3.prefix}/")
    return {u["UploadId"]: u["Key"] for u in listed.get("Uploads", [])}


def _parts_gone(s3, upload: DirectUpload) -> bool:
    client = s3.client()
    try:
        client.list_parts(
            Bucket=BUCKET,
            Key=media_storage.object_storage(media_storage.MEDIA).key(upload.key),
            UploadId=upload.upload_id,
        )
    except client.exceptions.ClientError as exc:
        return exc.response["Error"]["Code"] == "NoSuchUpload"
    return False


@pytest.fixture
def curator_api(make_user) -> APIClient:
    api = APIClient()
    api.force_authenticate(make_user("curator"))
    return api


def test_an_abandoned_upload_is_aborted_its_parts_gone_and_its_completion_refused(
    object_storage, curator_api: APIClient
) -> None:
    body = _start(curator_api, 2 * PART)
    etag = _put(body["parts"][0]["url"], b"\0" * PART)  # one part of two, then nothing
    upload = DirectUpload.objects.get(token=body["id"])
    assert upload.upload_id in _bucket_uploads(object_storage)
    time.sleep(2 * IDLE.total_seconds())

    summary = uploads_prune(older_than=IDLE)

    assert body["id"] in summary.rows_expired
    upload.refresh_from_db()
    assert upload.status == "expired" and upload.finished_at is not None
    assert "abandoned" in upload.error
    assert upload.upload_id not in _bucket_uploads(object_storage)
    assert _parts_gone(object_storage, upload)
    event = AuditEvent.objects.get(action="upload_expired", object_id=str(upload.pk))
    assert event.username == "uploads_prune" and event.detail["size"] == 2 * PART
    # The browser coming back: its state says expired (the page's script starts a new upload),
    # and a completion is refused with the reason.
    assert curator_api.get(f"/api/uploads/{body['id']}/").json()["status"] == "expired"
    late = curator_api.post(
        f"/api/uploads/{body['id']}/complete/",
        {"parts": [{"part_number": 1, "etag": etag}, {"part_number": 2, "etag": etag}]},
        format="json",
    )
    assert late.status_code == 409 and "upload the file again" in late.json()["detail"]
    # A second pass finds nothing more to do.
    again = uploads_prune(older_than=IDLE)
    assert body["id"] not in again.rows_expired
    assert AuditEvent.objects.filter(action="upload_expired", object_id=str(upload.pk)).count() == 1


def test_a_fresh_upload_and_one_still_receiving_parts_are_kept(
    object_storage, curator_api: APIClient
) -> None:
    fresh = _start(curator_api, PART + 10)
    active = _start(curator_api, 2 * PART)
    # Started three hours ago, but a part arrives now: the browser is still at it.
    DirectUpload.objects.filter(token=active["id"]).update(
        created_at=timezone.now() - dt.timedelta(hours=3)
    )
    _put(active["parts"][0]["url"], b"\0" * PART)

    summary = uploads_prune(older_than=dt.timedelta(hours=1))

    assert fresh["id"] not in summary.rows_expired and active["id"] in summary.rows_kept_active
    held = _bucket_uploads(object_storage)
    for token in (fresh["id"], active["id"]):
        upload = DirectUpload.objects.get(token=token)
        assert upload.status == "open" and upload.upload_id in held
    assert not AuditEvent.objects.filter(action="upload_expired").exists()


@pytest.mark.worker
def test_an_upload_being_completed_is_kept_and_becomes_a_video(
    s3_worker: Path, object_storage, curator_api: APIClient, synthetic_small: Path
) -> None:
    video_bytes = next(synthetic_small.glob("videos/*")).read_bytes()
    payload = video_bytes + b"\0" * (PART + 100 - len(video_bytes))
    body = _start(curator_api, len(payload), sha256=hashlib.sha256(payload).hexdigest())
    parts = [
        {"part_number": p["part_number"],
         "etag": _put(p["url"], payload[(p["part_number"] - 1) * PART : p["part_number"] * PART])}
        for p in body["parts"]
    ]  # fmt: skip
    upload = DirectUpload.objects.get(token=body["id"])
    time.sleep(2 * IDLE.total_seconds())  # idle past the TTL when its completion comes
    locked, go = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def complete() -> None:
        # The completion as the API runs it, holding the row's lock while the prune runs.
        try:
            with transaction.atomic():
                DirectUpload.objects.select_for_update().get(pk=upload.pk)
                locked.set()
                go.wait(30)
                services.direct_upload_complete(
                    upload_id=upload.pk, parts=parts, by=upload.created_by
                )
        except BaseException as exc:
            failures.append(exc)
            locked.set()

    thread = threading.Thread(target=complete)
    thread.start()
    assert locked.wait(30)
    during = uploads_prune(older_than=IDLE)
    go.set()
    thread.join(60)
    assert not failures, failures
    assert body["id"] in during.rows_skipped_locked and body["id"] not in during.rows_expired
    # After the completion committed, the upload is the worker's: a pass leaves it alone.
    after = uploads_prune(older_than=IDLE)
    assert body["id"] not in after.rows_expired
    wait_for(
        lambda: DirectUpload.objects.get(pk=upload.pk).status in ("ready", "failed"),
        timeout=120,
        what="the worker to verify the upload",
    )
    upload.refresh_from_db()
    assert upload.status == "ready", upload.error
    assert not AuditEvent.objects.filter(action="upload_expired", object_id=str(upload.pk)).exists()


def test_a_dry_run_lists_the_abandoned_upload_and_changes_nothing(
    object_storage, curator_api: APIClient
) -> None:
    body = _start(curator_api, PART + 10)
    time.sleep(2 * IDLE.total_seconds())
    out = StringIO()
    call_command("uploads_prune", "--dry-run", "--older-than-hours", "0.0003", stdout=out)
    assert f"would abort upload {body['id']}" in out.getvalue()
    upload = DirectUpload.objects.get(token=body["id"])
    assert upload.status == "open" and upload.finished_at is None
    assert upload.upload_id in _bucket_uploads(object_storage)
    assert not AuditEvent.objects.filter(action="upload_expired").exists()
    # The same command without --dry-run aborts it.
    call_command("uploads_prune", "--older-than-hours", "0.0003", stdout=StringIO())
    assert DirectUpload.objects.get(token=body["id"]).status == "expired"
    assert upload.upload_id not in _bucket_uploads(object_storage)


def test_a_multipart_upload_without_an_open_row_is_aborted_only_under_the_upload_prefix(
    object_storage,
) -> None:
    storage = media_storage.object_storage(media_storage.MEDIA)
    client = storage.client()
    orphan_key = storage.key("videos/orphan.mp4")  # its row never committed
    elsewhere_key = storage.key("elsewhere/keep.bin")  # not an upload's key
    orphan = client.create_multipart_upload(Bucket=BUCKET, Key=orphan_key)["UploadId"]
    elsewhere = client.create_multipart_upload(Bucket=BUCKET, Key=elsewhere_key)["UploadId"]
    time.sleep(2 * IDLE.total_seconds())

    dry = uploads_prune(older_than=IDLE, dry_run=True)
    assert orphan_key in dry.orphans_aborted and orphan in _bucket_uploads(object_storage)
    summary = uploads_prune(older_than=IDLE)

    assert orphan_key in summary.orphans_aborted and elsewhere_key not in summary.orphans_aborted
    held = _bucket_uploads(object_storage)
    assert orphan not in held and elsewhere in held
    event = AuditEvent.objects.get(action="upload_expired", object_id=orphan_key)
    assert event.object_type == "s3.multipart"
    client.abort_multipart_upload(Bucket=BUCKET, Key=elsewhere_key, UploadId=elsewhere)


def test_the_command_refuses_a_ttl_that_is_not_positive(object_storage) -> None:
    with pytest.raises(CommandError, match="positive number of hours"):
        call_command("uploads_prune", "--older-than-hours", "0")


def test_the_database_refuses_a_ready_upload_without_a_video_or_an_expired_one_without_a_time(
    object_storage, curator_api: APIClient
) -> None:
    body = _start(curator_api, PART + 10)
    rows = DirectUpload.objects.filter(token=body["id"])
    with pytest.raises(IntegrityError), transaction.atomic():
        rows.update(status="ready", finished_at=timezone.now())
    with pytest.raises(IntegrityError), transaction.atomic():
        rows.update(status="expired")
    with pytest.raises(IntegrityError), transaction.atomic():
        rows.update(status="lost")
    assert rows.get().status == "open"
