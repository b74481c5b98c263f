"""Celery tasks of the annotation app: thin wrappers that claim a row and call a service."""

from __future__ import annotations

import datetime as dt

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from annotation.aggregation.rater_model_service import rater_model_refit
from annotation.ingest import services
from annotation.ingest.upload_prune import uploads_prune

# Decoding alone stops at MERSV_DECODE_WALL_S (180 s by default); the rest is tracking and
# encoding. The hard limit leaves a minute to record the failure.
INGEST_SOFT_LIMIT_S = 900


@shared_task(soft_time_limit=INGEST_SOFT_LIMIT_S, time_limit=INGEST_SOFT_LIMIT_S + 60)
def ingest_video(video_id: int) -> None:
    if not services.video_claim(video_id=video_id):
        return
    try:
        services.video_ingest(video_id=video_id)
    except SoftTimeLimitExceeded:
        services.video_fail(
            video_id=video_id,
            error=f"ingestion took longer than {INGEST_SOFT_LIMIT_S} s and was stopped; "
            "upload a shorter or smaller video",
        )


# A fit of the paper's scale takes about a second; the limit only stops a runaway.
@shared_task(soft_time_limit=600, time_limit=660)
def refit_rater_model() -> None:
    """Fit the rater model to the current ratings (queued by a curator read that found the
    newest fit stale: annotation.aggregation.services)."""
    rater_model_refit()


# Frame 0 only: decoding it takes well under a second, even for a large frame.
FIRST_FRAME_SOFT_LIMIT_S = 300


@shared_task(soft_time_limit=FIRST_FRAME_SOFT_LIMIT_S, time_limit=FIRST_FRAME_SOFT_LIMIT_S + 60)
def make_first_frame(video_id: int) -> None:
    """The first-frame preview and candidate heads of an uploaded video."""
    services.video_first_frame_make(video_id=video_id)


# One read of the uploaded object (up to MERSV_DIRECT_UPLOAD_MAX_MB) and its SHA-256.
@shared_task(soft_time_limit=1800, time_limit=1860)
def verify_direct_upload(upload_id: int) -> None:
    """Check a video sent straight to the bucket, then create its Video (the services'
    direct_upload_verify)."""
    services.direct_upload_verify(upload_id=upload_id)


@shared_task(soft_time_limit=600, time_limit=660)
def prune_direct_uploads() -> None:
    """Abort the multipart uploads abandoned for MERSV_DIRECT_UPLOAD_TTL_HOURS (hourly, from the
    beat schedule in config/settings.py; annotation/ingest/upload_prune.py)."""
    uploads_prune(older_than=dt.timedelta(hours=settings.DIRECT_UPLOAD_TTL_HOURS))
