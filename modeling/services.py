"""Writes of the modeling app: training runs, their predictions, experiment grids.

A run is executed by :func:`training_run_execute`, the body of the Celery task and of the
``train`` command alike. It cross-validates the run's TrainConfig on the version's export
(``modeling.ml.train.cross_validate``) with checkpoints under
``TRAINING_RUNS_ROOT/<run id>-<random>/fold_<k>/`` (kept in the ``runs`` storage by
``modeling.checkpoints``), and reports through the hooks:

- every epoch: an EpochRecord and the progress (written at most every
  ``PROGRESS_WRITE_INTERVAL_S``, and at the end of each fold), so the run page's learning
  curves grow while the fold trains;
- every fold: its test metrics, its Prediction rows and the PCA of its features;
- before every batch: whether to stop (``cancel_requested``, read at most every
  ``CANCEL_CHECK_INTERVAL_S``), and a heartbeat every ``HEARTBEAT_INTERVAL_S``.

Every write that sets ``heartbeat_at`` also sets ``duration_s`` to the training time up to
that moment (earlier attempts included), so while a run is running its training time is
``duration_s + (now - heartbeat_at)`` (``selectors.run_elapsed_s``) and never reads 0 s.

Leases: claiming a run increments its ``attempt`` and every later write is conditioned on
it. A redelivered task (acks_late + reject_on_worker_lost: the worker died) takes a running
run over once its heartbeat is older than ``TRAINING_HEARTBEAT_STALE_S`` and resumes from the
checkpoints; while the heartbeat is fresh it raises :class:`RunBusy` (the task retries
later), so one run never trains twice at once. A worker that finds its lease taken stops.

Stopping: a cancel request ends the run as ``cancelled``; any other stop (an extra
``should_stop`` hook, Ctrl-C in the command) puts it back to ``pending`` with its checkpoints,
and executing it again resumes where it stopped. Both keep every checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import math
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from annotation.access.audit import audit_record
from annotation.errors import ServiceError
from annotation.grades import GRADES
from annotation.models import Clip, Video
from annotation.storage import EXPORTS, RUNS, cache, is_local, media_local_path, storage_for
from datasets.models import DatasetVersion
from datasets.selectors import version_clip_pks_by_export_id
from datasets.services import export_dir_for, export_local
from modeling import selectors
from modeling.checkpoints import CheckpointFolder
from modeling.ml.data import fold_label, list_folds
from modeling.ml.metrics import grade_mode_index
from modeling.ml.morphometry import pixel_size_outside
from modeling.ml.options import options_problems, recipe_overrides, weights_name_problem
from modeling.ml.train import (
    TRAIN_OPTIONS,
    CrossValidationResult,
    EpochLog,
    FoldResult,
    TrainConfig,
    TrainingCancelled,
    cross_validate,
    load_model,
    predict,
)
from modeling.models import (
    ACTIVE_STATUSES,
    P_FIELDS,
    EpochRecord,
    ExperimentGrid,
    JobStatus,
    Prediction,
    TrainingRun,
)
from modeling.report import pca_2d, report_html, report_markdown
from modeling.retirement_prior import retirement_priors_add

log = logging.getLogger(__name__)

PROGRESS_WRITE_INTERVAL_S = 2.0
CANCEL_CHECK_INTERVAL_S = 2.0
HEARTBEAT_INTERVAL_S = 15.0
GRID_LOSSES: tuple[str, ...] = ("ce", "mse", "jsd", "emd")  # the paper's order
PREDICT_BATCH = 16


class TrainingError(ServiceError):
    """A training request that cannot run as asked; the message says why and what to do."""


class RunBusy(Exception):
    """Another worker holds a fresh lease on the run; try again after ``retry_after`` s."""

    def __init__(self, run_id: int, retry_after: float) -> None:
        super().__init__(f"run {run_id} is being trained by another worker")
        self.retry_after = retry_after


class LeaseLost(Exception):
    """The run was claimed by another attempt (or deleted) while this one trained."""


def run_dir_for(run: TrainingRun) -> Path:
    """``TRAINING_RUNS_ROOT/<run id>-<random>``: the random part keeps a run of a reset
    database from resuming the checkpoints of an older run that had the same id."""
    return Path(settings.TRAINING_RUNS_ROOT) / f"{run.pk}-{secrets.token_hex(4)}"


def grid_dir_for(grid: ExperimentGrid) -> Path:
    """Local storage: the folder of the grid's report (TRAINING_RUNS_ROOT/grids/<id>)."""
    return Path(settings.TRAINING_RUNS_ROOT) / selectors.grid_report_folder(grid)


def _json_safe(value: Any) -> Any:
    """JSON for PostgreSQL: non-finite floats (a metric of an empty class) become None."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _file_hash(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# Starting, cancelling, resuming


def training_config_check(config: Mapping[str, Any], *, local_paths: bool = False) -> TrainConfig:
    """The TrainConfig of a new run's ``config`` (TrainConfig field names; unset ones take
    the defaults), or a TrainingError naming the problem and the valid choices.

    Every option lies within its bounds (modeling.ml.options), from whichever surface it
    came. ``pretrained`` names weights in the weights folder (``pretrained_check``); with
    ``local_paths`` (the ``train`` command, run by an admin on the machine) it may instead be
    a path, made absolute here."""
    values = dict(config)
    problems = options_problems(values, TRAIN_OPTIONS)
    if problems:
        raise TrainingError(f"invalid training configuration: {'; '.join(problems)}")
    pretrained = values.get("pretrained")
    if pretrained:
        if local_paths and weights_name_problem(str(pretrained)) is not None:
            path = Path(str(pretrained)).expanduser().resolve()
            if not path.exists():
                raise TrainingError(f"pretrained weights not found: {path}")
            values["pretrained"] = str(path)
        else:
            pretrained_check(str(pretrained))
    try:
        return TrainConfig.from_options(values)
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"invalid training configuration: {exc}") from exc


# Object storage: weights files live in the runs storage under this folder (an admin copies
# them to <bucket>/<prefix>/runs/weights/), so every training host finds the same ones.
WEIGHTS_FOLDER = "weights"


def _weights_names() -> list[str]:
    """The names of the weights there are (the weights folder, or the runs storage's)."""
    if is_local(RUNS):
        folder = Path(settings.WEIGHTS_DIR)
        entries = [entry.name for entry in (folder.iterdir() if folder.is_dir() else ())]
    else:
        try:
            entries = storage_for(RUNS).listdir(WEIGHTS_FOLDER)[1]
        except FileNotFoundError:
            entries = []
    return sorted(name for name in entries if weights_name_problem(name) is None)


def pretrained_check(name: str) -> None:
    """A TrainingError unless ``name`` names weights: an entry of the weights folder
    (``WEIGHTS_DIR``), or with object storage a file under ``weights/`` of the runs storage.

    A name, never a path: the answer for a name that is not there lists what is there and
    says nothing about any other path of the machine."""
    problem = weights_name_problem(name)
    if problem:
        raise TrainingError(problem)
    if is_local(RUNS):
        if (Path(settings.WEIGHTS_DIR) / name).exists():
            return
        hint = "the folder holds none yet (an admin puts weights files into MERSV_WEIGHTS_DIR)"
    else:
        if storage_for(RUNS).exists(f"{WEIGHTS_FOLDER}/{name}"):
            return
        hint = (
            "the folder holds none yet (an admin copies weights files to runs/weights/ of the "
            "bucket)"
        )
    names = _weights_names()
    there = f"the weights there: {', '.join(names[:20])}" if names else hint
    raise TrainingError(f"no pretrained weights named {name!r} in the weights folder; {there}")


def pretrained_path(name: str) -> Path:
    """The local path of the weights called ``name`` (:func:`pretrained_check`): in the
    weights folder, or with object storage this host's cached copy of the stored file
    (fetched again when the stored file is replaced: its size and time key the entry)."""
    pretrained_check(name)
    if is_local(RUNS):
        return Path(settings.WEIGHTS_DIR) / name
    storage, stored = storage_for(RUNS), f"{WEIGHTS_FOLDER}/{name}"
    version = f"{storage.size(stored)}:{storage.get_modified_time(stored).isoformat()}"
    return cache("weights").materialise(storage, stored, version=version)


def _config_for_training(config: TrainConfig) -> TrainConfig:
    """``config`` with its ``pretrained`` name replaced by the weights' path on this worker
    (a path the ``train`` command stored stays as it is)."""
    name = config.pretrained
    if not name or weights_name_problem(name) is not None:
        return config
    return dataclasses.replace(config, pretrained=str(pretrained_path(name)))


def _version_check(version: DatasetVersion) -> None:
    if not version.frozen or version.status != DatasetVersion.Status.READY:
        raise TrainingError(
            f"dataset version {version.name!r} is {version.get_status_display().lower()}, not "
            "ready: train on a built version (or wait for its build to finish)"
        )
    if not is_local(EXPORTS):
        # The training worker fetches and verifies it (datasets.services.export_local).
        if not storage_for(EXPORTS).exists(f"{version.name}/splits.csv"):
            raise TrainingError(
                f"the export of {version.name!r} is missing from the exports storage: rewrite "
                f"it with `python manage.py export_dataset {version.name} --out DIR`"
            )
        return
    folder = export_dir_for(version)
    if not (folder / "splits.csv").is_file():
        raise TrainingError(
            f"the export of {version.name!r} is missing from {folder}: rewrite it with "
            f"`python manage.py export_dataset {version.name} --out {folder}`"
        )


def training_run_start(
    *,
    version: DatasetVersion,
    config: Mapping[str, Any],
    created_by: User | None,
    name: str | None = None,
    grid: ExperimentGrid | None = None,
    enqueue: bool = True,
    local_paths: bool = False,
) -> TrainingRun:
    """Record a pending run of ``config`` (TrainConfig fields; unset ones take its defaults)
    on ``version``; with ``enqueue`` its task is sent once the transaction commits.
    ``local_paths``: see ``training_config_check`` (the ``train`` command only)."""
    _version_check(version)
    train_config = training_config_check(config, local_paths=local_paths)
    name = name or f"{train_config.backbone}-{train_config.preset}-{train_config.loss}"
    with transaction.atomic():
        run = TrainingRun.objects.create(
            version=version,
            grid=grid,
            name=name[:120],
            config=train_config.to_dict(),
            n_folds=version.n_folds,
            created_by=created_by,
        )
        run.checkpoint_dir = str(run_dir_for(run))
        run.save(update_fields=["checkpoint_dir"])
        audit_record(
            action="training_start", user=created_by, obj=run,
            detail={"name": run.name, "dataset": version.name},
        )  # fmt: skip
        if enqueue:
            _enqueue_run(run.pk)
    return run


def _enqueue_run(run_id: int) -> None:
    from modeling.tasks import train_run

    transaction.on_commit(lambda: train_run.delay(run_id))


def training_run_cancel(*, run: TrainingRun, by: User | None) -> TrainingRun:
    """A pending run is cancelled at once; a running one is asked to stop (its worker sees
    the request within a few seconds and keeps the checkpoints)."""
    who = f" by {by.get_username()}" if by is not None else ""
    runs = TrainingRun.objects.filter(pk=run.pk)
    cancelled_now = runs.filter(status=JobStatus.PENDING).update(
        status=JobStatus.CANCELLED, progress_message=f"cancelled{who}", finished_at=timezone.now()
    )
    if not cancelled_now and not runs.filter(status=JobStatus.RUNNING).update(
        cancel_requested=True, progress_message=f"cancelling{who}…"
    ):
        run.refresh_from_db()
        raise TrainingError(
            f"run {run.pk} is {run.get_status_display().lower()}: only pending or running runs "
            "can be cancelled"
        )
    run.refresh_from_db()
    return run


def _stalled() -> Q:
    """Running runs whose worker has stopped sending heartbeats (it died, and the broker has
    not redelivered the task yet)."""
    stale_before = timezone.now() - timedelta(seconds=settings.TRAINING_HEARTBEAT_STALE_S)
    return Q(status=JobStatus.RUNNING) & (
        Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=stale_before)
    )


def training_run_is_stalled(run: TrainingRun) -> bool:
    return TrainingRun.objects.filter(_stalled(), pk=run.pk).exists()


def training_run_resume(*, run: TrainingRun, enqueue: bool = True) -> TrainingRun:
    """Queue a failed, cancelled, interrupted (pending) or stalled run again; it continues
    from its checkpoints (folds already finished are not trained again)."""
    resumable = Q(status__in=[JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.PENDING])
    with transaction.atomic():
        updated = TrainingRun.objects.filter(resumable | _stalled(), pk=run.pk).update(
            status=JobStatus.PENDING,
            cancel_requested=False,
            error="",
            finished_at=None,
            progress_message="queued to resume from the checkpoints",
        )
        if not updated:
            run.refresh_from_db()
            raise TrainingError(
                f"run {run.pk} is {run.get_status_display().lower()}: only failed, cancelled, "
                "interrupted or stalled runs can be resumed"
            )
        if enqueue:
            _enqueue_run(run.pk)
    run.refresh_from_db()
    return run


def training_run_fail(*, run_id: int, error: str) -> None:
    """Mark an unfinished (or just failed) run failed with ``error``, e.g. after the worker's
    time limit."""
    TrainingRun.objects.filter(pk=run_id, status__in=[*ACTIVE_STATUSES, JobStatus.FAILED]).update(
        status=JobStatus.FAILED,
        error=error[:4000],
        progress_message="failed",
        finished_at=timezone.now(),
        heartbeat_at=None,
    )


# --------------------------------------------------------------------------------------------
# Executing


def training_run_claim(*, run_id: int) -> int | None:
    """Take the run's lease: the new attempt number, or None when there is nothing to do
    (finished, cancelled or deleted). Raises RunBusy while another worker's lease is fresh.

    One conditional UPDATE decides, so of two workers claiming at once only one wins.
    """
    now = timezone.now()
    stale_after = timedelta(seconds=settings.TRAINING_HEARTBEAT_STALE_S)
    claimed = (
        TrainingRun.objects.filter(Q(status=JobStatus.PENDING) | _stalled(), pk=run_id).update(
            status=JobStatus.RUNNING,
            attempt=F("attempt") + 1,
            heartbeat_at=now,
            error="",
            progress_message="starting",
        )
        == 1
    )
    run = TrainingRun.objects.filter(pk=run_id).only("status", "attempt", "heartbeat_at").first()
    if run is None:
        return None
    if claimed:
        TrainingRun.objects.filter(pk=run_id, started_at__isnull=True).update(started_at=now)
        return run.attempt
    if run.status == JobStatus.RUNNING and run.heartbeat_at is not None:
        age = (now - run.heartbeat_at).total_seconds()
        raise RunBusy(run_id, retry_after=max(5.0, stale_after.total_seconds() - age + 1))
    return None


class _RunReporter:
    """The hooks of one attempt: epoch records and progress, fold results, stop checks."""

    def __init__(
        self,
        run: TrainingRun,
        attempt: int,
        config: TrainConfig,
        folds: Sequence[int],
        extra_stop: Callable[[], bool] | None,
        started: float,
    ) -> None:
        self.run_id = run.pk
        # Training time of the earlier attempts, and when this one began (time.monotonic()).
        self.earlier_duration = run.duration_s
        self.started = started
        self.attempt = attempt
        self.config = config
        self.fold_position = {fold: i for i, fold in enumerate(folds)}
        self.n_folds = len(folds)
        # The export names clips by its own ids (per-version pseudonyms): back to the clips.
        self.clip_pks = version_clip_pks_by_export_id(run.version)
        self.extra_stop = extra_stop
        self.pending: list[EpochRecord] = []
        self.progress = run.progress
        self.cancel_seen = False
        self.last_write = self.last_check = self.last_heartbeat = -math.inf

    def runs(self) -> QuerySet[TrainingRun]:
        """This attempt's row: writes through it fail when the lease was taken over."""
        return TrainingRun.objects.filter(pk=self.run_id, attempt=self.attempt)

    def duration_s(self) -> float:
        """The run's training time until now, every attempt included."""
        return self.earlier_duration + (time.monotonic() - self.started)

    def update(self, **fields: Any) -> None:
        if "heartbeat_at" in fields:
            fields["duration_s"] = self.duration_s()
        if not self.runs().update(**fields):
            raise LeaseLost(f"run {self.run_id} was taken over by another attempt")

    def _epoch_record(self, entry: EpochLog) -> EpochRecord:
        metrics = entry.val_metrics

        def finite(x: float | None) -> float | None:
            return float(x) if x is not None and math.isfinite(x) else None

        return EpochRecord(
            run_id=self.run_id,
            fold=entry.outer_fold,
            epoch=entry.epoch,
            train_loss=entry.train_loss,
            val_loss=entry.val_loss,
            val_hi=finite(metrics.get("hi")),
            val_emd=finite(metrics.get("emd")),
            best_epoch=entry.best_epoch,
            seconds=entry.seconds,
        )

    def _save_records(self, records: Sequence[EpochRecord]) -> None:
        EpochRecord.objects.bulk_create(
            records,
            update_conflicts=True,
            unique_fields=["run", "fold", "epoch"],
            update_fields=["train_loss", "val_loss", "val_hi", "val_emd", "best_epoch", "seconds"],
        )

    # Hooks of cross_validate ----------------------------------------------------------------

    def on_epoch(self, entry: EpochLog) -> None:
        self.pending.append(self._epoch_record(entry))
        # Where the fold may end: the epoch limit, or patience epochs after the best one.
        patience = self.config.early_stopping_patience
        horizon = min(entry.epochs, entry.best_epoch + patience) if patience else entry.epochs
        within = 1.0 if entry.finished else entry.epoch / max(horizon, 1)
        position = self.fold_position.get(entry.outer_fold, 0)
        self.progress = max(self.progress, (position + within) / max(self.n_folds, 1))
        message = (
            f"{fold_label(position)}/{self.n_folds} · epoch {entry.epoch} (best {entry.best_epoch})"
            f" · train {entry.train_loss:.4f} · val {entry.val_loss:.4f}"
        )
        if entry.finished or time.monotonic() - self.last_write >= PROGRESS_WRITE_INTERVAL_S:
            self.flush(progress=round(min(self.progress, 0.999), 4), progress_message=message)

    def flush(self, **fields: Any) -> None:
        """Write the buffered epoch records (and ``fields``) in one transaction."""
        with transaction.atomic():
            if self.pending:
                self._save_records(self.pending)
            self.update(heartbeat_at=timezone.now(), **fields)
        self.pending = []
        self.last_write = self.last_heartbeat = time.monotonic()

    def on_fold(self, result: FoldResult) -> None:
        fold = result.outer_fold
        model_hash = _file_hash(Path(result.model_path))
        version = f"run{self.run_id}-{model_hash}"
        clip_ids = sorted(result.predictions)
        predictions = [
            Prediction(
                run_id=self.run_id,
                clip_id=self.clip_pks[clip_id],
                fold=fold,
                **dict(zip(P_FIELDS, result.predictions[clip_id], strict=True)),
                model_version=version,
                metadata=prediction_metadata(
                    [result.trained_pixel_sizes], result.test_pixel_sizes.get(clip_id)
                ),
            )
            for clip_id in clip_ids
        ]
        features = np.array([result.features[c] for c in clip_ids], dtype=np.float32)
        np.savez_compressed(
            Path(result.model_path).parent / "features.npz", clip_ids=clip_ids, features=features
        )
        coords, explained = pca_2d(features)
        modes = grade_mode_index(np.array([result.targets[c] for c in clip_ids]))
        pca = {
            "explained": explained.round(4).tolist(),
            "points": [
                [c, round(float(x), 4), round(float(y), 4), GRADES[m]]
                for c, (x, y), m in zip(clip_ids, coords, modes, strict=True)
            ],
        }
        summary = {
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "stopped_early": result.stopped_early,
            "model_hash": model_hash,
            "n_test": len(clip_ids),
        }
        with transaction.atomic():
            run = self.runs().select_for_update().first()
            if run is None:
                raise LeaseLost(f"run {self.run_id} was taken over by another attempt")
            # The fold's full log from its checkpoint: fills in epochs an earlier attempt
            # trained but died before recording. One row per epoch: an upsert may not touch a
            # row twice.
            records = {(r.fold, r.epoch): r for r in self.pending}
            records.update({(e.outer_fold, e.epoch): self._epoch_record(e) for e in result.logs})
            self._save_records(list(records.values()))
            self.pending = []
            Prediction.objects.bulk_create(
                predictions,
                update_conflicts=True,
                unique_fields=["run", "clip"],
                update_fields=["fold", *P_FIELDS, "model_version", "metadata"],
            )
            run.fold_metrics[str(fold)] = _json_safe(result.test_metrics)
            run.fold_summaries[str(fold)] = summary
            run.pca[str(fold)] = pca
            run.folds_done = len(run.fold_metrics)
            self.progress = max(self.progress, run.folds_done / max(self.n_folds, 1))
            run.progress = round(min(self.progress, 0.999), 4)
            position = self.fold_position.get(fold, 0)
            run.progress_message = f"{fold_label(position)}/{self.n_folds} done"
            run.heartbeat_at = timezone.now()
            run.duration_s = self.duration_s()
            run.save(
                update_fields=[
                    "fold_metrics", "fold_summaries", "pca", "folds_done", "progress",
                    "progress_message", "heartbeat_at", "duration_s",
                ]
            )  # fmt: skip

    def should_stop(self) -> bool:
        if self.extra_stop is not None and self.extra_stop():
            return True
        now = time.monotonic()
        if now - self.last_check >= CANCEL_CHECK_INTERVAL_S:
            self.last_check = now
            row = TrainingRun.objects.filter(pk=self.run_id).values("cancel_requested", "attempt")
            current = row.first()
            if current is None or current["attempt"] != self.attempt:
                raise LeaseLost(f"run {self.run_id} was taken over or deleted")
            self.cancel_seen = current["cancel_requested"]
            if now - self.last_heartbeat >= HEARTBEAT_INTERVAL_S:
                self.update(heartbeat_at=timezone.now())
                self.last_heartbeat = now
        return self.cancel_seen


def _torch_threads() -> None:
    threads = settings.TRAINING_TORCH_THREADS
    if threads:
        torch.set_num_threads(threads)


def training_run_execute(
    *,
    run_id: int,
    should_stop: Callable[[], bool] | None = None,
    progress: bool = False,
) -> TrainingRun | None:
    """Train (or resume) the run to the end; see the module docstring.

    ``should_stop``: an extra stop condition besides the cancel request; when it fires the run
    goes back to pending with its checkpoints. ``progress``: tqdm bars on the terminal.
    Raises RunBusy when another worker holds the run; re-raises the error that failed a run
    after recording it.
    """
    attempt = training_run_claim(run_id=run_id)
    if attempt is None:
        return TrainingRun.objects.filter(pk=run_id).first()
    run = TrainingRun.objects.select_related("version").get(pk=run_id)
    started = time.monotonic()  # the claim set heartbeat_at: duration_s is current as of now
    reporter: _RunReporter | None = None

    def end(status: str, message: str, error: str = "", **fields: Any) -> None:
        if reporter is not None and reporter.pending:
            try:
                reporter.flush()
            except LeaseLost:
                return
        final = status not in ACTIVE_STATUSES
        TrainingRun.objects.filter(pk=run_id, attempt=attempt).update(
            status=status,
            progress_message=message[:200],
            error=error[:4000],
            finished_at=timezone.now() if final else None,
            # Absolute, not an increment: the heartbeats of this attempt wrote it already.
            duration_s=run.duration_s + (time.monotonic() - started),
            heartbeat_at=None,
            cancel_requested=False,
            **fields,
        )

    try:
        config = _config_for_training(TrainConfig.from_dict(run.config))
        # In place, or fetched from the exports storage and verified on this host.
        export_root = export_local(run.version)
        folds = list_folds(export_root)
        reporter = _RunReporter(run, attempt, config, folds, should_stop, started)
        # Object storage: the checkpoints another worker left are fetched first, and each
        # epoch's and fold's files written back, so any worker can resume the run.
        checkpoints = CheckpointFolder(run.checkpoint_dir)
        checkpoints.pull()
        hooks = reporter

        def on_epoch(entry: EpochLog) -> None:
            hooks.on_epoch(entry)
            checkpoints.push()

        def on_fold(fold_result: FoldResult) -> None:
            hooks.on_fold(fold_result)
            checkpoints.push()

        _torch_threads()
        result = cross_validate(
            config,
            export_root,
            checkpoint_root=checkpoints.local,
            folds=folds,
            on_epoch=on_epoch,
            on_fold=on_fold,
            should_stop=reporter.should_stop,
            progress=progress,
        )
    except TrainingCancelled as stop:
        where = f"after epoch {stop.epoch} of {fold_label(stop.outer_fold)}"
        if reporter is not None and reporter.cancel_seen:
            end(JobStatus.CANCELLED, f"cancelled {where}; checkpoints kept")
        else:
            end(JobStatus.PENDING, f"interrupted {where}; resume to continue")
    except LeaseLost:
        log.warning("run %s: lease lost; another attempt continues it", run_id)
    except KeyboardInterrupt:
        end(JobStatus.PENDING, "interrupted; resume to continue from the checkpoints")
        raise
    except Exception as exc:
        end(JobStatus.FAILED, "failed", error=training_error_message(exc))
        raise
    else:
        end(JobStatus.SUCCEEDED, "done", **_summary_fields(run, result))
    return TrainingRun.objects.filter(pk=run_id).first()


def training_error_message(exc: BaseException) -> str:
    # Our own errors (bad data, a diverging loss, a checkpoint of another config) explain
    # themselves; anything else keeps its type for whoever debugs it.
    if isinstance(exc, ServiceError | ValueError | FileNotFoundError | FloatingPointError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _summary_fields(run: TrainingRun, result: CrossValidationResult) -> dict[str, Any]:
    model_files = [Path(fold.model_path) for fold in result.folds]
    return {
        "progress": 1.0,
        "metrics_mean": _json_safe(result.mean),
        "metrics_std": _json_safe(result.std),
        "pooled_metrics": _json_safe(result.pooled_metrics),
        "model_version": f"run{run.pk}-{_file_hash(*model_files)}",
        "folds_done": len(result.folds),
    }


# --------------------------------------------------------------------------------------------
# Predictions for clips outside the version


def predictions_for_new_clips(*, run: TrainingRun, clips: Sequence[Clip]) -> int:
    """Predict clips that are not in the run's version and store them with ``fold=None``.

    Every fold's kept model predicts the clip and the distributions are averaged (an
    ensemble of the k cross-validation models; the mean of distributions is a distribution).
    Clips of the version are skipped: they keep their out-of-fold prediction. Returns the
    number of clips predicted.
    """
    if run.status != JobStatus.SUCCEEDED:
        raise TrainingError(f"run {run.pk} has not succeeded: only finished runs predict clips")
    in_version = set(run.version.clips.values_list("clip_id", flat=True))
    clips = [c for c in clips if c.pk not in in_version]
    if not clips:
        return 0
    config = TrainConfig.from_dict(run.config)
    device = config.device if config.device == "cpu" or torch.cuda.is_available() else "cpu"
    checkpoints = CheckpointFolder(run.checkpoint_dir)
    checkpoints.pull()  # object storage: the fold models, from the bucket
    model_paths = sorted(checkpoints.local.glob("fold_*/model.pt"))
    if not model_paths:
        raise TrainingError(f"run {run.pk} has no saved fold models in its folder {run.run_folder}")
    models = [load_model(path, device=device)[0] for path in model_paths]
    trained = [model.trained_pixel_sizes for model in models]
    # The clip's own pixel size (its video's, recorded at ingestion): the morphometry
    # measures its head in µm at it, as training did for the version's clips.
    pixel_sizes = dict(
        Clip.objects.filter(pk__in=[c.pk for c in clips]).values_list("pk", "video__pixel_size_um")
    )
    _torch_threads()
    rows = []
    for start in range(0, len(clips), PREDICT_BATCH):
        batch = clips[start : start + PREDICT_BATCH]
        frames = np.stack([_clip_frames(clip, config.frames) for clip in batch])  # (B, T, H, W)
        kinematics = np.nan_to_num(
            np.array(
                [[clip.kinematics_dict()[f] for f in config.kinematics_features] for clip in batch],
                dtype=np.float32,
            )
        )  # (B, k), missing as 0 like the training data
        sizes = np.array([pixel_sizes[clip.pk] for clip in batch], dtype=np.float64)
        p = np.mean(
            [predict(model, frames, kinematics, pixel_size_um=sizes) for model in models], axis=0
        )  # (B, 5)
        for clip, row, size in zip(batch, p, sizes, strict=True):
            values = dict(zip(P_FIELDS, map(float, row), strict=True))
            rows.append(
                Prediction(
                    run=run,
                    clip=clip,
                    fold=None,
                    model_version=run.model_version,
                    metadata=prediction_metadata(trained, float(size)),
                    **values,
                )
            )
    Prediction.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["run", "clip"],
        update_fields=["fold", *P_FIELDS, "model_version", "metadata"],
    )
    retirement_priors_add(run=run, predictions=rows)
    return len(rows)


def prediction_metadata(
    trained: Sequence[dict[str, Any] | None], pixel_size_um: float | None
) -> dict[str, Any]:
    """A prediction's metadata: the clip's pixel size and, when it lies far outside the pixel
    sizes the model(s) were trained on (their union), the warning that says so."""
    if pixel_size_um is None:
        return {}
    metadata: dict[str, Any] = {"pixel_size_um": pixel_size_um}
    known = [t for t in trained if t]
    if known:
        union = {
            "min_um": min(float(t["min_um"]) for t in known),
            "max_um": max(float(t["max_um"]) for t in known),
        }
        warning = pixel_size_outside(union, pixel_size_um)
        if warning:
            metadata["pixel_size_warning"] = warning
    return metadata


def _clip_frames(clip: Clip, n_frames: int) -> np.ndarray:
    frames = np.load(media_local_path(clip.frames_file.name))
    if frames.ndim != 3 or len(frames) < n_frames:
        raise TrainingError(
            f"clip {clip.external_id} has frames of shape {frames.shape}; the model needs "
            f"(T, H, W) with T >= {n_frames}"
        )
    return frames[:n_frames]


def predictions_new_clips_enqueue(*, run: TrainingRun) -> int:
    """Queue predictions for every ready clip outside the version that this run has not
    predicted yet; returns how many."""
    if run.status != JobStatus.SUCCEEDED:
        raise TrainingError(f"run {run.pk} has not succeeded: only finished runs predict clips")
    clip_ids = list(
        # A clip cut short (its target lost near the end) has fewer frames than the model reads.
        Clip.objects.filter(
            video__status=Video.Status.READY, n_frames__gte=TrainConfig.from_dict(run.config).frames
        )
        .exclude(dataset_clips__version=run.version)
        .exclude(predictions__run=run)
        .values_list("pk", flat=True)
    )
    if clip_ids:
        from modeling.tasks import predict_new_clips

        transaction.on_commit(lambda: predict_new_clips.delay(run.pk, clip_ids))
    return len(clip_ids)


# --------------------------------------------------------------------------------------------
# Experiment grids


def experiment_grid_start(
    *,
    version: DatasetVersion,
    backbones: Sequence[str],
    losses: Sequence[str] = GRID_LOSSES,
    preset: str = "small",
    epochs: int,
    base_config: Mapping[str, Any] | None = None,
    created_by: User | None,
    name: str | None = None,
    enqueue: bool = True,
) -> ExperimentGrid:
    """Record a grid and one pending run per (backbone, loss); with ``enqueue`` the runs are
    trained one after another by chained tasks (each with its own time limit)."""
    if not backbones or not losses:
        raise TrainingError("a grid needs at least one backbone and one loss")
    base = {k: v for k, v in dict(base_config or {}).items() if k not in ("backbone", "loss")}
    base.update(preset=preset, epochs=epochs)
    configs = [
        {**base, "backbone": backbone, "loss": loss}
        for backbone in dict.fromkeys(backbones)
        for loss in dict.fromkeys(losses)
    ]
    for config in configs:  # every setting is valid before anything is written
        training_config_check(config)
    _version_check(version)
    with transaction.atomic():
        grid = ExperimentGrid.objects.create(
            version=version,
            name=(name or f"{version.name} grid ({preset}, {epochs} epochs)")[:120],
            backbones=list(dict.fromkeys(backbones)),
            losses=list(dict.fromkeys(losses)),
            preset=preset,
            epochs=epochs,
            base_config=base,
            created_by=created_by,
        )
        for config in configs:
            training_run_start(
                version=version,
                config=config,
                created_by=created_by,
                name=f"{config['backbone']}-{config['loss']}",
                grid=grid,
                enqueue=False,
            )
        if enqueue:
            from modeling.tasks import run_grid_step

            transaction.on_commit(lambda: run_grid_step.delay(grid.pk))
    return grid


def experiment_grid_next_run(*, grid_id: int) -> TrainingRun | None:
    """Mark the grid running and return its next unfinished run, or None when the grid is
    done or cancelled (then :func:`experiment_grid_finish` writes the report)."""
    ExperimentGrid.objects.filter(pk=grid_id, status=JobStatus.PENDING).update(
        status=JobStatus.RUNNING, started_at=timezone.now()
    )
    grid = ExperimentGrid.objects.get(pk=grid_id)
    if grid.status != JobStatus.RUNNING or grid.cancel_requested:
        return None
    return grid.runs.filter(status__in=ACTIVE_STATUSES).order_by("pk").first()


def experiment_grid_cancel(*, grid: ExperimentGrid, by: User | None) -> ExperimentGrid:
    """Cancel every unfinished run of the grid; the grid ends with a report of the finished
    ones."""
    if grid.status not in ACTIVE_STATUSES:
        raise TrainingError(f"grid {grid.pk} is {grid.get_status_display().lower()} already")
    ExperimentGrid.objects.filter(pk=grid.pk).update(cancel_requested=True)
    for run in grid.runs.filter(status__in=ACTIVE_STATUSES):
        with contextlib.suppress(TrainingError):  # it finished meanwhile
            training_run_cancel(run=run, by=by)
    grid.refresh_from_db()
    return grid


def experiment_grid_finish(*, grid_id: int, out_dir: Path | None = None) -> ExperimentGrid:
    """Write the grid's report to the runs storage (and a copy into ``out_dir`` when given:
    the ``experiment_grid --out`` folder) and end it: succeeded when at least one run
    succeeded, cancelled on request, failed otherwise."""
    grid = ExperimentGrid.objects.get(pk=grid_id)
    folder = grid_report_write(grid=grid, out_dir=out_dir)
    succeeded = grid.runs.filter(status=JobStatus.SUCCEEDED).count()
    if grid.cancel_requested:
        status, error = JobStatus.CANCELLED, ""
    elif succeeded:
        status, error = JobStatus.SUCCEEDED, ""
    else:
        status, error = JobStatus.FAILED, "no run of the grid succeeded: see the runs' errors"
    ExperimentGrid.objects.filter(pk=grid_id).update(
        status=status, error=error, report_dir=folder, finished_at=timezone.now()
    )
    grid.refresh_from_db()
    return grid


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def grid_report_files(grid: ExperimentGrid) -> dict[str, str]:
    """The grid's report as files: the SVG figures, report.html and report.md (last: a
    reader that finds report.md finds the figures it links)."""
    report = selectors.grid_report(grid)
    files = {figure.filename: figure.svg + "\n" for figure in report.figures}
    for name, render in (("report.html", report_html), ("report.md", report_markdown)):
        files[name] = render(
            title=report.title, intro=report.intro, tables=report.tables, figures=report.figures
        )
    return files


def grid_report_write(*, grid: ExperimentGrid, out_dir: Path | None = None) -> str:
    """Save the grid's report files to the ``runs`` storage under
    :func:`selectors.grid_report_folder`, so any web host serves what a worker wrote; returns that
    folder. Local storage: files in TRAINING_RUNS_ROOT/grids/<id>, each written whole
    (a temporary file renamed); object storage: one object per file (a PUT is whole or
    absent). ``out_dir`` (a folder the caller named) gets a copy."""
    folder = selectors.grid_report_folder(grid)
    files = grid_report_files(grid)
    local = is_local(RUNS)
    storage = storage_for(RUNS)
    for name, text in files.items():
        if local:
            write_text_atomic(grid_dir_for(grid) / name, text)
        else:  # the runs storage overwrites (file_overwrite): a rewritten report keeps its names
            saved = storage.save(f"{folder}/{name}", ContentFile(text.encode("utf-8")))
            if saved != f"{folder}/{name}":
                raise OSError(f"the runs storage renamed {folder}/{name} to {saved}")
        if out_dir is not None:
            write_text_atomic(Path(out_dir) / name, text)
    return folder


TRAIN_OPTION_FIELDS: tuple[str, ...] = tuple(TrainConfig.__dataclass_fields__)
_OPTIONS_BY_NAME = {o.name: o for o in TRAIN_OPTIONS}


def training_config_from_options(
    options: Mapping[str, Any],
    *,
    recipe: str | None = None,
    given: Collection[str] | None = None,
) -> dict[str, Any]:
    """The TrainConfig fields of a form's, request's or command line's options: ``recipe``'s
    values (modeling.ml.options.RECIPES), overridden by the options the user gave (``given``:
    their names; None: every option in ``options``). Blanks (None, "") are not given: they
    take the recipe's value or the TrainConfig default. A surface's "off" spelling (an
    early-stopping patience of 0) becomes the config's None."""
    try:
        config = recipe_overrides(recipe)
    except ValueError as exc:
        raise TrainingError(str(exc)) from exc
    for name, value in options.items():
        if name not in TRAIN_OPTION_FIELDS or value in (None, ""):
            continue
        if given is not None and name not in given:
            continue
        known = _OPTIONS_BY_NAME.get(name)
        config[name] = known.to_config(value) if known else value
    return config


def training_option_default(name: str) -> Any:
    """An option's default as the surfaces spell it (what a grid takes when not given)."""
    return _OPTIONS_BY_NAME[name].surface_default
