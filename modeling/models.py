"""Training runs, their epoch logs and predictions, and experiment grids.

A TrainingRun is a long job with a lifecycle (status, progress, error, started/finished) that
cross-validates one TrainConfig (``modeling.ml.train``) on one frozen dataset version. Its
out-of-fold predictions are Prediction rows, one per clip of the version; predictions for
clips ingested later carry ``fold=None``.

Epoch logs are a child table rather than a JSON list on the run: a learning-curve plot reads
four columns of one run with one indexed query, and the worker appends rows without
rewriting a growing JSON document every few seconds.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import models

from annotation.models import Clip
from datasets.models import DatasetVersion


class JobStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATUSES = (JobStatus.PENDING, JobStatus.RUNNING)
P_FIELDS: tuple[str, ...] = ("p_a", "p_b", "p_c", "p_d", "p_e")  # Prediction's A..E columns


def runs_relative(folder: str) -> str:
    """A folder under TRAINING_RUNS_ROOT as pages and APIs show it: relative to that root
    (``12-9f3a0c1d``, ``grids/3``), so no page tells a curator where the workers keep it."""
    if not folder:
        return ""
    path = Path(folder)
    if not path.is_absolute():  # a storage name already (``grids/3``)
        return path.as_posix()
    try:
        return path.relative_to(Path(settings.TRAINING_RUNS_ROOT)).as_posix()
    except ValueError:
        return path.name


class ExperimentGrid(models.Model):
    """Backbones x losses on one version, each setting a TrainingRun, run one after another."""

    version = models.ForeignKey(
        DatasetVersion, on_delete=models.PROTECT, related_name="experiment_grids"
    )
    name = models.CharField(max_length=120)
    backbones = models.JSONField()  # ["resnet", "r2plus1d", ...]
    losses = models.JSONField()  # ["ce", "mse", "jsd", "emd"]
    preset = models.CharField(max_length=16, default="small")
    epochs = models.PositiveIntegerField()
    base_config = models.JSONField(default=dict)  # the TrainConfig fields shared by every run
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.PENDING)
    cancel_requested = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    # The report's folder in the runs storage once written (``grids/<id>``: report.md,
    # report.html, the SVGs); rows of older releases hold an absolute local path.
    report_dir = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"grid {self.pk} ({self.name})"

    @property
    def report_folder(self) -> str:
        """The report's folder relative to MERSV_RUNS_ROOT (never the absolute path)."""
        return runs_relative(self.report_dir)


class TrainingRun(models.Model):
    version = models.ForeignKey(
        DatasetVersion, on_delete=models.PROTECT, related_name="training_runs"
    )
    grid = models.ForeignKey(
        ExperimentGrid, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    name = models.CharField(max_length=120)
    config = models.JSONField()  # TrainConfig.to_dict()
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.PENDING)
    cancel_requested = models.BooleanField(default=False)
    progress = models.FloatField(default=0.0)  # 0..1
    progress_message = models.CharField(max_length=200, blank=True)
    n_folds = models.PositiveSmallIntegerField(default=0)
    folds_done = models.PositiveSmallIntegerField(default=0)
    # Per fold ("0", "1", ...): test metrics of the kept epoch, and how the fold ended
    # (best_epoch, epochs_run, stopped_early, model_hash).
    fold_metrics = models.JSONField(default=dict, blank=True)
    fold_summaries = models.JSONField(default=dict, blank=True)
    metrics_mean = models.JSONField(default=dict, blank=True)  # over folds
    metrics_std = models.JSONField(default=dict, blank=True)
    pooled_metrics = models.JSONField(default=dict, blank=True)  # all out-of-fold predictions
    # PC1/PC2 of each fold's test features in that fold's own feature space (Figure 7).
    pca = models.JSONField(default=dict, blank=True)
    duration_s = models.FloatField(default=0.0)  # training time summed over attempts
    error = models.TextField(blank=True)
    checkpoint_dir = models.CharField(max_length=500, blank=True)
    model_version = models.CharField(max_length=64, blank=True)
    # The weight m of the run's predictions as retirement pseudo-votes, fitted by cross-
    # validation on clips with full panels (annotation.aggregation.retirement.prior_weight_fit)
    # when a curator makes it the production run; None: never fitted. The fit's figures beside.
    retirement_prior_weight = models.FloatField(null=True, blank=True)
    retirement_prior_fit = models.JSONField(default=dict, blank=True)
    # The lease of the worker executing the run: every claim increments ``attempt``; writes
    # are conditioned on it, so a worker that lost its lease cannot overwrite a newer one.
    attempt = models.PositiveIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.name})"

    @property
    def run_folder(self) -> str:
        """The checkpoints' folder relative to MERSV_RUNS_ROOT (never the absolute path)."""
        return runs_relative(self.checkpoint_dir)

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES


class EpochRecord(models.Model):
    """One epoch of one outer fold (``modeling.ml.train.EpochLog``)."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="epochs")
    fold = models.PositiveSmallIntegerField()
    epoch = models.PositiveIntegerField()  # from 1
    train_loss = models.FloatField()
    val_loss = models.FloatField()
    val_hi = models.FloatField(null=True)
    val_emd = models.FloatField(null=True)
    best_epoch = models.PositiveIntegerField()
    seconds = models.FloatField()

    class Meta:
        ordering = ["run", "fold", "epoch"]
        constraints = [
            # A resumed or redelivered run re-sends epochs: they are upserted, never doubled.
            models.UniqueConstraint(fields=["run", "fold", "epoch"], name="one_record_per_epoch")
        ]

    def __str__(self) -> str:
        return f"{self.run_id}:{self.fold}:{self.epoch}"


class Prediction(models.Model):
    """A run's predicted grade distribution for one clip (out-of-fold, or a later clip)."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="predictions")
    clip = models.ForeignKey(Clip, on_delete=models.CASCADE, related_name="predictions")
    fold = models.PositiveSmallIntegerField(null=True, blank=True)  # None: not in the version
    p_a = models.FloatField()
    p_b = models.FloatField()
    p_c = models.FloatField()
    p_d = models.FloatField()
    p_e = models.FloatField()
    model_version = models.CharField(max_length=64)  # "run<id>-<sha256 of the model file(s)>"
    # How it was made: {"pixel_size_um": the clip's µm/px the morphometry measured it at,
    # "pixel_size_warning": why that lies far outside the model's training pixel sizes (only
    # when it does; modeling.ml.morphometry.pixel_size_outside)}.
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "clip"]
        constraints = [
            models.UniqueConstraint(fields=["run", "clip"], name="one_prediction_per_run")
        ]
        # The clip page's "latest predictions for this clip".
        indexes = [models.Index(fields=["clip", "run"], name="prediction_clip_idx")]

    def __str__(self) -> str:
        return f"{self.run_id}:{self.clip_id}"

    @property
    def p(self) -> list[float]:
        return [self.p_a, self.p_b, self.p_c, self.p_d, self.p_e]
