"""Writes of the datasets app: create, build (freeze) and export dataset versions.

Building reads the current clips and votes once, freezes a copy of everything in the version's
rows, assigns the folds and writes the export; from then on the version never changes.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.http import HttpRequest, HttpResponseRedirect, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.utils import timezone

from annotation.access.audit import audit_record
from annotation.aggregation.agreement import fleiss_kappa, krippendorff_alpha
from annotation.aggregation.distributions import (
    distribution_stats,
    figure3_stats,
    grade_counts,
    rating_arrays,
)
from annotation.errors import ConflictError, ServiceError
from annotation.exchange import RATING_NAMES
from annotation.grades import GRADES, PROB_COLUMNS
from annotation.ingest.kinematics import KINEMATICS_KEYS
from annotation.models import Clip
from annotation.storage import (
    EXPORTS,
    is_local,
    media_local_path,
    storage_for,
    storage_tree_delete,
)
from datasets.datasheet import render_datasheet
from datasets.export import ExportResult, stream_tar, tar_size, verify_export, write_export
from datasets.export_objects import (
    ExportObjectsError,
    archive_download_url,
    archive_problems,
    export_cache_root,
    export_materialise,
    export_publish,
)
from datasets.models import (
    DatasetClip,
    DatasetInnerSplit,
    DatasetRating,
    DatasetVersion,
    FrozenError,
)
from datasets.selection import SelectionError, filters_normalised, selection_read
from datasets.splits import FoldAssignment, assign_folds

log = logging.getLogger(__name__)
Progress = Callable[[float, str], None]
BOOTSTRAP_RESAMPLES = 1000
# 2: the agreement table has one row per measure (versions built before keep format 1 on
# re-export, byte for byte).
DATASHEET_FORMAT = 2


@dataclass(frozen=True)
class ClipMedia:
    """Where a frozen clip's files come from, and the pseudonymous name of its video."""

    clip: Clip
    video_name: str
    suffix: str


class DatasetError(ServiceError):
    """A problem the curator can fix; the message says what and how."""


def export_dir_for(version: DatasetVersion) -> Path:
    """The version's export folder on this host: under EXPORT_ROOT, or with object storage
    the local copy a build writes and ``export_local`` materialises (CACHE_ROOT/exports)."""
    if is_local(EXPORTS):
        return Path(settings.EXPORT_ROOT) / version.name
    return export_cache_root() / version.name


def export_local(version: DatasetVersion) -> Path:
    """A built version's export as a local folder: in place, or with object storage fetched
    from the bucket and verified against the content hash (datasets/export_objects.py)."""
    if is_local(EXPORTS) or not version.frozen:
        return export_dir_for(version)
    try:
        return export_materialise(version.name, content_hash=version.content_hash)
    except ExportObjectsError as exc:
        raise DatasetError(str(exc)) from exc


class ExportAlteredError(ConflictError):
    """The files of a version's export no longer match its frozen manifest: 409, with them."""

    rolls_back = False  # the audit event of the failed check must commit

    def __init__(self, version: DatasetVersion, problems: list[str]) -> None:
        self.problems = problems
        shown = "; ".join(problems[:5]) + (
            f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        )
        super().__init__(
            f"the export of {version.name!r} no longer matches its frozen manifest and content "
            f"hash, so it is not served: {shown}. Rebuild the files with `python manage.py "
            f"export_dataset {version.name} --out DIR` (it checks the hash) or restore them "
            f"from a backup."
        )

    def response_body(self) -> dict[str, object]:
        return {"detail": str(self), "files": self.problems}


def export_problems(version: DatasetVersion) -> list[str]:
    """What differs between a frozen version's export on disk and its frozen content hash and
    manifest; empty when intact (hashes reused while files are untouched: datasets.export)."""
    if not version.frozen:
        return []
    if not is_local(EXPORTS):
        return archive_problems(
            version.name, sha256=version.archive_sha256, size=version.archive_bytes
        )
    return verify_export(
        export_dir_for(version), content_hash=version.content_hash, reuse_hashes=True
    )


def export_download_response(
    version: DatasetVersion, *, user: User | AnonymousUser | None, request: HttpRequest | None
) -> HttpResponseBase:
    """A built version's export as one uncompressed tar archive, streamed (memory stays
    bounded); for the download page and the API alike, which record the download.

    Served only when its files match the frozen manifest and content hash, checked before the
    first byte and again while streaming; a mismatch is an `export_verify_failed` audit event
    and, before the first byte, an ExportAlteredError naming the files.

    With object storage: a redirect to a presigned URL of the stored archive once its size
    and SHA-256 match the frozen ones (MERSV_EXPORT_DOWNLOAD=redirect), or the stream above
    from a local copy fetched and verified against the content hash (=proxy).
    """
    root = f"mersv-{version.name}"
    remote = not is_local(EXPORTS)
    if remote and settings.EXPORT_DOWNLOAD == "redirect":
        problems = export_problems(version)
        if problems:
            audit_record(
                action="export_verify_failed", user=user, obj=version, request=request,
                detail={"problems": problems[:50], "when": "before the download"},
            )  # fmt: skip
            raise ExportAlteredError(version, problems)
        return HttpResponseRedirect(archive_download_url(version.name, download_name=f"{root}.tar"))
    folder = export_local(version) if remote else export_dir_for(version)
    problems = (
        verify_export(folder, content_hash=version.content_hash, reuse_hashes=True)
        if remote
        else export_problems(version)
    )
    if problems:
        audit_record(
            action="export_verify_failed", user=user, obj=version, request=request,
            detail={"problems": problems[:50], "when": "before the download"},
        )  # fmt: skip
        raise ExportAlteredError(version, problems)

    def changed(relative: str) -> None:
        audit_record(
            action="export_verify_failed", user=user, obj=version, request=request,
            detail={"problems": [f"altered: {relative}"], "when": "while streaming"},
        )  # fmt: skip

    size = tar_size(folder, root=root)  # raises before the response starts if a file is missing
    response = StreamingHttpResponse(
        stream_tar(folder, root=root, content_hash=version.content_hash, on_changed=changed),
        content_type="application/x-tar",
    )
    response["Content-Length"] = str(size)
    response["Content-Disposition"] = f'attachment; filename="{root}.tar"'
    return response


def dataset_version_create(
    *,
    name: str,
    created_by: User | None,
    min_votes: int = 1,
    retired_only: bool = False,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    exclude_cannot_judge_majority: bool = True,
    exclude_raters: list[str] | tuple[str, ...] = (),
    exclude_fast_grades: bool = False,
    max_rater_model_emd: float | None = None,
    n_folds: int = 3,
    seed: int = 0,
    inner_val_fraction: float = 0.2,
    description: str = "",
    licence: str = "Internal research use only",
    pseudonymous_clip_ids: bool = True,
    enqueue: bool = True,
) -> DatasetVersion:
    """Record a new version with its selection; the build runs in a worker.

    ``pseudonymous_clip_ids``: the export names clips by per-version pseudonyms (the default),
    or by the platform's clip ids (exports of two versions can then be joined clip by clip).
    The name of a version whose build failed is free again: the failed version (never frozen,
    no rows) is deleted in the same transaction, under a row lock so that two retries cannot
    both take it; the audit event of the new build names the one it replaces.
    """
    _check_build_settings(n_folds=n_folds, inner_val_fraction=inner_val_fraction)
    filters = _filters(
        min_votes=min_votes,
        retired_only=retired_only,
        created_from=created_from,
        created_to=created_to,
        exclude_cannot_judge_majority=exclude_cannot_judge_majority,
        exclude_raters=exclude_raters,
        exclude_fast_grades=exclude_fast_grades,
        max_rater_model_emd=max_rater_model_emd,
    )
    with transaction.atomic():
        replaced = _release_failed_name(name)
        try:
            with transaction.atomic():  # a savepoint: a concurrent create of the name loses here
                version = DatasetVersion.objects.create(
                    name=name,
                    description=description,
                    licence=licence,
                    filters=filters,
                    n_folds=n_folds,
                    seed=seed,
                    inner_val_fraction=inner_val_fraction,
                    pseudonym_salt=secrets.token_hex(16),
                    pseudonymous_clip_ids=pseudonymous_clip_ids,
                    created_by=created_by,
                )
        except IntegrityError as exc:
            raise DatasetError(_name_taken(name)) from exc
        detail = filters | ({"replaces_failed_version": replaced} if replaced else {})
        audit_record(action="dataset_build", user=created_by, obj=version, detail=detail)
        if enqueue:
            from datasets.tasks import build_dataset_version

            transaction.on_commit(lambda: build_dataset_version.delay(version.pk))
    return version


def _name_taken(name: str) -> str:
    return f"a dataset version named {name!r} exists; versions are immutable, choose another name"


def _check_build_settings(*, n_folds: int, inner_val_fraction: float) -> None:
    if not 2 <= n_folds <= 20:
        raise DatasetError("the number of folds must lie between 2 and 20")
    if not 0.05 <= inner_val_fraction <= 0.5:
        raise DatasetError("the inner validation fraction must lie between 0.05 and 0.5")


def _filters(
    *, created_from: datetime | None = None, created_to: datetime | None = None, **others: Any
) -> dict[str, Any]:
    try:
        return filters_normalised(
            created_from=created_from.isoformat() if created_from else None,
            created_to=created_to.isoformat() if created_to else None,
            **others,
        )
    except SelectionError as exc:
        raise DatasetError(str(exc)) from exc


def _release_failed_name(name: str) -> int | None:
    """Delete the failed version holding `name` (inside the caller's transaction); its pk, or
    None when the name is free. A version of that name in any other state keeps it."""
    previous = DatasetVersion.objects.select_for_update().filter(name=name).first()
    if previous is None:
        return None
    if previous.frozen or previous.status != DatasetVersion.Status.FAILED:
        raise DatasetError(_name_taken(name))
    pk = previous.pk
    try:
        dataset_version_delete_unbuilt(version=previous)
    except ProtectedError as exc:
        raise DatasetError(f"the failed version {name!r} is still referenced: {exc}") from exc
    return pk


def selection_preview(
    *, n_folds: int = 3, seed: int = 0, inner_val_fraction: float = 0.2, **filter_values: Any
) -> dict[str, Any]:
    """What a build with these filters would freeze now: clips, votes, patients, raters, the
    grade-mode classes and their balance per fold, and what each filter left out.

    The counts are exact (the build reads the same `selection_read`). The per-fold balance is
    an estimate: the build groups patients by per-version pseudonyms drawn at creation, which
    shuffles the folds differently; `folds_exact` says so to the page.
    """
    _check_build_settings(n_folds=n_folds, inner_val_fraction=inner_val_fraction)
    filters = _filters(**filter_values)
    with transaction.atomic():
        selected = selection_read(filters)
    modes = selected.modes()
    preview: dict[str, Any] = {
        "clips": len(selected.clips),
        "votes": len(selected.ratings),
        "patients": selected.patients,
        "raters": selected.raters,
        "modes": {g: modes.count(g) for g in GRADES},
        "left_out": selected.left_out,
        "folds": [],
        "folds_exact": False,
        "problem": "",
        "filters": filters,
    }
    if not selected.clips:
        preview["problem"] = "no clip matches the filters; lower the minimum votes or widen them"
        return preview
    try:
        folds = assign_folds(
            [c.external_id for c in selected.clips],
            modes,
            [str(c.video.patient_id) for c in selected.clips],
            n_folds=n_folds,
            seed=seed,
            inner_val_fraction=inner_val_fraction,
        )
    except ValueError as exc:
        preview["problem"] = f"the build would fail: {exc}"
        return preview
    preview["folds"] = [
        {"fold": int(k), **{str(c): int(v) for c, v in row.items()}}
        for k, row in folds.balance_table().iterrows()
    ]
    return preview


def _pseudonym(salt: str, kind: str, value: str, *, length: int = 10) -> str:
    digest = hmac.new(salt.encode(), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()
    return f"{kind[0]}{digest[:length]}"


def clip_export_id(version: DatasetVersion, clip_external_id: str) -> str:
    """The id a version's export names a clip by: a per-version pseudonym (16 hex digits, so
    that even a million clips do not collide), or the platform's id for versions without."""
    if not version.pseudonymous_clip_ids:
        return clip_external_id
    return _pseudonym(version.pseudonym_salt, "clip", clip_external_id, length=16)


def version_claim(*, version_id: int) -> bool:
    """Claim a version for building; False when it is built or failed (redeliveries no-op)."""
    return (
        DatasetVersion.objects.filter(
            pk=version_id,
            frozen=False,
            status__in=[DatasetVersion.Status.PENDING, DatasetVersion.Status.BUILDING],
        ).update(status=DatasetVersion.Status.BUILDING, started_at=timezone.now(), error="")
        == 1
    )


def _progress_saver(version_id: int) -> Progress:
    def save(fraction: float, message: str) -> None:
        DatasetVersion.objects.filter(pk=version_id, frozen=False).update(
            progress=round(min(max(fraction, 0.0), 1.0), 4), progress_message=message[:200]
        )

    return save


def dataset_version_build(*, version_id: int, progress: Progress | None = None) -> DatasetVersion:
    """Freeze the selected clips and votes, assign folds, write the export, mark it ready."""
    version = DatasetVersion.objects.get(pk=version_id)
    if version.frozen:
        return version
    report = progress or _progress_saver(version_id)
    try:
        with transaction.atomic():
            # Read the clips and votes in one transaction: a consistent snapshot of both.
            selected = selection_read(version.filters)
        clips, ratings = selected.clips, selected.ratings
        if not clips:
            raise DatasetError("no clip matches the filters; lower the minimum votes or widen them")
        report(0.05, f"{len(clips)} clips, {len(ratings)} votes selected")
        frozen = _freeze(version, clips, ratings)
        report(0.15, "folds assigned; writing the export")
        folder = export_dir_for(version)
        result = _write_export(version, frozen, out_dir=folder, progress=report, overwrite=True)
        archive = ("", 0)
        if not is_local(EXPORTS):
            report(0.96, "export: writing the objects and the archive")
            archive = export_publish(
                folder, version_name=version.name, archive_root=f"mersv-{version.name}"
            )
        with transaction.atomic():
            _store(version, frozen, result, archive=archive)
    except (DatasetError, ValueError) as exc:
        dataset_version_fail(version_id=version_id, error=str(exc))
        raise DatasetError(str(exc)) from exc
    except Exception as exc:
        dataset_version_fail(version_id=version_id, error=f"unexpected error while building: {exc}")
        raise
    return DatasetVersion.objects.get(pk=version_id)


def dataset_version_fail(*, version_id: int, error: str) -> None:
    """Mark an unfrozen version failed with ``error`` (a build error, or its task ran out of
    time)."""
    DatasetVersion.objects.filter(pk=version_id, frozen=False).update(
        status=DatasetVersion.Status.FAILED, error=error[:2000], finished_at=timezone.now()
    )


def _freeze(
    version: DatasetVersion, clips: list[Clip], ratings: list[tuple[str, str, str]]
) -> dict[str, Any]:
    """Every table of the version, computed once from the snapshot (plain pandas)."""
    salt = version.pseudonym_salt
    clip_ids = [c.external_id for c in clips]
    votes = pd.DataFrame(ratings, columns=list(RATING_NAMES))
    votes["rater_id"] = [_pseudonym(salt, "rater", r) for r in votes["rater_id"]]
    arrays = rating_arrays(votes, clip_ids=clip_ids, rater_ids=sorted(set(votes["rater_id"])))
    stats = distribution_stats(grade_counts(arrays.clip_idx, arrays.grade_idx, len(clip_ids)))
    patients = [_pseudonym(salt, "patient", c.video.patient.code) for c in clips]
    folds = assign_folds(
        clip_ids,
        list(stats.mode),
        patients,
        n_folds=version.n_folds,
        seed=version.seed,
        inner_val_fraction=version.inner_val_fraction,
    )
    clip_rows = []
    media: list[ClipMedia] = []
    for clip, patient in zip(clips, patients, strict=True):
        suffix = Path(clip.video.file.name).suffix.lower() or ".mp4"
        video_name = _pseudonym(salt, "video", str(clip.video_id))
        clip_rows.append(
            {
                "clip_id": clip.external_id,
                "patient_id": patient,
                "video": f"videos/{video_name}{suffix}",
                "fps": float(clip.video.fps or 0.0),
                "x": clip.start_x,
                "y": clip.start_y,
                "pixel_size_um": clip.video.pixel_size_um,
                **clip.kinematics_dict(),
            }
        )
        media.append(ClipMedia(clip=clip, video_name=video_name, suffix=suffix))
    clips_frame = pd.DataFrame(clip_rows)
    distributions = pd.DataFrame(stats.p, columns=list(PROB_COLUMNS))
    distributions.insert(0, "clip_id", clip_ids)
    distributions["n"] = stats.n
    distributions["mean"] = stats.mean
    distributions["std"] = stats.std
    distributions["mode"] = stats.mode
    alpha = krippendorff_alpha(
        arrays.clip_idx, arrays.rater_idx, arrays.grade_idx,
        n_clips=arrays.n_clips, n_raters=arrays.n_raters,
        n_resamples=BOOTSTRAP_RESAMPLES, seed=version.seed,
    )  # fmt: skip
    summary = {
        "counts": {
            "clips": len(clip_ids),
            "ratings": len(votes),
            "patients": len(set(patients)),
            "raters": arrays.n_raters,
            "folds": version.n_folds,
        },
        "figure3": figure3_stats(stats, rater_idx=arrays.rater_idx, n_raters=arrays.n_raters),
        "agreement": {
            "krippendorff_alpha_ordinal": asdict(alpha),
            "fleiss_kappa": fleiss_kappa(stats.counts),
        },
        "datasheet_format": DATASHEET_FORMAT,
        "fold_balance": {
            str(k): {str(c): int(v) for c, v in row.items()}
            for k, row in folds.balance_table().iterrows()
        },
    }
    return {
        "clips": clips_frame,
        "media": media,
        "ratings": votes,
        "distributions": distributions,
        "stats": stats,
        "folds": folds,
        "summary": _json_safe(summary),
    }


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _datasheet(version: DatasetVersion, summary: dict[str, Any], folds: FoldAssignment) -> str:
    agreement = summary["agreement"]
    note = ""
    if summary.get("datasheet_format", 1) == 1:
        # Built before format 2: its export's datasheet flattened alpha's fields into rows and
        # carried a note; re-exports must repeat those bytes, or the content hash would differ.
        agreement = agreement["krippendorff_alpha_ordinal"] | {
            "fleiss_kappa": agreement["fleiss_kappa"]
        }
        note = "sha256 of MANIFEST.sha256 (shown on the version page and in the API)"
    return render_datasheet(
        name=version.name,
        content_hash_note=note,
        counts=summary["counts"],
        figure3=summary["figure3"],
        # One row per measure: alpha with its interval and details, Fleiss' kappa a number.
        agreement=agreement,
        fold_balance=folds.balance_table(),
        filters=_datasheet_filters(version.filters),
        generation={
            "n_folds": version.n_folds,
            "seed": version.seed,
            "inner_val_fraction": version.inner_val_fraction,
            "bootstrap_resamples": BOOTSTRAP_RESAMPLES,
            "grade_mode_ties": "nearest the mean score, then the better grade",
            # Only where it applies: older versions' datasheets keep their bytes.
            **(
                {
                    "clip_ids": "per-version pseudonyms (another version names the same clip "
                    "differently); patients, raters and videos are pseudonymised per version too"
                }
                if version.pseudonymous_clip_ids
                else {}
            ),
        },
        licence=version.licence,
    )


def _datasheet_filters(filters: dict[str, Any]) -> dict[str, Any]:
    """The filters as the datasheet records them. Left-out raters appear as a count: the
    export names raters by per-version pseudonyms, and their platform ids would undo that."""
    shown = dict(filters)
    if "exclude_raters" in shown:
        raters = shown.pop("exclude_raters") or []
        shown["exclude_raters"] = (
            f"{len(raters)} experts' votes left out (their ids are on the version page only)"
            if raters
            else "none"
        )
    return shown


def _write_export(
    version: DatasetVersion,
    frozen: dict[str, Any],
    *,
    out_dir: Path,
    progress: Progress | None = None,
    overwrite: bool = False,
) -> ExportResult:
    # The tables hold the platform's clip ids; the export names clips by their export ids.
    ids = {c: clip_export_id(version, c) for c in frozen["clips"]["clip_id"]}

    def renamed(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(clip_id=frame["clip_id"].map(ids))

    clips = renamed(frozen["clips"])
    files: dict[str, Path] = {}
    for video, item in zip(clips["video"], frozen["media"], strict=True):
        clip = item.clip
        # In place, or this host's verified cached copy with object storage.
        files[video] = media_local_path(clip.video.file.name, sha256=clip.video.sha256)
        files[f"crops/{ids[clip.external_id]}.mp4"] = media_local_path(clip.crop_file.name)
        files[f"frames/{ids[clip.external_id]}.npy"] = media_local_path(clip.frames_file.name)

    def on_file(done: int, total: int) -> None:
        if progress and (done % 25 == 0 or done == total):
            progress(0.15 + 0.8 * done / max(total, 1), f"export: {done}/{total} files")

    return write_export(
        out_dir,
        clips=clips,
        ratings=renamed(frozen["ratings"]),
        distributions=renamed(frozen["distributions"]),
        splits=renamed(frozen["folds"].splits_frame()),
        inner_splits=renamed(frozen["folds"].inner_frame()),
        files=files,
        datasheet_markdown=_datasheet(version, frozen["summary"], frozen["folds"]),
        progress=on_file,
        overwrite=overwrite,
    )


def _store(
    version: DatasetVersion,
    frozen: dict[str, Any],
    result: ExportResult,
    *,
    archive: tuple[str, int] = ("", 0),
) -> None:
    """Write the frozen rows and mark the version ready and frozen (inside a transaction)."""
    version = DatasetVersion.objects.select_for_update().get(pk=version.pk)
    if version.frozen:
        return
    DatasetClip.objects.filter(version=version).delete()  # rows of a build that died midway
    DatasetInnerSplit.objects.filter(version=version).delete()
    DatasetRating.objects.filter(version=version).delete()
    stats, folds = frozen["stats"], frozen["folds"]
    rows = []
    table = frozen["clips"].to_dict("records")
    for i, (row, item) in enumerate(zip(table, frozen["media"], strict=True)):
        clip = item.clip
        rows.append(
            DatasetClip(
                version=version,
                clip=clip,
                clip_external_id=clip.external_id,
                patient_pseudonym=row["patient_id"],
                video_pseudonym=item.video_name,
                video_suffix=item.suffix,
                fold=folds.folds[clip.external_id],
                counts=stats.counts[i].tolist(),
                n=int(stats.n[i]),
                p=stats.p[i].tolist(),
                mean=float(stats.mean[i]),
                std=float(stats.std[i]),
                mode=str(stats.mode[i]),
                entropy=float(stats.entropy[i]),
                kinematics=clip.kinematics_dict(),
                fps=row["fps"],
                start_x=row["x"],
                start_y=row["y"],
                pixel_size_um=row["pixel_size_um"],
            )
        )
    DatasetClip.objects.bulk_create(rows, batch_size=1000)
    DatasetInnerSplit.objects.bulk_create(
        [
            DatasetInnerSplit(version=version, outer_fold=k, clip_external_id=c, subset=s)
            for k, c, s in folds.inner
        ],
        batch_size=2000,
    )
    DatasetRating.objects.bulk_create(
        [
            DatasetRating(version=version, clip_external_id=c, rater_pseudonym=r, grade=g)
            for c, r, g in frozen["ratings"].itertuples(index=False)
        ],
        batch_size=2000,
    )
    summary = frozen["summary"]
    DatasetVersion.objects.filter(pk=version.pk).update(
        status=DatasetVersion.Status.READY,
        frozen=True,
        progress=1.0,
        progress_message="ready",
        content_hash=result.content_hash,
        archive_sha256=archive[0],
        archive_bytes=archive[1],
        n_clips=summary["counts"]["clips"],
        n_ratings=summary["counts"]["ratings"],
        n_patients=summary["counts"]["patients"],
        summary=summary,
        finished_at=timezone.now(),
    )


def frozen_tables(version: DatasetVersion) -> dict[str, Any]:
    """The tables of a built version, rebuilt from its frozen rows only (no live data)."""
    if not version.frozen:
        raise DatasetError(f"dataset version {version.name!r} is not built yet")
    dclips = list(version.clips.select_related("clip__video"))
    clip_rows = [
        {
            "clip_id": d.clip_external_id,
            "patient_id": d.patient_pseudonym,
            "video": f"videos/{d.video_pseudonym}{d.video_suffix}",
            "fps": d.fps,
            "x": d.start_x,
            "y": d.start_y,
            "pixel_size_um": d.pixel_size_um,
            **{k: d.kinematics[k] for k in KINEMATICS_KEYS},
        }
        for d in dclips
    ]
    distributions = pd.DataFrame([d.p for d in dclips], columns=list(PROB_COLUMNS))
    distributions.insert(0, "clip_id", [d.clip_external_id for d in dclips])
    distributions["n"] = [d.n for d in dclips]
    distributions["mean"] = [d.mean for d in dclips]
    distributions["std"] = [d.std for d in dclips]
    distributions["mode"] = [d.mode for d in dclips]
    ratings = pd.DataFrame(
        list(version.ratings.values_list("clip_external_id", "rater_pseudonym", "grade")),
        columns=list(RATING_NAMES),
    )
    return {
        "clips": pd.DataFrame(clip_rows),
        "media": [ClipMedia(d.clip, d.video_pseudonym, d.video_suffix) for d in dclips],
        "ratings": ratings,
        "distributions": distributions,
        "folds": _FrozenFolds(version, dclips),
        "summary": version.summary,
    }


class _FrozenFolds:
    """The FoldAssignment interface the export writer needs, read back from frozen rows."""

    def __init__(self, version: DatasetVersion, dclips: list[DatasetClip]) -> None:
        self.version = version
        self.dclips = dclips

    def splits_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {"clip_id": [d.clip_external_id for d in self.dclips],
             "fold": [d.fold for d in self.dclips]}
        )  # fmt: skip

    def inner_frame(self) -> pd.DataFrame:
        rows = self.version.inner.values_list("outer_fold", "clip_external_id", "subset")
        return pd.DataFrame(list(rows), columns=["outer_fold", "clip_id", "subset"])

    def balance_table(self) -> pd.DataFrame:
        table = pd.DataFrame(0, index=range(self.version.n_folds), columns=list(GRADES))
        for d in self.dclips:
            table.loc[d.fold, d.mode] += 1
        table["total"] = table.sum(axis=1)
        table.index.name = "fold"
        return table


def dataset_version_export(*, version: DatasetVersion, out_dir: Path) -> ExportResult:
    """Write the export of a built version from its frozen rows into out_dir.

    The bytes equal the build's export; a different content hash means the frozen data or the
    media changed underneath, and is reported as an error.
    """
    result = _write_export(version, frozen_tables(version), out_dir=out_dir)
    if result.content_hash != version.content_hash:
        raise DatasetError(
            f"the export of {version.name!r} hashes to {result.content_hash}, not the frozen "
            f"{version.content_hash}: media files changed since the build"
        )
    return result


def dataset_version_delete_unbuilt(*, version: DatasetVersion) -> None:
    """Delete a version that never finished building (failed or pending)."""
    if version.frozen:
        raise FrozenError(f"dataset version {version.name!r} is frozen and cannot be deleted")
    shutil.rmtree(export_dir_for(version), ignore_errors=True)
    if not is_local(EXPORTS):
        storage_tree_delete(storage_for(EXPORTS), version.name)
    version.delete()
