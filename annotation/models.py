"""Patients (pseudonymous), videos, clips, ratings.

A Video is one full-field microscope recording; ingestion tracks each tagged target in it and
cuts one Clip per target. Experts rate Clips A..E; a Clip's vote counts (votes_a..votes_e) are
updated in the same transaction as the Rating they count, so the grade distribution read from
them is never stale (`annotation.grading.answers.rating_submit` holds the Clip row lock while
doing so).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q

from annotation.grades import GRADES
from annotation.ingest.kinematics import KINEMATICS_KEYS, kinematics_attribute

GRADE_CHOICES = [(g, g) for g in GRADES]


class Patient(models.Model):
    """A patient, known only by a pseudonymous code: no name, birth date or record number."""

    code = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.code


class Video(models.Model):
    class Status(models.TextChoices):
        # Uploaded without targets: the worker makes the first-frame preview and candidates,
        # the curator tags targets on the video's page and then starts ingestion.
        NEEDS_TARGETS = "needs_targets", "Needs targets"
        PENDING = "pending", "Pending"
        PROCESSING = "processing", "Processing"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="videos")
    # Stored under a generated name; the user's file name is kept apart, as text only.
    file = models.FileField(upload_to="videos/", max_length=255)
    original_name = models.CharField(max_length=255, blank=True)
    sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    fps = models.FloatField(null=True, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    frame_count = models.PositiveIntegerField(null=True, blank=True)
    pixel_size_um = models.FloatField(help_text="Size of one pixel in micrometres.")
    # Targets tagged in frame 0: [{"x": float, "y": float, "external_id": str}, ...]
    targets = models.JSONField(default=list)
    preview = models.FileField(upload_to="previews/", max_length=255, blank=True)
    # Frame 0 as the worker decoded it (annotation/ingest/preview.py): full resolution and a
    # scaled-down overview, PNG, under previews/ (curators only: a source video's pixels).
    first_frame = models.FileField(upload_to="previews/", max_length=255, blank=True)
    first_frame_overview = models.FileField(upload_to="previews/", max_length=255, blank=True)
    # Candidate heads in frame 0, best first: [{"x": float, "y": float, "score": float}, ...]
    candidates = models.JSONField(default=list, blank=True)
    first_frame_made_at = models.DateTimeField(null=True, blank=True)
    first_frame_error = models.TextField(blank=True)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"video {self.pk} ({self.original_name or self.file.name})"


class VideoAttempt(models.Model):
    """One ingestion of a video: the targets it was given, who asked, when, how it ended.

    A failed video can get new or moved targets and be ingested again without a new upload;
    each try is a row here, kept (never edited once finished), so the video's history shows
    what failed and why. ``annotation.ingest.services.video_ingest_start`` creates it while
    holding the video's row lock, so two retries cannot both start.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        READY = "ready", "Ready"
        # Some targets gave clips, others were lost (see target_results); the video is ready
        # with the clips it has, and the lost targets can be moved and retried.
        PARTLY_FAILED = "partly_failed", "Partly failed"
        FAILED = "failed", "Failed"

    video = models.ForeignKey(Video, on_delete=models.PROTECT, related_name="attempts")
    number = models.PositiveIntegerField()
    # The targets this attempt tracked (those without a clip from an earlier attempt).
    targets = models.JSONField(default=list)
    # Per target of ``targets``, once finished: {"index": its index in the video's targets,
    # "result": "clip" | "short_clip" | "lost", "clip_id", "n_frames", "loss" (the tracker's
    # code), "lost_at" (frame), "error" (the sentence a curator reads)}.
    target_results = models.JSONField(default=list, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True)
    clip_ids = models.JSONField(default=list, blank=True)
    requested_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["video", "number"]
        constraints = [
            models.UniqueConstraint(fields=["video", "number"], name="one_attempt_number_per_video")
        ]

    def __str__(self) -> str:
        return f"video {self.video_id} attempt {self.number} ({self.status})"


class DirectUpload(models.Model):
    """A video sent by the browser straight to the bucket (presigned multipart upload).

    ``open``: the parts are being sent; ``verifying``: the upload is complete and a worker
    checks its size, content signature and SHA-256; ``ready``: the video exists (``video``);
    ``failed``: refused with ``error`` (the object is deleted); ``expired``: abandoned while
    open, its multipart upload aborted (annotation/ingest/upload_prune.py). The only moves are
    open -> verifying -> ready | failed and open -> expired; annotation/ingest/services.py
    (direct_upload_*) and the prune write every change under the row's lock, each from the
    state it found, and the constraints below keep the ends consistent.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Uploading"
        VERIFYING = "verifying", "Verifying"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired"

    token = models.UUIDField(unique=True, editable=False)
    key = models.CharField(max_length=255, editable=False)  # the media storage's name
    upload_id = models.CharField(max_length=1024, editable=False)
    original_name = models.CharField(max_length=255)
    patient_code = models.CharField(max_length=64)
    pixel_size_um = models.FloatField()
    size_bytes = models.BigIntegerField()
    part_bytes = models.BigIntegerField()
    sha256 = models.CharField(max_length=64, blank=True)  # declared by the client (optional)
    # The parts as the client listed them ([{"part_number", "etag"}]); the worker joins them.
    parts = models.JSONField(default=list, blank=True, editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    error = models.TextField(blank=True)
    video = models.OneToOneField(
        Video, null=True, blank=True, on_delete=models.PROTECT, related_name="direct_upload"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["open", "verifying", "ready", "failed", "expired"]),
                name="directupload_status_known",
            ),
            # A finished upload says when; a ready one names its video, and only a ready one.
            models.CheckConstraint(
                condition=models.Q(status__in=["open", "verifying"])
                | models.Q(finished_at__isnull=False),
                name="directupload_finished_has_time",
            ),
            models.CheckConstraint(
                condition=models.Q(status="ready", video__isnull=False)
                | (~models.Q(status="ready") & models.Q(video__isnull=True)),
                name="directupload_ready_iff_video",
            ),
        ]
        # The prune's query: open uploads, oldest first.
        indexes = [models.Index(fields=["status", "created_at"], name="directupload_status_age")]

    def __str__(self) -> str:
        return f"upload {self.token} ({self.status})"


class Clip(models.Model):
    """One tracked target: a crop clip of n_frames frames, its track and kinematics."""

    video = models.ForeignKey(Video, on_delete=models.PROTECT, related_name="clips")
    # The id every table and export names the clip by (clips.csv's clip_id).
    external_id = models.CharField(max_length=64, unique=True)
    target_index = models.PositiveSmallIntegerField(default=0)
    start_x = models.FloatField()
    start_y = models.FloatField()
    track = models.JSONField(help_text="Target centre per frame: [[x, y], ...] in video px.")
    match_scores = models.JSONField(default=list)
    n_frames = models.PositiveSmallIntegerField()
    crop_size = models.PositiveSmallIntegerField()
    frames_file = models.FileField(upload_to="clips/", max_length=255)
    crop_file = models.FileField(upload_to="clips/", max_length=255)
    filmstrip_file = models.FileField(upload_to="clips/", max_length=255)
    # WHO kinematics (annotation/ingest/kinematics.py): velocities in um/s, ALH in um, BCF in Hz.
    # One field per KINEMATICS_KEYS, in its order (a test checks it); `str` is straightness.
    vcl = models.FloatField()
    vsl = models.FloatField()
    vap = models.FloatField()
    lin = models.FloatField()
    straightness = models.FloatField(db_column="str")
    wob = models.FloatField()
    alh = models.FloatField()
    bcf = models.FloatField()
    speed = models.FloatField(help_text="The speed the model head takes (= VCL, um/s).")
    # Expert vote counts, kept equal to the latest expert Rating rows in the same transaction.
    votes_a = models.PositiveIntegerField(default=0)
    votes_b = models.PositiveIntegerField(default=0)
    votes_c = models.PositiveIntegerField(default=0)
    votes_d = models.PositiveIntegerField(default=0)
    votes_e = models.PositiveIntegerField(default=0)
    votes_total = models.PositiveIntegerField(default=0, db_index=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["external_id"]
        indexes = [
            # The expert queue (`grading_sql.next_candidate`): open clips with the fewest votes
            # first, read in order so that the first acceptable clip ends the scan. Partial, so
            # the planner walks it instead of sorting every open clip (5.5 -> 0.04 ms at 600).
            models.Index(
                fields=["votes_total", "id"],
                condition=models.Q(retired_at__isnull=True),
                name="clip_open_queue_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.external_id

    @property
    def vote_counts(self) -> list[int]:
        return [self.votes_a, self.votes_b, self.votes_c, self.votes_d, self.votes_e]

    def kinematics_dict(self) -> dict[str, float]:
        """The clip's kinematics keyed by ``KINEMATICS_KEYS`` (``str``, not ``straightness``)."""
        return {key: getattr(self, kinematics_attribute(key)) for key in KINEMATICS_KEYS}

    @staticmethod
    def kinematics_fields(values: Mapping[str, float]) -> dict[str, float]:
        """Keyword arguments of the kinematics fields for ``values`` keyed by
        ``KINEMATICS_KEYS`` (e.g. ``Kinematics.as_dict()``); every measure is needed."""
        return {kinematics_attribute(key): float(values[key]) for key in KINEMATICS_KEYS}


class Rating(models.Model):
    """An expert's current grade for a clip. Earlier grades live in RatingChange."""

    clip = models.ForeignKey(Clip, on_delete=models.PROTECT, related_name="ratings")
    rater = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="ratings"
    )
    grade = models.CharField(max_length=1, choices=GRADE_CHOICES)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    time_spent_ms = models.PositiveIntegerField(default=0)
    # Grading telemetry: plays, frames_stepped, speeds_used, full_field_opened, zoom_used.
    telemetry = models.JSONField(default=dict, blank=True)
    # When the expert first saw the panel's votes on this clip (after their vote, or on the
    # compare page). From then on the counted grade is fixed: a change is kept apart.
    panel_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["clip", "rater"], name="one_rating_per_rater_clip"),
            models.CheckConstraint(condition=Q(grade__in=list(GRADES)), name="rating_grade_a_to_e"),
        ]
        indexes = [models.Index(fields=["rater", "created_at"], name="rating_rater_idx")]

    def __str__(self) -> str:
        return f"{self.rater_id} {self.clip_id} {self.grade}"


class RatingChange(models.Model):
    """Every grade a rating ever had, with its time: the first grade and each change."""

    rating = models.ForeignKey(Rating, on_delete=models.PROTECT, related_name="changes")
    grade = models.CharField(max_length=1, choices=GRADE_CHOICES)
    previous_grade = models.CharField(max_length=1, choices=GRADE_CHOICES, blank=True)
    changed_at = models.DateTimeField(auto_now_add=True)
    # A change made after the expert saw the panel: recorded for curators, never counted (the
    # rating keeps its grade, so distributions, agreement, retirement and exports ignore it).
    after_panel = models.BooleanField(default=False)

    class Meta:
        ordering = ["changed_at", "id"]

    def __str__(self) -> str:
        return f"{self.rating_id}: {self.previous_grade or '-'} -> {self.grade}"


class CannotJudge(models.Model):
    """An expert's "cannot judge" answer: recorded apart, never counted as a grade."""

    NOTE_MAX_LENGTH = 200

    class Reason(models.TextChoices):
        OUT_OF_FOCUS = "out_of_focus", "Out of focus"
        WRONG_TARGET = "wrong_target", "Wrong target tracked"
        OVERLAPPING = "overlapping", "Several cells overlapping"
        OTHER = "other", "Other"

    clip = models.ForeignKey(Clip, on_delete=models.PROTECT, related_name="cannot_judge")
    rater = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    reason = models.CharField(max_length=32, choices=Reason.choices)
    # The expert's own words, for the reason "other" only (required there): plain text, shown
    # to curators escaped (`annotation.grading.checks.cannot_judge_note_check`).
    note = models.CharField(max_length=NOTE_MAX_LENGTH, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    time_spent_ms = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["clip", "rater"], name="one_cannot_judge_per_clip"),
            models.CheckConstraint(
                condition=Q(reason="other") | Q(note=""), name="cannot_judge_note_only_for_other"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.rater_id} cannot judge {self.clip_id}: {self.reason}"


class ReferenceClip(models.Model):
    """A settled clip a curator chose as an example of a grade: the experts' field guide.

    Only retired clips are chosen (`annotation.grading.field_guide.reference_clip_add`) and only
    those still retired are shown, so the guide never shows a clip of the grading pool; experts see
    the curator's grade and note, never the clip's votes.
    """

    NOTE_MAX_LENGTH = 200

    clip = models.OneToOneField(Clip, on_delete=models.CASCADE, related_name="reference")
    grade = models.CharField(max_length=1, choices=GRADE_CHOICES)
    chosen_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The curator's words for experts (what makes it this grade); shown escaped.
    note = models.CharField(max_length=NOTE_MAX_LENGTH, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["grade", "created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(grade__in=list(GRADES)), name="reference_clip_grade_a_to_e"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.clip_id} as an example of {self.grade}"


class ClipAssignment(models.Model):
    """A clip held for one expert while they grade it, so that experts grading at the same time
    do not all pile onto the clip with the fewest votes (`annotation.grading.answers`).

    An assignment is live until `expires_at`; it is deleted when the expert answers the clip.
    Rows are created and counted only under the Clip row lock.
    """

    clip = models.ForeignKey(Clip, on_delete=models.CASCADE, related_name="assignments")
    expert = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="clip_assignments"
    )
    assigned_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["clip", "expert"], name="one_assignment_per_clip")
        ]
        indexes = [
            # Live assignments of a clip (the queue's capacity check).
            models.Index(fields=["clip", "expires_at"], name="assignment_live_idx"),
            # An expert's current assignment.
            models.Index(fields=["expert", "expires_at"], name="assignment_expert_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.clip_id} -> {self.expert_id} until {self.expires_at:%H:%M:%S}"


class RepeatRating(models.Model):
    """An expert's blind second grade of a clip they graded before (a hidden repeat).

    Kept apart from Rating on purpose: a repeat measures the expert's consistency with
    themself and never counts in a grade distribution (`annotation.grading.repeats`).
    """

    clip = models.ForeignKey(Clip, on_delete=models.PROTECT, related_name="repeats")
    rater = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="repeat_ratings"
    )
    grade = models.CharField(max_length=1, choices=GRADE_CHOICES)
    # The expert's Rating grade for the clip when they answered the repeat.
    original_grade = models.CharField(max_length=1, choices=GRADE_CHOICES)
    created_at = models.DateTimeField(auto_now_add=True)
    time_spent_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["clip", "rater"], name="one_repeat_per_rater_clip"),
        ]

    def __str__(self) -> str:
        return f"{self.rater_id} repeat {self.clip_id}: {self.original_grade} -> {self.grade}"


class RaterModelSnapshot(models.Model):
    """A rater model fit (`annotation.aggregation.rater_model`) cached for the pages and the API.

    `data_key` names the ratings it was fitted on (count, newest id, newest update); a read
    that finds no snapshot with the current key fits again
    (`annotation.aggregation.rater_model_service`).
    Arrays are stored as JSON lists, aligned with `clip_pks` and `rater_pks`.
    """

    data_key = models.CharField(max_length=128, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    fit_seconds = models.FloatField()
    converged = models.BooleanField()
    n_ratings = models.PositiveIntegerField()
    clip_pks = models.JSONField(help_text="Clips with votes, the rows of `corrected`.")
    corrected = models.JSONField(help_text="Severity-corrected distribution per clip, A..E.")
    z_mean = models.JSONField(help_text="Posterior mean latent quality per clip.")
    rater_pks = models.JSONField(help_text="Raters, the items of `severity` and `noise`.")
    severity = models.JSONField(help_text="Latent severity per rater (positive = harsher).")
    noise = models.JSONField(help_text="Latent perception noise (sd) per rater.")
    thresholds = models.JSONField(help_text="E|D, D|C, C|B, B|A on the latent axis.")

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"rater model of {self.n_ratings} ratings ({self.created_at:%Y-%m-%d %H:%M})"


class RaterModelRefit(models.Model):
    """The rater model's one "refit queued" marker: a single row (id 1).

    A curator read that finds the newest snapshot stale sets `queued_at` with a conditional
    UPDATE (only while it is empty), and only the read whose UPDATE changed the row sends the
    refit task; the task empties it when it is done. So any number of concurrent reads after
    a vote queue one fit, and one fit runs at a time
    (`annotation.aggregation.services.rater_model_refit_request`).
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    queued_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="rater_model_refit_one_row")]

    def __str__(self) -> str:
        return f"refit queued at {self.queued_at}" if self.queued_at else "no refit queued"


class RetirementPrior(models.Model):
    """The production run's predicted grade distribution of a clip, used by the retirement rule
    as pseudo-votes (`annotation.aggregation.retirement`). Written only when a curator chooses
    the production run (`modeling.retirement_prior.retirement_run_choose`), from predictions of
    a model that did not train on the clip. Never shown to experts: it decides only when to
    stop asking about a clip, never what an expert sees."""

    clip = models.OneToOneField(
        Clip, primary_key=True, on_delete=models.CASCADE, related_name="retirement_prior"
    )
    run_id = models.PositiveIntegerField()  # a plain id: annotation imports nothing of modeling
    p_a = models.FloatField()
    p_b = models.FloatField()
    p_c = models.FloatField()
    p_d = models.FloatField()
    p_e = models.FloatField()

    def __str__(self) -> str:
        return f"prior of clip {self.clip_id} from run {self.run_id}"

    @property
    def p(self) -> list[float]:
        return [self.p_a, self.p_b, self.p_c, self.p_d, self.p_e]


class RetirementPolicy(models.Model):
    """The retirement rule in force: one row (id 1). The production run and its fitted prior
    weight m, and the rule's settings as last applied, so a change of either is audited once
    (`annotation.aggregation.retirement_service`)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    run_id = models.PositiveIntegerField(null=True, blank=True)  # None: no model prior
    run_name = models.CharField(max_length=120, blank=True)
    prior_weight = models.FloatField(default=0.0)  # m, pseudo-votes of the prediction
    prior_fit = models.JSONField(default=dict, blank=True)  # PriorWeightFit.to_dict() of m
    rule = models.JSONField(default=dict, blank=True)  # RetirementRule.to_dict() last applied
    changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="retirement_policy_one_row")]

    def __str__(self) -> str:
        return f"retirement: run {self.run_id or '-'}, m={self.prior_weight:g}"


class AppendOnlyError(Exception):
    """An audit row was about to be changed or deleted: the log is append-only."""


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs: object) -> int:
        raise AppendOnlyError("audit events cannot be changed")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("audit events cannot be deleted")


class AuditEvent(models.Model):
    """Who did what to which object, when, from where (`annotation.access.audit.audit_record`).

    Append-only: save() refuses updates, delete() refuses, and on PostgreSQL a trigger refuses
    UPDATE and DELETE from any code path (migration 0005). Never holds passwords or tokens.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.DO_NOTHING,
        db_constraint=False, related_name="+",
    )  # fmt: skip
    # The name at the time of the event: it survives renames and deleted accounts.
    username = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=32, db_index=True)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "created_at"], name="audit_user_idx")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.username or 'anonymous'} {self.action}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError("audit events cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("audit events cannot be deleted")


class LoginThrottle(models.Model):
    """Consecutive failed logins of one key: "pair:<address>|<name>" (one address against one
    account), "user:<name>" (the account, from anywhere) or "ip:<address>" (one address, any
    account). Beyond a key's limit each further attempt waits a delay that doubles
    (`annotation.access.login_throttle`); the count starts over after a quiet window.

    Kept in the database, not in process memory: gunicorn runs several workers, and each
    must see every other's failures. Rows are read under select_for_update."""

    key = models.CharField(max_length=200, unique=True)
    last_failure_at = models.DateTimeField()
    failures = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.key}: {self.failures}, last {self.last_failure_at:%H:%M:%S}"


class KnownLoginAddress(models.Model):
    """An address an account logged in from with its password: failures against the account
    from elsewhere do not slow its logins from here (`annotation.access.login_throttle`)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="known_login_addresses"
    )
    address = models.GenericIPAddressField()
    last_login_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "address"], name="known_login_address_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user_id} from {self.address}"


class ApiTokenDevice(models.Model):
    """The name and last use of one API token (django-rest-knox's AuthToken holds only the
    hash, owner, creation and expiry). One per device: a new token under a name the owner
    already uses replaces the old one (`annotation.access.tokens`). Deleted with its token."""

    token = models.OneToOneField("knox.AuthToken", on_delete=models.CASCADE, related_name="device")
    name = models.CharField(max_length=64)
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name
