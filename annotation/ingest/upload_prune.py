"""Abandoned uploads straight to the bucket: their multipart uploads aborted, their rows expired.

A browser that stops sending parts leaves an incomplete S3 multipart upload (the bucket keeps,
and bills, its parts until it is aborted) and a DirectUpload row in ``open``. ``uploads_prune``
(hourly from the Celery beat: annotation.tasks.prune_direct_uploads; or
``manage.py uploads_prune``) ends both, in two passes:

1. Rows: an ``open`` upload started more than ``older_than`` ago whose newest part (the
   bucket's ListParts) is older too is moved to ``expired`` under its row lock, after the
   bucket has aborted its multipart upload, with an audit event ``upload_expired``. The lock is
   taken with SKIP LOCKED: a row locked at that moment is being completed
   (``direct_upload_complete`` holds the same lock), and is left alone; once completion has
   committed, the row is ``verifying`` and no pass touches it, and a completion that comes
   after the prune finds ``expired`` and is refused (409). The moves are
   open -> verifying | expired only from ``open``, each a write of the state read under the
   lock; the model's constraints keep the finished states consistent.
2. Bucket: every multipart upload under the media storage's ``videos/`` prefix initiated more
   than ``older_than`` ago whose upload id no ``open`` or ``verifying`` row holds (a row that
   failed before its parts were joined, or a start whose row never committed) is aborted and
   audited (``upload_expired``, object type ``s3.multipart``).

``dry_run`` finds the same uploads and changes nothing: no abort, no row, no audit event.
With the local filesystem (no object storage) there are no direct uploads: nothing to do.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from annotation.access.audit import audit_record
from annotation.models import DirectUpload
from annotation.storage import MEDIA, is_local, object_storage

UPLOAD_FOLDER = "videos/"  # where direct_upload_start puts its keys (annotation/ingest/services)


@dataclass
class PruneSummary:
    dry_run: bool
    rows_expired: list[str] = field(default_factory=list)  # upload tokens
    rows_kept_active: list[str] = field(default_factory=list)  # a part sent within the TTL
    rows_skipped_locked: list[str] = field(default_factory=list)  # being completed right now
    orphans_aborted: list[str] = field(default_factory=list)  # bucket keys


def _no_such_upload(exc: Any) -> bool:
    return exc.response.get("Error", {}).get("Code") == "NoSuchUpload"


def _newest_part(client: Any, bucket: str, key: str, upload_id: str) -> dt.datetime | None:
    """When the newest part of a multipart upload arrived (None: no part, or no such upload)."""
    newest: dt.datetime | None = None
    marker = 0
    while True:
        try:
            listed = client.list_parts(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker
            )
        except client.exceptions.ClientError as exc:
            if _no_such_upload(exc):
                return newest
            raise
        for part in listed.get("Parts", []):
            if newest is None or part["LastModified"] > newest:
                newest = part["LastModified"]
        if not listed.get("IsTruncated"):
            return newest
        marker = int(listed["NextPartNumberMarker"])


def _abort(client: Any, bucket: str, key: str, upload_id: str) -> None:
    try:
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except client.exceptions.ClientError as exc:
        if not _no_such_upload(exc):  # already aborted (a pass that died before its commit)
            raise


def _expire_row(pk: int, *, cutoff: dt.datetime, hours: float, summary: PruneSummary) -> None:
    storage = object_storage(MEDIA)
    client, bucket = storage.client(), storage.bucket_name
    with transaction.atomic():
        # SKIP LOCKED: the only other writer of an open row is its completion; it wins.
        upload = (
            DirectUpload.objects.select_for_update(skip_locked=True)
            .filter(pk=pk, status=DirectUpload.Status.OPEN, created_at__lt=cutoff)
            .first()
        )
        if upload is None:  # locked by its completion now, or no longer open
            still_open = DirectUpload.objects.filter(pk=pk, status=DirectUpload.Status.OPEN)
            summary.rows_skipped_locked += [
                str(t) for t in still_open.values_list("token", flat=True)
            ]
            return
        key = storage.key(upload.key)
        newest = _newest_part(client, bucket, key, upload.upload_id)
        if newest is not None and newest >= cutoff:
            summary.rows_kept_active.append(str(upload.token))
            return
        summary.rows_expired.append(str(upload.token))
        if summary.dry_run:
            return
        # Aborted while the lock is held: no completion can start on these parts meanwhile,
        # and an abort that fails leaves the row open for the next pass.
        _abort(client, bucket, key, upload.upload_id)
        upload.status = DirectUpload.Status.EXPIRED
        upload.finished_at = timezone.now()
        upload.error = (
            f"no part arrived for {hours:g} hours (MERSV_DIRECT_UPLOAD_TTL_HOURS): the upload "
            "was abandoned and its parts deleted from the bucket; upload the file again"
        )
        upload.save(update_fields=["status", "finished_at", "error"])
        audit_record(
            action="upload_expired", user=None, username="uploads_prune", obj=upload,
            detail={
                "original_name": upload.original_name, "patient": upload.patient_code,
                "started_by": upload.created_by.get_username() if upload.created_by else "",
                "size": upload.size_bytes, "last_part": newest.isoformat() if newest else None,
            },
        )  # fmt: skip


def _bucket_orphans(*, cutoff: dt.datetime, summary: PruneSummary) -> None:
    storage = object_storage(MEDIA)
    client, bucket = storage.client(), storage.bucket_name
    prefix = storage.key(UPLOAD_FOLDER)
    markers: dict[str, str] = {}
    while True:
        listed = client.list_multipart_uploads(Bucket=bucket, Prefix=prefix, **markers)
        for item in listed.get("Uploads", []):
            if item["Initiated"] >= cutoff:
                continue
            upload_id, key = item["UploadId"], item["Key"]
            # An open row is the first pass's (kept there while parts still arrive); a
            # verifying one is being joined by a worker.
            held = DirectUpload.objects.filter(
                upload_id=upload_id,
                status__in=[DirectUpload.Status.OPEN, DirectUpload.Status.VERIFYING],
            ).exists()
            if held:
                continue
            summary.orphans_aborted.append(key)
            if summary.dry_run:
                continue
            with transaction.atomic():  # an abort that fails takes its audit event back
                audit_record(
                    action="upload_expired", username="uploads_prune",
                    object_type="s3.multipart", object_id=key,
                    detail={
                        "upload_id": upload_id[:200], "initiated": item["Initiated"].isoformat(),
                    },
                )  # fmt: skip
                _abort(client, bucket, key, upload_id)
        if not listed.get("IsTruncated"):
            return
        markers = {
            "KeyMarker": listed["NextKeyMarker"],
            "UploadIdMarker": listed["NextUploadIdMarker"],
        }


def uploads_prune(*, older_than: dt.timedelta, dry_run: bool = False) -> PruneSummary:
    """Abort the multipart uploads abandoned for longer than ``older_than`` and expire their
    rows (see the module docstring). Takes each open row's lock in turn, never two at once."""
    if older_than <= dt.timedelta(0):
        raise ValueError("older_than must be a positive time (hours)")
    summary = PruneSummary(dry_run=dry_run)
    if is_local(MEDIA):
        return summary
    cutoff = timezone.now() - older_than
    hours = older_than.total_seconds() / 3600
    candidates = DirectUpload.objects.filter(
        status=DirectUpload.Status.OPEN, created_at__lt=cutoff
    ).order_by("created_at")
    for pk in candidates.values_list("pk", flat=True):
        _expire_row(pk, cutoff=cutoff, hours=hours, summary=summary)
    _bucket_orphans(cutoff=cutoff, summary=summary)
    return summary
