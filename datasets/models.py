"""Frozen dataset versions.

A DatasetVersion is built once (a Celery task) and is then immutable: its rows, its frozen
copies of each clip's distribution and kinematics (DatasetClip) and of the votes
(DatasetRating), and its export, whose content hash identifies it. Later votes never touch it.
Immutability is enforced here (save/delete/queryset updates and bulk_create refuse) and in
the database: triggers on PostgreSQL (migration 0002) and on SQLite (migration 0004) refuse
UPDATE and DELETE of a frozen version's rows and INSERT into it, from any code path. Deleting
the account that built a frozen version is refused too (created_by is PROTECT): it would
rewrite the frozen row. Deactivate the account instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import models

from annotation.grades import GRADES
from annotation.models import Clip


class FrozenError(Exception):
    """Raised on any attempt to change a frozen dataset version."""


class _FrozenQuerySet(models.QuerySet):
    """Bulk updates, deletes and inserts refuse rows of frozen versions."""

    version_field = "version__frozen"

    def _frozen_rows(self) -> bool:
        return self.filter(**{self.version_field: True}).exists()

    def update(self, **kwargs: Any) -> int:
        if self._frozen_rows():
            raise FrozenError("a frozen dataset version cannot be changed")
        return super().update(**kwargs)

    def delete(self) -> tuple[int, dict[str, int]]:
        if self._frozen_rows():
            raise FrozenError("a frozen dataset version cannot be deleted")
        return super().delete()

    def bulk_create(self, objs: Iterable[Any], *args: Any, **kwargs: Any) -> list[Any]:
        objs = list(objs)
        version_ids = {obj.version_id for obj in objs}
        if DatasetVersion.objects.filter(pk__in=version_ids, frozen=True).exists():
            raise FrozenError("rows cannot be added to a frozen dataset version")
        return super().bulk_create(objs, *args, **kwargs)


class _VersionQuerySet(_FrozenQuerySet):
    version_field = "frozen"

    def bulk_create(self, objs: Iterable[Any], *args: Any, **kwargs: Any) -> list[Any]:
        # New versions: nothing frozen is changed (a row's own `frozen` says what it will be).
        return models.QuerySet.bulk_create(self, objs, *args, **kwargs)


class DatasetVersion(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        BUILDING = "building", "Building"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    name = models.SlugField(max_length=64, unique=True)
    description = models.TextField(blank=True)
    licence = models.CharField(max_length=200, default="Internal research use only")
    # Selection filters: min_votes, retired_only, created_from, created_to,
    # exclude_cannot_judge_majority.
    filters = models.JSONField(default=dict)
    n_folds = models.PositiveSmallIntegerField(default=3)
    seed = models.IntegerField(default=0)
    inner_val_fraction = models.FloatField(default=0.2)
    # Secret salt of the per-version pseudonyms of patients, raters, videos and clips.
    pseudonym_salt = models.CharField(max_length=64, editable=False)
    # The export names clips by per-version pseudonyms (HMAC with the salt), so two versions'
    # exports cannot be joined clip by clip. Versions built before the option existed (and
    # versions asked for so) keep the platform's clip ids: their content hash stays reproducible.
    # The frozen rows always hold the platform's ids (diffs and trainees read those).
    pseudonymous_clip_ids = models.BooleanField(default=True, editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    frozen = models.BooleanField(default=False, editable=False)
    progress = models.FloatField(default=0.0)
    progress_message = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    content_hash = models.CharField(max_length=64, blank=True)
    # Object storage only (datasets/export_objects.py): the stored download archive's SHA-256
    # and size, frozen with the version; a download checks the object against them.
    archive_sha256 = models.CharField(max_length=64, blank=True, editable=False)
    archive_bytes = models.BigIntegerField(default=0, editable=False)
    n_clips = models.PositiveIntegerField(default=0)
    n_ratings = models.PositiveIntegerField(default=0)
    n_patients = models.PositiveIntegerField(default=0)
    summary = models.JSONField(default=dict, blank=True)  # counts, figure3, agreement, balance
    # PROTECT: SET_NULL would rewrite a frozen row when its builder's account is deleted (the
    # triggers refuse it); the admin names the versions instead. Deactivate the account.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = _VersionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk and DatasetVersion.objects.filter(pk=self.pk, frozen=True).exists():
            raise FrozenError(f"dataset version {self.name!r} is frozen and cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        if DatasetVersion.objects.filter(pk=self.pk, frozen=True).exists():
            raise FrozenError(f"dataset version {self.name!r} is frozen and cannot be deleted")
        return super().delete(*args, **kwargs)


class _FrozenChild(models.Model):
    objects = _FrozenQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        # version_id: every concrete child has a `version` foreign key; the abstract base has none.
        if DatasetVersion.objects.filter(pk=self.version_id, frozen=True).exists():  # type: ignore[attr-defined]
            raise FrozenError("a frozen dataset version cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        # version_id: every concrete child has a `version` foreign key; the abstract base has none.
        if DatasetVersion.objects.filter(pk=self.version_id, frozen=True).exists():  # type: ignore[attr-defined]
            raise FrozenError("a frozen dataset version cannot be changed")
        return super().delete(*args, **kwargs)


class DatasetClip(_FrozenChild):
    """One clip of a version, with a frozen copy of its distribution, statistics, kinematics."""

    version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="clips")
    clip = models.ForeignKey(Clip, on_delete=models.PROTECT, related_name="dataset_clips")
    clip_external_id = models.CharField(max_length=64)
    patient_pseudonym = models.CharField(max_length=32)
    video_pseudonym = models.CharField(max_length=32)
    video_suffix = models.CharField(max_length=8, default=".mp4")
    fold = models.PositiveSmallIntegerField()
    counts = models.JSONField()  # [n_A, ..., n_E]
    n = models.PositiveIntegerField()
    p = models.JSONField()  # [p_A, ..., p_E], sums to 1
    mean = models.FloatField()
    std = models.FloatField()
    mode = models.CharField(max_length=1, choices=[(g, g) for g in GRADES])
    entropy = models.FloatField()
    kinematics = models.JSONField()
    fps = models.FloatField()
    start_x = models.FloatField()
    start_y = models.FloatField()
    pixel_size_um = models.FloatField()

    class Meta:
        ordering = ["clip_external_id"]
        constraints = [
            models.UniqueConstraint(fields=["version", "clip"], name="one_clip_per_version")
        ]

    def __str__(self) -> str:
        return f"{self.version_id}:{self.clip_external_id}"


class DatasetInnerSplit(_FrozenChild):
    version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="inner")
    outer_fold = models.PositiveSmallIntegerField()
    clip_external_id = models.CharField(max_length=64)
    subset = models.CharField(max_length=5, choices=[("train", "train"), ("val", "val")])

    class Meta:
        ordering = ["outer_fold", "clip_external_id"]

    def __str__(self) -> str:
        return f"{self.outer_fold}:{self.clip_external_id}:{self.subset}"


class DatasetRating(_FrozenChild):
    """A frozen copy of one expert vote, with the rater's per-version pseudonym."""

    version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="ratings")
    clip_external_id = models.CharField(max_length=64)
    rater_pseudonym = models.CharField(max_length=32)
    grade = models.CharField(max_length=1, choices=[(g, g) for g in GRADES])

    class Meta:
        ordering = ["clip_external_id", "rater_pseudonym"]

    def __str__(self) -> str:
        return f"{self.clip_external_id}:{self.rater_pseudonym}:{self.grade}"


class TrainingSet(models.Model):
    """Clips of a frozen dataset version that a curator chose for trainees to practise on.

    The expert distributions a trainee is scored against are the frozen copies on DatasetClip,
    so later votes never move a trainee's past scores (`datasets.practice`). In the code and
    the pages it is a practice set; the trainee models keep their first names (TrainingSet,
    TraineeRating) and tables.
    """

    name = models.CharField(max_length=120, unique=True)
    version = models.ForeignKey(
        DatasetVersion, on_delete=models.PROTECT, related_name="training_sets"
    )
    min_votes = models.PositiveIntegerField(default=1, help_text="Experts a clip needs.")
    clips = models.ManyToManyField(DatasetClip, related_name="training_sets")
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name


class TraineeRating(models.Model):
    """A trainee's grade of a practice clip. Its own table on purpose: trainee grades never
    reach Clip.votes_*, agreement figures, retirement or exports, which read Rating only."""

    trainee = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="trainee_ratings"
    )
    training_set = models.ForeignKey(TrainingSet, on_delete=models.PROTECT, related_name="ratings")
    dataset_clip = models.ForeignKey(
        DatasetClip, on_delete=models.PROTECT, related_name="trainee_ratings"
    )
    grade = models.CharField(max_length=1, choices=[(g, g) for g in GRADES])
    time_spent_ms = models.PositiveIntegerField(default=0)
    # The trainee's sitting, from 1: a new one starts after GRADING_SESSION_IDLE_HOURS idle.
    session = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["trainee", "training_set", "dataset_clip"],
                name="one_trainee_rating_per_clip",
            ),
            models.CheckConstraint(
                condition=models.Q(grade__in=list(GRADES)), name="trainee_grade_a_to_e"
            ),
        ]
        # A trainee's progress reads their ratings in order.
        indexes = [models.Index(fields=["trainee", "created_at"], name="trainee_rating_idx")]

    def __str__(self) -> str:
        return f"{self.trainee_id} {self.dataset_clip_id} {self.grade}"
