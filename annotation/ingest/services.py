"""Writes of ingestion: patients, videos and their ingestion, clips.

Each service takes keyword-only arguments and runs in one transaction; Celery tasks are sent
with `transaction.on_commit`, so a worker never sees a row that was rolled back.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files import File
from django.db import transaction
from django.utils import timezone

from annotation.access.audit import audit_record
from annotation.errors import ServiceError as ServiceError  # raised here; importers keep this path
from annotation.models import Clip, Patient, Rating, Video

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


def video_create(
    *,
    fileobj: IO[bytes],
    original_name: str,
    patient_code: str,
    pixel_size_um: float,
    targets: Sequence[Target],
    uploaded_by: User | None,
    enqueue: bool = True,
) -> Video:
    """Store an uploaded video and queue its ingestion (decoding happens in the worker)."""
    suffix = _video_suffix(original_name)
    video_sniff_format(fileobj)
    if not targets:
        raise ServiceError("tag at least one target sperm in the first frame")
    if not 0 < pixel_size_um <= 100:
        raise ServiceError("the pixel size must be a positive number of micrometres (<= 100)")
    used_ids = [t.external_id for t in targets if t.external_id]
    if len(set(used_ids)) != len(used_ids):
        raise ServiceError("two targets share one clip id")
    taken = set(Clip.objects.filter(external_id__in=used_ids).values_list("external_id", flat=True))
    if taken:
        raise ServiceError(f"clip id(s) already in use: {', '.join(sorted(taken))}")
    with transaction.atomic():
        patient = patient_get_or_create(code=patient_code)
        video = Video(
            patient=patient,
            # Shown on pages only; control characters (NUL: PostgreSQL refuses it) dropped.
            original_name="".join(c for c in Path(original_name).name if c.isprintable())[:255],
            pixel_size_um=pixel_size_um,
            targets=[{"x": t.x, "y": t.y, "external_id": t.external_id} for t in targets],
            uploaded_by=uploaded_by,
        )
        # A generated name: nothing the user typed decides where the file is written.
        video.file.save(f"{uuid.uuid4().hex}{suffix}", File(fileobj), save=False)
        video.save()
        audit_record(
            action="upload", user=uploaded_by, obj=video,
            detail={"original_name": video.original_name, "patient": patient.code},
        )  # fmt: skip
        if enqueue:
            video_ingest_enqueue(video_id=video.pk)
    return video


def video_ingest_enqueue(*, video_id: int) -> None:
    from annotation.tasks import ingest_video

    transaction.on_commit(lambda: ingest_video.delay(video_id))


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


def video_claim(*, video_id: int) -> bool:
    """Claim a video for ingestion; False when another run finished or holds it.

    A redelivered task (worker lost mid-task) finds the video still 'processing' with no
    clips and claims it again; a finished video is never processed twice.
    """
    claimed = Video.objects.filter(
        pk=video_id, status__in=[Video.Status.PENDING, Video.Status.PROCESSING]
    ).update(status=Video.Status.PROCESSING, started_at=timezone.now(), error="")
    return claimed == 1


def video_ingest(*, video_id: int) -> Video:
    """Decode, track, crop and encode every target of a video; create its clips.

    On a bad file or a lost target the video gets a clear error and no clip is created.
    """
    from annotation.ingest.isolation import process_video_isolated
    from annotation.ingest.video_io import IngestError

    video = Video.objects.get(pk=video_id)
    if video.clips.exists():  # done by an earlier delivery of the same task
        Video.objects.filter(pk=video_id).update(status=Video.Status.READY)
        return video
    config = ingest_config()
    clips_root = Path(settings.MEDIA_ROOT) / "clips"
    for leftover in clips_root.glob(f"v{video.pk}-*"):  # from a worker that died mid-task
        shutil.rmtree(leftover, ignore_errors=True)
    out_dir = clip_folder_new(video)
    try:
        # In a child process with limits: a hostile file fails its video, not the worker.
        output = process_video_isolated(
            Path(video.file.path),
            [(float(t["x"]), float(t["y"])) for t in video.targets],
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
    try:
        with transaction.atomic():
            video = Video.objects.select_for_update().get(pk=video_id)
            clips_create_from_output(video=video, output=output, config=config)
    except Exception:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise
    return video


def clips_create_from_output(*, video: Video, output: VideoOutput, config: IngestConfig) -> None:
    """Create the video's clips from the pipeline's output and mark the video ready.

    Call inside a transaction; the output's files must already lie under MEDIA_ROOT.
    """
    media_root = Path(settings.MEDIA_ROOT)
    for index, (target, clip_out) in enumerate(zip(video.targets, output.clips, strict=True)):
        Clip.objects.create(
            video=video,
            external_id=target.get("external_id") or _default_clip_id(video, index),
            target_index=index,
            start_x=float(target["x"]),
            start_y=float(target["y"]),
            track=[[round(float(x), 3), round(float(y), 3)] for x, y in clip_out.track],
            match_scores=[round(float(s), 4) for s in clip_out.match_scores],
            n_frames=config.n_frames,
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
    """Mark a video failed with ``error`` (a bad file, or its task ran out of time)."""
    Video.objects.filter(pk=video_id).update(
        status=Video.Status.FAILED, error=error[:2000], finished_at=timezone.now()
    )
