"""Writes of ingestion: patients, videos and their ingestion, clips.

Each service takes keyword-only arguments and runs in one transaction; Celery tasks are sent
with `transaction.on_commit`, so a worker never sees a row that was rolled back.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files import File
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from annotation.access.audit import audit_record
from annotation.errors import ConflictError
from annotation.errors import ServiceError as ServiceError  # raised here; importers keep this path
from annotation.models import Clip, DirectUpload, Patient, Rating, Video, VideoAttempt
from annotation.storage import (
    CHUNK_BYTES,
    MEDIA,
    cache,
    file_sha256_stream,
    is_local,
    media_local_path,
    media_publish,
    media_unpublish,
    object_storage,
)

if TYPE_CHECKING:
    from annotation.ingest.isolation import DecodeLimits
    from annotation.ingest.pipeline import IngestConfig, VideoOutput

log = logging.getLogger(__name__)

ALLOWED_VIDEO_SUFFIXES = (".mp4", ".avi")


def patient_get_or_create(*, code: str) -> Patient:
    code = code.strip()
    if not code or len(code) > 64:
        raise ServiceError("a patient code must have 1 to 64 characters")
    patient, _ = Patient.objects.get_or_create(code=code)
    return patient


@dataclass(frozen=True)
class Target:
    x: float
    y: float
    external_id: str = ""


def _video_suffix(name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix not in ALLOWED_VIDEO_SUFFIXES:
        raise ServiceError(
            f"{name!r} is not an MP4 or AVI file; upload a .mp4 or .avi microscope video"
        )
    return suffix


def video_sniff_format(fileobj: IO[bytes]) -> str:
    """The container ("MP4" or "AVI") named by the file's first bytes; else ServiceError.

    Checked before the file is stored. Leaves the file's position at the start.
    """
    from annotation.ingest.video_io import sniff_video_container

    fileobj.seek(0)
    container = sniff_video_container(fileobj.read(12))
    fileobj.seek(0)
    if container is None:
        raise ServiceError(
            "the file's content is not an MP4 or AVI video (whatever its name says); "
            "upload the microscope's original .mp4 or .avi file"
        )
    return container


# The most targets one video may have, over all its attempts (one clip each).
MAX_TARGETS_PER_VIDEO = 50


def video_create(
    *,
    fileobj: IO[bytes],
    original_name: str,
    patient_code: str,
    pixel_size_um: float,
    targets: Sequence[Target] = (),
    uploaded_by: User | None,
    enqueue: bool = True,
) -> Video:
    """Store an uploaded video; the worker makes its first-frame preview and candidates.

    Without targets the video waits in the "needs targets" state until a curator tags them
    on its page (``video_ingest_start``), so a large file is sent once. With targets (the
    one-step upload of the API, the benchmarks) its ingestion is queued at once too.
    """
    suffix = _video_suffix(original_name)
    video_sniff_format(fileobj)
    if not 0 < pixel_size_um <= 100:
        raise ServiceError("the pixel size must be a positive number of micrometres (<= 100)")
    if targets:
        _targets_checked(Video(), 0, targets)  # before the file is stored
    with transaction.atomic():
        patient = patient_get_or_create(code=patient_code)
        video = Video(
            patient=patient,
            # Shown on pages only; control characters (NUL: PostgreSQL refuses it) dropped.
            original_name="".join(c for c in Path(original_name).name if c.isprintable())[:255],
            pixel_size_um=pixel_size_um,
            uploaded_by=uploaded_by,
            status=Video.Status.NEEDS_TARGETS,
        )
        if not is_local(MEDIA):
            # Workers on other hosts verify their cached copy against it (annotation.storage).
            video.sha256 = file_sha256_stream(fileobj)
        # A generated name: nothing the user typed decides where the file is written.
        video.file.save(f"{uuid.uuid4().hex}{suffix}", File(fileobj), save=False)
        video.save()
        audit_record(
            action="upload", user=uploaded_by, obj=video,
            detail={"original_name": video.original_name, "patient": patient.code},
        )  # fmt: skip
        # A video uploaded with its targets needs no first frame to be tagged on: it is made
        # only if the ingestion fails (for the retry), so the one-step path costs no more.
        if enqueue and not targets:
            video_first_frame_enqueue(video_id=video.pk)
        if targets:
            # The upload's own event records it: no second event for the same request.
            video_ingest_start(
                video_id=video.pk,
                targets=targets,
                requested_by=uploaded_by,
                enqueue=enqueue,
                audit=False,
            )
            video.refresh_from_db()
    return video


def _targets_checked(video: Video, kept: int, targets: Sequence[Target]) -> list[dict[str, object]]:
    """The new targets as stored, after the checks a curator can fix: some given, not too
    many, inside the frame (when its size is known), clip ids free."""
    if not targets:
        raise ServiceError("tag at least one target sperm in the first frame")
    if kept + len(targets) > MAX_TARGETS_PER_VIDEO:
        raise ServiceError(
            f"at most {MAX_TARGETS_PER_VIDEO} targets per video "
            f"({kept} have clips already, {len(targets)} given)"
        )
    for t in targets:
        if not (math.isfinite(t.x) and math.isfinite(t.y) and t.x >= 0 and t.y >= 0):
            raise ServiceError(f"target ({t.x}, {t.y}) needs two non-negative numbers")
        if video.width and video.height and not (t.x < video.width and t.y < video.height):
            raise ServiceError(
                f"target ({t.x:g}, {t.y:g}) lies outside the {video.width}x{video.height} frame"
            )
    used_ids = [t.external_id for t in targets if t.external_id]
    if len(set(used_ids)) != len(used_ids):
        raise ServiceError("two targets share one clip id")
    taken = set(Clip.objects.filter(external_id__in=used_ids).values_list("external_id", flat=True))
    if taken:
        raise ServiceError(f"clip id(s) already in use: {', '.join(sorted(taken))}")
    return [{"x": t.x, "y": t.y, "external_id": t.external_id} for t in targets]


def _targets_placed(
    targets: list[dict[str, object]], with_clips: set[int], new: list[dict[str, object]]
) -> tuple[list[dict[str, object]], list[int]]:
    """The video's targets once ``new`` ones are given, and the index each new one gets.

    A target keeps its index for good once it has a clip (the clip is known by it). The
    places of targets without a clip (lost or failed) are taken by the new targets in order,
    so a lost target moved by the curator keeps its place; the rest go at the end. A lost
    target given no new one is marked dropped (the attempt that lost it keeps it), or left
    out when nothing with a clip follows it.
    """
    placed = list(targets)
    free = [i for i in range(len(placed)) if i not in with_clips]
    indices = []
    for position, target in enumerate(new):
        index = free[position] if position < len(free) else len(placed)
        if index == len(placed):
            placed.append(target)
        else:
            placed[index] = target
        indices.append(index)
    for index in free[len(new) :]:
        placed[index] = {**placed[index], "dropped": True}
    while placed and placed[-1].get("dropped"):
        placed.pop()
    return placed, indices


def video_ingest_start(
    *,
    video_id: int,
    targets: Sequence[Target],
    requested_by: User | None,
    enqueue: bool = True,
    audit: bool = True,
) -> VideoAttempt:
    """Queue an ingestion attempt of a stored video with these targets: the first one of a
    video uploaded without targets, or a retry of a failed one with new or moved targets, or
    more targets for a video that has clips.

    Clips of earlier attempts are kept, never replaced: they may have votes and may be in
    frozen dataset versions. So a retry tracks only the new targets: they take the places of
    the targets without a clip (those a failed or partly failed attempt lost, which stay in
    its history), in order, and the rest are added (see ``_targets_placed``).

    Takes the video's row lock (SELECT ... FOR UPDATE) for the check and the write: of two
    requests at once, the second waits, sees the video pending and is refused (409).
    """
    with transaction.atomic():
        video = Video.objects.select_for_update().get(pk=video_id)
        if video.status in (Video.Status.PENDING, Video.Status.PROCESSING):
            raise ConflictError(
                f"video {video.pk} is being ingested already; wait until it is ready or failed"
            )
        with_clips = set(video.clips.values_list("target_index", flat=True))
        new = _targets_checked(video, len(with_clips), targets)
        number = (video.attempts.aggregate(n=Max("number"))["n"] or 0) + 1
        video.targets, indices = _targets_placed(video.targets, with_clips, new)
        video.status = Video.Status.PENDING
        video.error = ""
        video.started_at = video.finished_at = None
        video.save(update_fields=["targets", "status", "error", "started_at", "finished_at"])
        attempt = VideoAttempt.objects.create(
            video=video,
            number=number,
            targets=[{**t, "index": i} for t, i in zip(new, indices, strict=True)],
            requested_by=requested_by,
        )
        if audit:
            audit_record(
                action="ingest_start", user=requested_by, obj=video,
                detail={"attempt": number, "targets": len(new)},
            )  # fmt: skip
        if enqueue:
            video_ingest_enqueue(video_id=video.pk)
    return attempt


def video_ingest_enqueue(*, video_id: int) -> None:
    from annotation.tasks import ingest_video

    transaction.on_commit(lambda: ingest_video.delay(video_id))


def video_first_frame_enqueue(*, video_id: int) -> None:
    from annotation.tasks import make_first_frame

    transaction.on_commit(lambda: make_first_frame.delay(video_id))


def _preview_folder_new(video: Video) -> Path:
    return Path(settings.MEDIA_ROOT) / "previews" / f"v{video.pk}-{uuid.uuid4().hex[:8]}"


def video_first_frame_make(*, video_id: int) -> Video:
    """Decode frame 0 of a video in the decode sandbox, store its PNGs and candidate heads.

    A file that cannot be decoded leaves the error on the video (and fails a video that was
    waiting for targets: there is nothing to tag on). Done once: a redelivered task returns.
    """
    from annotation.ingest.candidates import head_length_px_for
    from annotation.ingest.isolation import first_frame_isolated
    from annotation.ingest.video_io import IngestError

    video = Video.objects.get(pk=video_id)
    if video.first_frame_made_at is not None:
        return video
    out_dir = _preview_folder_new(video)
    try:
        made = first_frame_isolated(
            # The decode sandbox reads a local file only: in place, or this host's cached copy.
            media_local_path(video.file.name, sha256=video.sha256),
            out_dir=out_dir,
            head_length_px=head_length_px_for(
                video.pixel_size_um, head_length_um=settings.INGEST_HEAD_LENGTH_UM
            ),
            limits=decode_limits(),
        )
    except IngestError as exc:
        shutil.rmtree(out_dir, ignore_errors=True)
        with transaction.atomic():
            video = Video.objects.select_for_update().get(pk=video_id)
            video.first_frame_error = str(exc)[:2000]
            video.save(update_fields=["first_frame_error"])
            if video.status == Video.Status.NEEDS_TARGETS:
                video_fail(video_id=video_id, error=str(exc))
        video.refresh_from_db()
        return video
    media_publish(out_dir)  # object storage: the PNGs go to the bucket before the row names them
    media_root = Path(settings.MEDIA_ROOT)
    with transaction.atomic():
        video = Video.objects.select_for_update().get(pk=video_id)
        video.first_frame = str(made.frame_png.relative_to(media_root))
        video.first_frame_overview = str(made.overview_png.relative_to(media_root))
        video.candidates = [c.as_dict() for c in made.candidates]
        video.first_frame_made_at = timezone.now()
        video.first_frame_error = ""
        fields = ["first_frame", "first_frame_overview", "candidates", "first_frame_made_at"]
        if not video.width:  # ingestion fills these too; the page checks clicks against them
            video.width, video.height = made.info.width, made.info.height
            video.fps = made.info.fps or None
            fields += ["width", "height", "fps"]
        video.save(update_fields=[*fields, "first_frame_error"])
    return video


def clip_folder_new(video: Video) -> Path:
    """A fresh media folder for a video's clip files. Unique per attempt, so that files of a
    restored or reset database can never collide with new ones."""
    return Path(settings.MEDIA_ROOT) / "clips" / f"v{video.pk}-{uuid.uuid4().hex[:8]}"


def _default_clip_id(video: Video, index: int) -> str:
    return f"v{video.pk}-t{index}"


def decode_limits() -> DecodeLimits:
    """The limits every decoding child runs under (settings MERSV_DECODE_*)."""
    from annotation.ingest.isolation import DecodeLimits

    return DecodeLimits(
        mem_mb=settings.DECODE_MEM_MB, cpu_s=settings.DECODE_CPU_S, wall_s=settings.DECODE_WALL_S
    )


def _attempt_current(video_id: int) -> VideoAttempt | None:
    return (
        VideoAttempt.objects.filter(
            video_id=video_id,
            status__in=[VideoAttempt.Status.QUEUED, VideoAttempt.Status.RUNNING],
        )
        .order_by("-number")
        .first()
    )


def video_claim(*, video_id: int) -> bool:
    """Claim a video for ingestion; False when another run finished or holds it.

    A redelivered task (worker lost mid-task) finds the video still 'processing' and claims
    it again; a finished video is never processed twice.
    """
    now = timezone.now()
    with transaction.atomic():
        claimed = Video.objects.filter(
            pk=video_id, status__in=[Video.Status.PENDING, Video.Status.PROCESSING]
        ).update(status=Video.Status.PROCESSING, started_at=now, error="")
        if claimed:
            VideoAttempt.objects.filter(
                video_id=video_id,
                status__in=[VideoAttempt.Status.QUEUED, VideoAttempt.Status.RUNNING],
            ).update(status=VideoAttempt.Status.RUNNING, started_at=now)
    return claimed == 1


def _clip_folders_in_use(video: Video) -> set[Path]:
    media_root = Path(settings.MEDIA_ROOT)
    names = video.clips.values_list("frames_file", flat=True)
    return {(media_root / name).parent for name in names}


def video_ingest(*, video_id: int) -> Video:
    """Decode, track, crop and encode the targets of a video that have no clip yet; create
    their clips.

    On a bad file or a lost target the video and its attempt get a clear error and no clip
    is created (clips of earlier attempts stay).
    """
    from annotation.ingest.isolation import process_video_isolated
    from annotation.ingest.video_io import IngestError

    video = Video.objects.get(pk=video_id)
    done = set(video.clips.values_list("target_index", flat=True))
    todo = [i for i, t in enumerate(video.targets) if i not in done and not t.get("dropped")]
    if not todo:  # done by an earlier delivery of the same task
        _video_ready(video_id=video_id, results=[])
        video.refresh_from_db()
        return video
    config = ingest_config()
    clips_root = Path(settings.MEDIA_ROOT) / "clips"
    in_use = _clip_folders_in_use(video)
    for leftover in clips_root.glob(f"v{video.pk}-*"):  # from a worker that died mid-task
        if leftover not in in_use:
            shutil.rmtree(leftover, ignore_errors=True)
    out_dir = clip_folder_new(video)
    try:
        # In a child process with limits: a hostile file fails its video, not the worker.
        output = process_video_isolated(
            media_local_path(video.file.name, sha256=video.sha256),
            [(float(video.targets[i]["x"]), float(video.targets[i]["y"])) for i in todo],
            out_dir=out_dir,
            pixel_size_um=video.pixel_size_um,
            config=config,
            limits=decode_limits(),
        )
    except IngestError as exc:
        video_fail(video_id=video_id, error=str(exc))
        video.refresh_from_db()
        return video
    except Exception as exc:
        log.exception("ingestion of video %s failed", video_id)
        video_fail(video_id=video_id, error=f"unexpected error while ingesting: {exc}")
        video.refresh_from_db()
        raise
    published = media_publish(out_dir)  # object storage: the clips' files go to the bucket first
    try:
        with transaction.atomic():
            video = Video.objects.select_for_update().get(pk=video_id)
            clips_create_from_output(video=video, output=output, config=config, indices=todo)
            _video_ready(video_id=video_id, results=_target_results(video, output, todo))
    except Exception:
        shutil.rmtree(out_dir, ignore_errors=True)
        media_unpublish(published)
        raise
    video.refresh_from_db()
    return video


def _target_results(video: Video, output: VideoOutput, todo: list[int]) -> list[dict[str, object]]:
    """Per target tracked (``todo``: their indices in the video's targets), what became of
    it: the ``VideoAttempt.target_results`` rows."""
    clip_ids = dict(
        video.clips.filter(target_index__in=todo).values_list("target_index", "external_id")
    )
    results: dict[int, dict[str, object]] = {}
    for clip in output.clips:
        index = todo[clip.target]
        short = clip.cut_short
        results[index] = {
            "index": index,
            "result": "clip" if short is None else "short_clip",
            "clip_id": clip_ids[index],
            "n_frames": clip.n_frames,
            "loss": "" if short is None else short.code,
            "lost_at": None if short is None else short.lost_at,
            "error": "" if short is None else short.message,
        }
    for lost in output.lost:
        index = todo[lost.target]
        results[index] = {
            "index": index, "result": "lost", "clip_id": "", "n_frames": 0,
            "loss": lost.code, "lost_at": lost.lost_at, "error": lost.message,
        }  # fmt: skip
    return [results[i] for i in todo]


def _lost_summary(results: list[dict[str, object]]) -> str:
    """The video's error when some targets were lost and others gave clips."""
    lost = [r for r in results if r["result"] == "lost"]
    if not lost:
        return ""
    return (
        f"partly failed: {len(lost)} of {len(results)} targets lost, no clip for them; "
        + "; ".join(f"target {int(r['index']) + 1}: {r['error']}" for r in lost)  # type: ignore[call-overload]
        + ". Move them on the first frame and retry"
    )


def _video_ready(*, video_id: int, results: list[dict[str, object]]) -> None:
    """The video is ready (with the clips it has); its current attempt, if any, ends as ready,
    or as partly failed when some of its targets were lost (``results``: per target)."""
    now = timezone.now()
    error = _lost_summary(results)
    Video.objects.filter(pk=video_id).update(status=Video.Status.READY, error=error[:2000])
    attempt = _attempt_current(video_id)
    if attempt is not None:
        attempt.status = VideoAttempt.Status.PARTLY_FAILED if error else VideoAttempt.Status.READY
        attempt.clip_ids = [r["clip_id"] for r in results if r["clip_id"]]
        attempt.target_results = results
        attempt.error = error[:2000]
        attempt.finished_at = now
        attempt.save(update_fields=["status", "clip_ids", "target_results", "error", "finished_at"])
    # The lost targets are moved on the first frame: made now if it was not yet.
    if (
        error
        and Video.objects.filter(
            pk=video_id, first_frame_made_at__isnull=True, first_frame_error=""
        ).exists()
    ):
        video_first_frame_enqueue(video_id=video_id)


def clips_create_from_output(
    *,
    video: Video,
    output: VideoOutput,
    config: IngestConfig,
    indices: Sequence[int] | None = None,
) -> None:
    """Create the video's clips from the pipeline's output and mark the video ready.

    ``output.clips[k]`` belongs to target ``indices[output.clips[k].target]`` of
    ``video.targets`` (``indices``: all targets, in order, when None); a target the output
    lost gets no clip. Call inside a transaction; the output's files must already lie under
    MEDIA_ROOT.
    """
    media_root = Path(settings.MEDIA_ROOT)
    if indices is None:
        indices = range(len(video.targets))
    for clip_out in output.clips:
        index = indices[clip_out.target]
        target = video.targets[index]
        Clip.objects.create(
            video=video,
            external_id=target.get("external_id") or _default_clip_id(video, index),
            target_index=index,
            start_x=float(target["x"]),
            start_y=float(target["y"]),
            track=[[round(float(x), 3), round(float(y), 3)] for x, y in clip_out.track],
            match_scores=[round(float(s), 4) for s in clip_out.match_scores],
            n_frames=clip_out.n_frames,
            crop_size=config.crop_size_at(video.pixel_size_um),
            frames_file=str(clip_out.frames_npy.relative_to(media_root)),
            crop_file=str(clip_out.crop_mp4.relative_to(media_root)),
            filmstrip_file=str(clip_out.filmstrip_png.relative_to(media_root)),
            **Clip.kinematics_fields(clip_out.kinematics.as_dict()),
        )
    video.fps = output.info.fps
    video.width = output.info.width
    video.height = output.info.height
    video.frame_count = output.info.frame_count
    video.sha256 = output.sha256
    video.preview = str(output.preview_mp4.relative_to(media_root))
    video.status = Video.Status.READY
    video.error = ""
    video.finished_at = timezone.now()
    video.save()


def ingest_config() -> IngestConfig:
    from annotation.ingest.pipeline import IngestConfig

    return IngestConfig(
        n_frames=settings.INGEST_N_FRAMES,
        min_frames=settings.INGEST_MIN_FRAMES,
        crop_size=settings.INGEST_CROP_SIZE,
        head_length_um=settings.INGEST_HEAD_LENGTH_UM,
        head_width_um=settings.INGEST_HEAD_WIDTH_UM,
    )


def clip_vote_counts_recount(*, clip_ids: Sequence[int] | None = None) -> int:
    """Recount the vote counts of these clips (all when None) from their Rating rows.

    The grading service keeps counts current vote by vote; bulk writers (import) call this
    inside their transaction instead. Two statements, whatever the number of clips: the
    count of stale clips, then one UPDATE of those. Returns the number of clips updated.
    """
    from django.db.models import Count, F, IntegerField, OuterRef, Q, Subquery, Value
    from django.db.models.functions import Coalesce

    def votes(grade: str | None) -> Coalesce:
        ratings = Rating.objects.filter(clip=OuterRef("pk"))
        if grade is not None:
            ratings = ratings.filter(grade=grade)
        counted = ratings.order_by().values("clip").annotate(n=Count("pk")).values("n")
        return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))

    fresh = {f"votes_{g.lower()}": votes(g) for g in "ABCDE"} | {"votes_total": votes(None)}
    clips = Clip.objects.all() if clip_ids is None else Clip.objects.filter(pk__in=clip_ids)
    stale = Q()
    for field in fresh:
        stale |= ~Q(**{field: F(f"fresh_{field}")})
    stale_ids = list(
        clips.annotate(**{f"fresh_{k}": v for k, v in fresh.items()})
        .filter(stale)
        .values_list("pk", flat=True)
    )
    if stale_ids:
        Clip.objects.filter(pk__in=stale_ids).update(**fresh)
    return len(stale_ids)


def video_fail(*, video_id: int, error: str) -> None:
    """Mark a video failed with ``error`` (a bad file, or its task ran out of time), and its
    current attempt with it: the attempt stays in the video's history.

    A video that already has clips from earlier attempts (a retry of its lost targets that
    lost them all again) stays ready with those clips, partly failed: its clips remain in
    use and the lost targets can be moved and retried once more."""
    now = timezone.now()
    with transaction.atomic():
        video = Video.objects.select_for_update().get(pk=video_id)
        if video.clips.exists():
            video.status = Video.Status.READY
            video.error = f"partly failed: this retry gave no clip: {error}"[:2000]
        else:
            video.status = Video.Status.FAILED
            video.error = error[:2000]
        video.finished_at = now
        video.save(update_fields=["status", "error", "finished_at"])
        VideoAttempt.objects.filter(
            video_id=video_id,
            status__in=[VideoAttempt.Status.QUEUED, VideoAttempt.Status.RUNNING],
        ).update(status=VideoAttempt.Status.FAILED, error=error[:2000], finished_at=now)
        # The retry is tagged on the first frame: made now if it was not yet.
        if Video.objects.filter(
            pk=video_id, first_frame_made_at__isnull=True, first_frame_error=""
        ).exists():
            video_first_frame_enqueue(video_id=video_id)


# ---- Uploads straight to the bucket (object storage) ------------------------------------
# Uploads straight to the bucket: presigned S3 multipart uploads, verified before ingestion.
#
# The web process only signs: ``direct_upload_start`` opens a multipart upload and returns one
# presigned ``upload_part`` URL per part, the browser PUTs the parts to the bucket (no byte
# passes through a web worker), ``direct_upload_complete`` records the parts' ETags, and a
# worker (``direct_upload_verify``) has the bucket join them and reads the object once: its
# size must be the declared one and within MERSV_DIRECT_UPLOAD_MAX_MB, its first bytes an
# MP4 or AVI signature, and its SHA-256 the declared one (when the client gave it). Only then
# is the Video created, with the object as its file and the SHA-256 every worker checks its
# cached copy against; a refused upload is deleted from the bucket. An interrupted upload
# resumes: ``direct_upload_parts`` lists the parts the bucket holds and signs fresh URLs for
# the others.

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
    """Record the parts (``[{"part_number": n, "etag": "..."}]``, every part once) and queue
    the worker that joins and verifies them. Takes the upload's row lock: a second completion
    is refused (409)."""
    with transaction.atomic():
        upload = DirectUpload.objects.select_for_update().get(pk=upload_id)
        if upload.created_by_id != (by.pk if by else None):
            raise ServiceError("this upload was started by another account")
        if upload.status == DirectUpload.Status.EXPIRED:
            raise ConflictError(upload.error)  # says why, and to upload the file again
        if upload.status != DirectUpload.Status.OPEN:
            raise ConflictError(f"the upload is {upload.get_status_display().lower()} already")
        numbers = [int(p["part_number"]) for p in parts]
        expected = list(range(1, part_count(upload) + 1))
        if sorted(numbers) != expected:
            raise ServiceError(
                f"the upload has {len(expected)} parts (1..{len(expected)}); "
                f"{len(numbers)} were listed, each must be listed once with its ETag"
            )
        # The bucket joins the parts in the worker: for a large file that takes a while, and
        # no web thread waits for it.
        upload.parts = [
            {"part_number": int(p["part_number"]), "etag": str(p["etag"])}
            for p in sorted(parts, key=lambda p: int(p["part_number"]))
        ]
        upload.status = DirectUpload.Status.VERIFYING
        upload.save(update_fields=["status", "parts"])
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
    try:
        client.complete_multipart_upload(
            Bucket=bucket,
            Key=_key(upload),
            UploadId=upload.upload_id,
            MultipartUpload={
                "Parts": [{"PartNumber": p["part_number"], "ETag": p["etag"]} for p in upload.parts]
            },
        )
    except client.exceptions.ClientError as exc:
        # A redelivered task finds the parts joined already; anything else is the client's.
        if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
            with contextlib.suppress(client.exceptions.ClientError):
                client.abort_multipart_upload(
                    Bucket=bucket, Key=_key(upload), UploadId=upload.upload_id
                )
            return _refuse(upload_id, f"the bucket refused to join the parts: {exc}")
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
