"""Import of a rated dataset in the exchange format (its columns: annotation/exchange.py):

    DIR/clips.csv    clip_id, patient_id, video, fps, x, y [, pixel_size_um]
    DIR/ratings.csv  clip_id, rater_id, grade            (grade in A..E)
    DIR/videos/...   the full-field videos named in clips.csv (paths relative to DIR)

Three phases, so that nothing is written unless everything is good:
1. validate every row of both files and probe every video (a bad row names file, line, reason);
2. track and cut every new clip through the same pipeline as an upload, into a staging folder;
3. one transaction writes patients, raters, videos, clips and ratings; the staged files move
   into place. Running the same import twice adds nothing the second time.

An export of this platform's own dataset versions is recognised before anything else (its
MANIFEST.sha256 hashes to a version's content hash, or its rater, patient or video ids are a
version's per-version pseudonyms) and refused: its votes are here already, under their
experts' accounts, and importing it would count each vote again under new pseudonymous raters.
``other_platform=True`` (``--other-platform``) says the data comes from elsewhere after all.
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from annotation.access.accounts import username_problem
from annotation.access.roles import EXPERT, user_role
from annotation.exchange import (
    CLIP_REQUIRED_NAMES,
    CLIPS_FILE,
    RATING_NAMES,
    RATINGS_FILE,
    missing_columns,
)
from annotation.grades import GRADES
from annotation.models import Clip, Rating, RatingChange, Video
from annotation.storage import (
    MEDIA,
    is_local,
    media_publish,
    media_unpublish,
    storage_for,
    upload_to_storage,
)

if TYPE_CHECKING:
    from annotation.ingest.pipeline import IngestConfig, VideoOutput

ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_ROWS = 2_000_000


class ImportValidationError(Exception):
    """The data set has problems; `problems` lists each as "file line N: reason"."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        shown = problems[:20]
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__("the data set was not imported:\n" + "\n".join(shown) + more)


class OwnExportError(ImportValidationError):
    """The folder is an export of one of this platform's own dataset versions."""


@dataclass
class ClipRow:
    line: int
    clip_id: str
    patient_id: str
    video: str
    fps: float
    x: float
    y: float
    pixel_size_um: float
    # False: clips.csv gave no pixel size and the platform's default was assumed (reported).
    pixel_size_given: bool = True


@dataclass
class RatingRow:
    line: int
    clip_id: str
    rater_id: str
    grade: str


@dataclass
class ImportPlan:
    root: Path
    clips: list[ClipRow]
    ratings: list[RatingRow]
    new_videos: dict[str, list[ClipRow]] = field(default_factory=dict)  # video path -> rows
    existing_clip_ids: set[str] = field(default_factory=set)
    new_ratings: list[RatingRow] = field(default_factory=list)


@dataclass(frozen=True)
class ImportResult:
    clips_created: int
    clips_skipped: int
    ratings_created: int
    ratings_skipped: int
    raters_created: int
    untrackable: list[str] = field(default_factory=list)  # skipped videos, with the reason
    # Clips created without a pixel_size_um in clips.csv, at the default pixel size
    # (settings.DEFAULT_PIXEL_SIZE_UM): their morphometry is in µm only if that was right.
    pixel_size_defaulted: int = 0


def _read_csv(path: Path, required: tuple[str, ...], problems: list[str]) -> list[dict[str, str]]:
    if not path.is_file():
        problems.append(f"{path.name}: file not found in the data set folder")
        return []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = missing_columns(reader.fieldnames or [], required)
        if missing:
            problems.append(f"{path.name} line 1: missing column(s) {', '.join(missing)}")
            return []
        rows = []
        for index, row in enumerate(reader):
            if index >= MAX_ROWS:
                problems.append(f"{path.name}: more than {MAX_ROWS} rows")
                break
            rows.append({(k or "").strip(): (v or "").strip() for k, v in row.items()})
        return rows


def _csv_column(path: Path, column: str) -> set[str]:
    """The values of one column of a CSV file, leniently (bad files are validation's job)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return {
                (row.get(column) or "").strip()
                for _, row in zip(range(MAX_ROWS), csv.DictReader(handle), strict=False)
            } - {""}
    except (OSError, UnicodeDecodeError, csv.Error):
        return set()


def own_export_origin(root: Path) -> str | None:
    """Why ``root`` is an export of one of this platform's dataset versions, or None.

    Recognised by its manifest (its SHA-256 is a version's content hash) or by its ids: the
    rater ids of ratings.csv, the patient ids and video names of clips.csv are per-version
    pseudonyms (HMACs with a secret salt per version), so ids of a version found here mean the
    rows came out of that version, whatever was edited since.
    """
    from datasets.models import DatasetClip, DatasetRating, DatasetVersion

    manifest = root / "MANIFEST.sha256"
    if manifest.is_file():
        digest = hashlib.sha256(manifest.read_bytes()).hexdigest()
        version = DatasetVersion.objects.filter(content_hash=digest, frozen=True).first()
        if version is not None:
            return f"its MANIFEST.sha256 is the content hash of dataset version {version.name!r}"
    raters = sorted(_csv_column(root / RATINGS_FILE, "rater_id"))
    patients = sorted(_csv_column(root / CLIPS_FILE, "patient_id"))
    videos = sorted(PurePosixPath(v).stem for v in _csv_column(root / CLIPS_FILE, "video"))
    checks = (
        ("rater ids of ratings.csv", raters, DatasetRating, "rater_pseudonym"),
        ("patient ids of clips.csv", patients, DatasetClip, "patient_pseudonym"),
        ("video names of clips.csv", videos, DatasetClip, "video_pseudonym"),
    )
    for what, ids, model, column in checks:
        found: dict[str, set[str]] = {}
        for start in range(0, len(ids), 1000):  # bounded IN lists
            rows = model.objects.filter(**{f"{column}__in": ids[start : start + 1000]})
            for name, value in rows.values_list("version__name", column):
                found.setdefault(name, set()).add(value)
        if found:
            name, matched = max(found.items(), key=lambda item: len(item[1]))
            return (
                f"{len(matched)} of its {len(ids)} {what} are pseudonyms of dataset version "
                f"{name!r}"
            )
    return None


def _number(value: str, *, name: str, where: str, problems: list[str]) -> float:
    try:
        number = float(value)
    except ValueError:
        problems.append(f"{where}: {name} {value!r} is not a number")
        return math.nan
    if not math.isfinite(number):
        problems.append(f"{where}: {name} {value!r} is not a finite number")
    return number


def _safe_relative(root: Path, name: str) -> Path | None:
    """The file `name` inside root, or None when the name could leave root."""
    if not name or "\x00" in name or "\\" in name or len(name) > 1024:
        return None
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts:
        return None
    full = (root / pure).resolve()
    return full if full.is_relative_to(root.resolve()) else None


def dataset_validate(root: Path) -> ImportPlan:
    """Phase 1: check every row and every video; raise ImportValidationError listing problems."""
    from annotation.ingest import services
    from annotation.ingest.isolation import probe_video_isolated
    from annotation.ingest.video_io import IngestError

    problems: list[str] = []
    clip_dicts = _read_csv(root / CLIPS_FILE, CLIP_REQUIRED_NAMES, problems)
    rating_dicts = _read_csv(root / RATINGS_FILE, RATING_NAMES, problems)
    if problems:
        raise ImportValidationError(problems)

    clips: list[ClipRow] = []
    seen_clips: dict[str, int] = {}
    video_patient: dict[str, str] = {}
    for index, row in enumerate(clip_dicts):
        line = index + 2  # the header is line 1
        where = f"clips.csv line {line}"
        clip_id, patient_id, video = row["clip_id"], row["patient_id"], row["video"]
        if not ID_PATTERN.fullmatch(clip_id):
            problems.append(f"{where}: clip_id {clip_id!r} must be 1-64 letters, digits, _ . -")
        elif clip_id in seen_clips:
            problems.append(f"{where}: clip_id {clip_id!r} repeats line {seen_clips[clip_id]}")
        seen_clips.setdefault(clip_id, line)
        if not ID_PATTERN.fullmatch(patient_id):
            problems.append(
                f"{where}: patient_id {patient_id!r} must be 1-64 letters, digits, _ . -"
            )
        if _safe_relative(root, video) is None:
            problems.append(f"{where}: video path {video!r} must be a relative path inside DIR")
        elif not (root / video).is_file():
            problems.append(f"{where}: video file {video!r} not found")
        if video in video_patient and video_patient[video] != patient_id:
            problems.append(f"{where}: video {video!r} is listed under two patients")
        video_patient.setdefault(video, patient_id)
        fps = _number(row["fps"], name="fps", where=where, problems=problems)
        x = _number(row["x"], name="x", where=where, problems=problems)
        y = _number(row["y"], name="y", where=where, problems=problems)
        if fps <= 0:
            problems.append(f"{where}: fps must be positive")
        if x < 0 or y < 0:
            problems.append(f"{where}: the target point ({x}, {y}) lies outside the frame")
        pixel = settings.DEFAULT_PIXEL_SIZE_UM
        if row.get("pixel_size_um"):
            pixel = _number(row["pixel_size_um"], name="pixel_size_um", where=where,
                            problems=problems)  # fmt: skip
            if not 0 < pixel <= 100:
                problems.append(f"{where}: pixel_size_um must lie in (0, 100]")
        given = bool(row.get("pixel_size_um"))
        clips.append(ClipRow(line, clip_id, patient_id, video, fps, x, y, pixel, given))

    ratings: list[RatingRow] = []
    seen_ratings: dict[tuple[str, str], int] = {}
    for index, row in enumerate(rating_dicts):
        line = index + 2
        where = f"ratings.csv line {line}"
        clip_id, rater_id, grade = row["clip_id"], row["rater_id"], row["grade"]
        if clip_id not in seen_clips:
            problems.append(f"{where}: clip_id {clip_id!r} is not in clips.csv")
        if not ID_PATTERN.fullmatch(rater_id) or username_problem(rater_id):
            # A rater becomes an account: its id must be a valid user name too.
            problems.append(
                f"{where}: rater_id {rater_id!r} must be 1-64 letters, digits, _ . -, "
                "starting with a letter or a digit"
            )
        if grade not in GRADES:
            problems.append(f"{where}: grade {grade!r} is not one of A, B, C, D, E")
        key = (clip_id, rater_id)
        if key in seen_ratings:
            problems.append(
                f"{where}: rater {rater_id!r} already rated clip {clip_id!r} "
                f"on line {seen_ratings[key]} (one rating per rater and clip)"
            )
        seen_ratings.setdefault(key, line)
        ratings.append(RatingRow(line, clip_id, rater_id, grade))
    if problems:
        raise ImportValidationError(problems)

    plan = ImportPlan(root=root, clips=clips, ratings=ratings)
    existing = {
        c.external_id: c
        for c in Clip.objects.filter(external_id__in=seen_clips).select_related("video")
    }
    for entry in clips:
        clip = existing.get(entry.clip_id)
        if clip is None:
            plan.new_videos.setdefault(entry.video, []).append(entry)
        elif abs(clip.start_x - entry.x) > 1e-6 or abs(clip.start_y - entry.y) > 1e-6:
            problems.append(
                f"clips.csv line {entry.line}: clip_id {entry.clip_id!r} already exists "
                "with another target point; give the new clip another id"
            )
        else:
            plan.existing_clip_ids.add(entry.clip_id)
    n_frames = settings.INGEST_N_FRAMES
    for video, rows in plan.new_videos.items():
        try:
            info = probe_video_isolated(root / video, limits=services.decode_limits())
        except IngestError as exc:
            problems.append(f"clips.csv line {rows[0].line}: video {video!r}: {exc}")
            continue
        if info.frame_count < n_frames:
            problems.append(
                f"clips.csv line {rows[0].line}: video {video!r} has {info.frame_count} "
                f"frames but {n_frames} are needed"
            )
        for entry in rows:
            if not (entry.x < info.width and entry.y < info.height):
                problems.append(
                    f"clips.csv line {entry.line}: the target point ({entry.x}, {entry.y}) lies "
                    f"outside the {info.width}x{info.height} frame of {video!r}"
                )
    _plan_ratings(plan, problems)
    if problems:
        raise ImportValidationError(problems)
    return plan


def _plan_ratings(plan: ImportPlan, problems: list[str]) -> None:
    User = get_user_model()
    raters = {r.rater_id for r in plan.ratings}
    users = {u.username: u for u in User.objects.filter(username__in=raters)}
    for username, user in users.items():
        if user_role(user) != EXPERT:
            problems.append(f"ratings.csv: rater_id {username!r} is a user who is not an expert")
    existing = {
        (external_id, username): grade
        for external_id, username, grade in Rating.objects.filter(
            clip__external_id__in=plan.existing_clip_ids
        ).values_list("clip__external_id", "rater__username", "grade")
    }
    for row in plan.ratings:
        old = existing.get((row.clip_id, row.rater_id))
        if old is None:
            plan.new_ratings.append(row)
        elif old != row.grade:
            problems.append(
                f"ratings.csv line {row.line}: rater {row.rater_id!r} already has grade {old} "
                f"for clip {row.clip_id!r} in the database, not {row.grade}"
            )


def dataset_import(
    root: Path,
    *,
    progress: Callable[[int, int, str], None] | None = None,
    skip_untrackable: bool = False,
    other_platform: bool = False,
) -> ImportResult:
    """Validate, then track and cut every new clip, then write everything in one transaction.

    An export of this platform's own versions is refused (OwnExportError) unless
    ``other_platform`` says the data comes from elsewhere. A video whose target cannot be
    tracked (lost, unreadable past its header) stops the import with nothing written, unless
    skip_untrackable: then its clips and their ratings are left out and listed in the result.
    """
    from annotation.ingest import services
    from annotation.ingest.isolation import process_video_isolated
    from annotation.ingest.pipeline import lost_targets_error
    from annotation.ingest.video_io import IngestError

    root = root.resolve()
    origin = None if other_platform else own_export_origin(root)
    if origin is not None:
        raise OwnExportError(
            [
                f"{root} is an export of this platform: {origin}. Its votes are already here, "
                "under their experts' accounts; importing it would count every vote again "
                "under new pseudonymous raters, so nothing was imported. If the data really "
                "comes from another platform, import it with --other-platform."
            ]
        )
    plan = dataset_validate(root)
    config = services.ingest_config()
    media_root = Path(settings.MEDIA_ROOT)
    staging = media_root / "clips" / f".import-{uuid.uuid4().hex}"
    outputs: dict[str, tuple[VideoOutput, Path]] = {}
    untrackable: list[str] = []
    try:
        total = len(plan.new_videos)
        for done, (video, rows) in enumerate(sorted(plan.new_videos.items())):
            if progress:
                progress(done, total, video)
            out_dir = staging / f"{done:06d}"
            try:
                output = process_video_isolated(
                    root / video,
                    [(r.x, r.y) for r in rows],
                    out_dir=out_dir,
                    pixel_size_um=rows[0].pixel_size_um,
                    config=config,
                    fps=rows[0].fps,  # clips.csv's rate wins over the file's header
                    limits=services.decode_limits(),
                )
                if output.lost:  # an import keeps all of a video's clips or none
                    raise lost_targets_error(output.lost)
                outputs[video] = (output, out_dir)
            except IngestError as exc:
                ids = ", ".join(r.clip_id for r in rows)
                problem = f"clips.csv line {rows[0].line}: video {video!r} (clips {ids}): {exc}"
                if not skip_untrackable:
                    raise ImportValidationError([problem]) from exc
                untrackable.append(problem)
                shutil.rmtree(out_dir, ignore_errors=True)
        if progress:
            progress(total, total, "writing")
        if untrackable:
            dropped = {
                r.clip_id for v, rows in plan.new_videos.items() if v not in outputs for r in rows
            }
            plan.new_ratings = [r for r in plan.new_ratings if r.clip_id not in dropped]
        result = _write(plan, outputs, config, staging)
        result = replace(result, untrackable=untrackable)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def _write(
    plan: ImportPlan,
    outputs: dict[str, tuple[VideoOutput, Path]],
    config: IngestConfig,
    staging: Path,
) -> ImportResult:
    from annotation.access.accounts import user_create
    from annotation.ingest import services

    media_root = Path(settings.MEDIA_ROOT)
    moved: list[Path] = []
    published: list[str] = []  # object storage: the names written to the bucket
    try:
        with transaction.atomic():
            User = get_user_model()
            rater_ids = sorted({r.rater_id for r in plan.new_ratings})
            users = {u.username: u for u in User.objects.filter(username__in=rater_ids)}
            raters_created = 0
            for rater_id in rater_ids:
                if rater_id not in users:
                    users[rater_id] = user_create(username=rater_id, role=EXPERT, password=None)
                    raters_created += 1
            for video_name, (output, out_dir) in sorted(outputs.items()):
                rows = plan.new_videos[video_name]
                patient = services.patient_get_or_create(code=rows[0].patient_id)
                source = plan.root / video_name
                video = Video(
                    patient=patient,
                    original_name=Path(video_name).name[:255],
                    pixel_size_um=rows[0].pixel_size_um,
                    targets=[{"x": r.x, "y": r.y, "external_id": r.clip_id} for r in rows],
                )
                stored = f"videos/{uuid.uuid4().hex}{source.suffix.lower() or '.mp4'}"
                if is_local(MEDIA):
                    (media_root / "videos").mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, media_root / stored)
                    moved.append(media_root / stored)
                else:
                    with source.open("rb") as handle:
                        upload_to_storage(storage_for(MEDIA), stored, handle)
                    published.append(stored)
                video.file.name = stored
                video.save()
                final_dir = services.clip_folder_new(video)
                out_dir.rename(final_dir)
                moved.append(final_dir)
                services.clips_create_from_output(
                    video=video, output=_rebase(output, out_dir, final_dir), config=config
                )
                published += media_publish(final_dir)  # object storage: to the bucket
            clips = dict(
                Clip.objects.filter(
                    external_id__in={r.clip_id for r in plan.new_ratings}
                ).values_list("external_id", "pk")
            )
            new = [
                Rating(clip_id=clips[r.clip_id], rater=users[r.rater_id], grade=r.grade)
                for r in plan.new_ratings
            ]
            # PostgreSQL and SQLite >= 3.35 return the new primary keys from bulk_create.
            Rating.objects.bulk_create(new, batch_size=1000)
            RatingChange.objects.bulk_create(
                [RatingChange(rating_id=r.pk, grade=r.grade) for r in new], batch_size=1000
            )
            services.clip_vote_counts_recount(clip_ids=list(set(clips.values())))
            # Imported clips with settled distributions leave the expert queue at once.
            from annotation.aggregation.retirement_service import clips_retire_settled

            clips_retire_settled()
    except Exception:
        for path in moved:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        media_unpublish(published)
        raise
    return ImportResult(
        clips_created=sum(len(plan.new_videos[v]) for v in outputs),
        clips_skipped=len(plan.existing_clip_ids),
        ratings_created=len(plan.new_ratings),
        ratings_skipped=len(plan.ratings) - len(plan.new_ratings),  # existing or untrackable
        raters_created=raters_created,
        pixel_size_defaulted=sum(
            not r.pixel_size_given for v in outputs for r in plan.new_videos[v]
        ),
    )


def _rebase(output: VideoOutput, old: Path, new: Path) -> VideoOutput:
    """The pipeline's output with its paths moved from the staging folder to the final one."""
    from dataclasses import replace

    def move(path: Path) -> Path:
        return new / path.relative_to(old)

    clips = [
        replace(
            c,
            frames_npy=move(c.frames_npy),
            crop_mp4=move(c.crop_mp4),
            filmstrip_png=move(c.filmstrip_png),
        )
        for c in output.clips
    ]
    return replace(output, preview_mp4=move(output.preview_mp4), clips=clips)
