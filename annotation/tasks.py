"""Celery tasks of the annotation app: thin wrappers that claim a row and call a service."""

from __future__ import annotations

from celery import shared_task

from annotation import services


@shared_task(soft_time_limit=900, time_limit=960)
def ingest_video(video_id: int) -> None:
    if not services.video_claim(video_id=video_id):
        return
    services.video_ingest(video_id=video_id)
