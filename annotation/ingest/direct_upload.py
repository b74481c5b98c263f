"""Uploads straight to the bucket: presigned S3 multipart uploads, verified before ingestion.

The web process only signs: ``direct_upload_start`` opens a multipart upload and returns one
presigned ``upload_part`` URL per part, the browser PUTs the parts to the bucket (no byte
passes through a web worker), ``direct_upload_complete`` asks the bucket to join them, and a
worker (``direct_upload_verify``) reads the object once: its size must be the declared one
and within MERSV_DIRECT_UPLOAD_MAX_MB, its first bytes an MP4 or AVI signature, and its
SHA-256 the declared one (when the client gave it). Only then is the Video created, with the
object as its file and the SHA-256 every worker checks its cached copy against; a refused
upload is deleted from the bucket. An interrupted upload resumes: ``direct_upload_parts``
lists the parts the bucket holds and signs fresh URLs for the others.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from annotation.access.audit import audit_record
from annotation.errors import ConflictError, ServiceError
from annotation.ingest.services import (
    _video_suffix,
    patient_get_or_create,
    video_first_frame_enqueue,
)
from annotation.models import DirectUpload, Video
from annotation.storage import CHUNK_BYTES, MEDIA, cache, is_local, object_storage

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# S3 allows at most 10,000 parts per upload.
MAX_PARTS = 10_000


@dataclass(frozen=True)
class SignedPart:
    part_number: int
    url: str


def _client_and_bucket() -> tuple[Any, str]:
    storage = object_storage(MEDIA)
    return storage.client(), storage.bucket_name


def _key(upload: DirectUpload) -> str:
    return str(object_storage(MEDIA).key(upload.key))


def direct_uploads_enabled() -> bool:
    return not is_local(MEDIA)


def _part_urls(upload: DirectUpload, numbers: list[int]) -> list[SignedPart]:
    client, bucket = _client_and_bucket()
    return [
        SignedPart(
            part_number=n,
            url=client.generate_presigned_url(
                "upload_part",
                Params={
                    "Bucket": bucket,
                    "Key": _key(upload),
                    "UploadId": upload.upload_id,
                    "PartNumber": n,
                },
                ExpiresIn=settings.S3_URL_EXPIRE_S,
            ),
        )
        for n in numbers
    ]


def part_count(upload: DirectUpload) -> int:
    return max(1, math.ceil(upload.size_bytes / upload.part_bytes))


def direct_upload_start(
    *,
    original_name: str,
    size_bytes: int,
    patient_code: str,
    pixel_size_um: float,
    sha256: str = "",
    created_by: User | None,
) -> tuple[DirectUpload, list[SignedPart]]:
    """Open a multipart upload of one video; its row and the presigned URL of every part."""
    if not direct_uploads_enabled():
        raise ServiceError(
            "uploads straight to the bucket need object storage (MERSV_STORAGE_URL); "
            "use the upload form, which sends the file to this server"
        )
    suffix = _video_suffix(original_name)
    limit = settings.DIRECT_UPLOAD_MAX_MB * 1024 * 1024
    if not 0 < size_bytes <= limit:
        raise ServiceError(
            f"the file has {size_bytes} bytes; this server accepts 1 byte to "
            f"{settings.DIRECT_UPLOAD_MAX_MB} MB (MERSV_DIRECT_UPLOAD_MAX_MB)"
        )
    if not 0 < pixel_size_um <= 100:
        raise ServiceError("the pixel size must be a positive number of micrometres (<= 100)")
    sha256 = sha256.strip().lower()
    if sha256 and not _SHA256.match(sha256):
        raise ServiceError("sha256 must be 64 hexadecimal digits (or left out)")
    code = patient_code.strip()
    if not code or len(code) > 64:
        raise ServiceError("a patient code must have 1 to 64 characters")
    part_bytes = settings.DIRECT_UPLOAD_PART_MB * 1024 * 1024
    part_bytes = max(part_bytes, math.ceil(size_bytes / MAX_PARTS))
    key = f"videos/{uuid.uuid4().hex}{suffix}"  # generated: nothing typed decides the key
    client, bucket = _client_and_bucket()
    storage = object_storage(MEDIA)
    opened = client.create_multipart_upload(
        Bucket=bucket, Key=storage.key(key), ContentType="application/octet-stream"
    )
    upload = DirectUpload.objects.create(
        token=uuid.uuid4(),
        key=key,
        upload_id=opened["UploadId"],
        original_name="".join(c for c in Path(original_name).name if c.isprintable())[:255],
        patient_code=code,
        pixel_size_um=pixel_size_um,
        size_bytes=size_bytes,
        part_bytes=part_bytes,
        sha256=sha256,
        created_by=created_by,
    )
    return upload, _part_urls(upload, list(range(1, part_count(upload) + 1)))


def direct_upload_parts(*, upload: DirectUpload) -> tuple[list[dict[str, Any]], list[SignedPart]]:
    """An open upload's parts the bucket holds (number and ETag), and fresh URLs for the
    missing ones."""
    if upload.status != DirectUpload.Status.OPEN:
        return [], []
    client, bucket = _client_and_bucket()
    done: list[dict[str, Any]] = []
    marker = 0
    while True:
        listed = client.list_parts(
            Bucket=bucket, Key=_key(upload), UploadId=upload.upload_id, PartNumberMarker=marker
        )
        done += [
            {"part_number": int(p["PartNumber"]), "etag": p["ETag"]}
            for p in listed.get("Parts", [])
        ]
        if not listed.get("IsTruncated"):
            break
        marker = int(listed["NextPartNumberMarker"])
    held = {p["part_number"] for p in done}
    missing = [n for n in range(1, part_count(upload) + 1) if n not in held]
    return sorted(done, key=lambda p: int(p["part_number"])), _part_urls(upload, missing)


def direct_upload_complete(
    *, upload_id: int, parts: list[dict[str, Any]], by: User | None
) -> DirectUpload:
    """Join the parts (``[{"part_number": n, "etag": "..."}]``, every part once) and queue the
    verification. Takes the upload's row lock: a second completion is refused (409)."""
    with transaction.atomic():
        upload = DirectUpload.objects.select_for_update().get(pk=upload_id)
        if upload.created_by_id != (by.pk if by else None):
            raise ServiceError("this upload was started by another account")
        if upload.status != DirectUpload.Status.OPEN:
            raise ConflictError(f"the upload is {upload.get_status_display().lower()} already")
        numbers = [int(p["part_number"]) for p in parts]
        expected = list(range(1, part_count(upload) + 1))
        if sorted(numbers) != expected:
            raise ServiceError(
                f"the upload has {len(expected)} parts (1..{len(expected)}); "
                f"{len(numbers)} were listed, each must be listed once with its ETag"
            )
        client, bucket = _client_and_bucket()
        try:
            client.complete_multipart_upload(
                Bucket=bucket,
                Key=_key(upload),
                UploadId=upload.upload_id,
                MultipartUpload={
                    "Parts": [
                        {"PartNumber": int(p["part_number"]), "ETag": str(p["etag"])}
                        for p in sorted(parts, key=lambda p: int(p["part_number"]))
                    ]
                },
            )
        except client.exceptions.ClientError as exc:
            raise ServiceError(f"the bucket refused to join the parts: {exc}") from exc
        upload.status = DirectUpload.Status.VERIFYING
        upload.save(update_fields=["status"])
        from annotation.tasks import verify_direct_upload

        transaction.on_commit(lambda: verify_direct_upload.delay(upload.pk))
    return upload


def _refuse(upload_id: int, error: str) -> DirectUpload:
    with transaction.atomic():
        upload = DirectUpload.objects.select_for_update().get(pk=upload_id)
        upload.status = DirectUpload.Status.FAILED
        upload.error = error[:2000]
        upload.finished_at = timezone.now()
        upload.save(update_fields=["status", "error", "finished_at"])
    object_storage(MEDIA).delete(upload.key)
    return upload


def direct_upload_verify(*, upload_id: int) -> DirectUpload:
    """The worker's check of a completed upload, then its Video (see the module docstring).
    A redelivered task finds the upload ready or failed and returns it."""
    from annotation.ingest.video_io import sniff_video_container

    upload = DirectUpload.objects.get(pk=upload_id)
    if upload.status != DirectUpload.Status.VERIFYING:
        return upload
    client, bucket = _client_and_bucket()
    head = client.head_object(Bucket=bucket, Key=_key(upload))
    size = int(head["ContentLength"])
    limit = settings.DIRECT_UPLOAD_MAX_MB * 1024 * 1024
    if size != upload.size_bytes or size > limit:
        return _refuse(
            upload_id,
            f"the uploaded object has {size} bytes, not the declared {upload.size_bytes} "
            f"(at most {settings.DIRECT_UPLOAD_MAX_MB} MB); upload the file again",
        )
    # One read of the object: the signature from its first bytes, the SHA-256 of all, and a
    # copy in this worker's cache, so its ingestion needs no second download.
    body = client.get_object(Bucket=bucket, Key=_key(upload))["Body"]
    digest = hashlib.sha256()
    scratch = Path(settings.CACHE_ROOT) / "outgoing"
    scratch.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=scratch, prefix="upload-")
    try:
        head_bytes = b""
        with os.fdopen(handle, "wb") as out:
            for chunk in body.iter_chunks(CHUNK_BYTES):
                if len(head_bytes) < 12:
                    head_bytes += chunk[: 12 - len(head_bytes)]
                digest.update(chunk)
                out.write(chunk)
        if sniff_video_container(head_bytes) is None:
            return _refuse(
                upload_id,
                "the file's content is not an MP4 or AVI video (whatever its name says); "
                "upload the microscope's original .mp4 or .avi file",
            )
        sha256 = digest.hexdigest()
        if upload.sha256 and sha256 != upload.sha256:
            return _refuse(
                upload_id,
                f"the uploaded file hashes to {sha256}, not the declared {upload.sha256}: "
                "it changed on the way; upload it again",
            )
        cache().adopt(Path(temporary), sha256=sha256, suffix=Path(upload.key).suffix)
    finally:
        Path(temporary).unlink(missing_ok=True)
    with transaction.atomic():
        upload = DirectUpload.objects.select_for_update().get(pk=upload_id)
        if upload.status != DirectUpload.Status.VERIFYING:
            return upload
        video = Video(
            patient=patient_get_or_create(code=upload.patient_code),
            original_name=upload.original_name,
            pixel_size_um=upload.pixel_size_um,
            uploaded_by=upload.created_by,
            status=Video.Status.NEEDS_TARGETS,
            sha256=sha256,
        )
        video.file.name = upload.key
        video.save()
        upload.status = DirectUpload.Status.READY
        upload.video = video
        upload.finished_at = timezone.now()
        upload.save(update_fields=["status", "video", "finished_at"])
        audit_record(
            action="upload", user=upload.created_by, obj=video,
            detail={
                "original_name": video.original_name, "patient": upload.patient_code,
                "direct": True, "bytes": size,
            },
        )  # fmt: skip
        video_first_frame_enqueue(video_id=video.pk)
    return upload
