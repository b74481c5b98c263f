"""Worker and database faults: late acknowledgement, time limits below the broker's
visibility timeout, clean-up on the soft time limit, 503 while the database is away."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection
from django.test import Client

from annotation.ingest import services as annotation_services
from annotation.models import Video
from config.celery import app


def _project_tasks() -> dict:
    app.loader.import_default_modules()
    return {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}


def test_tasks_are_acknowledged_late_and_requeued_when_their_worker_dies() -> None:
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1


def test_every_task_has_time_limits_below_the_brokers_visibility_timeout() -> None:
    tasks = _project_tasks()
    assert {"annotation.tasks.ingest_video", "datasets.tasks.build_dataset_version"} <= set(tasks)
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout")
    if not settings.CELERY_BROKER_URL.startswith("filesystem://"):
        assert visibility is not None, "a Redis broker needs a visibility timeout"
    for name, task in tasks.items():
        soft = task.soft_time_limit or app.conf.task_soft_time_limit
        hard = task.time_limit or app.conf.task_time_limit
        assert soft and hard and soft < hard, f"{name}: soft {soft} s, hard {hard} s"
        if visibility is not None:
            # Redelivered only after this: a task still running must never run twice.
            assert hard < visibility, f"{name}: limit {hard} s >= visibility {visibility} s"


@pytest.mark.django_db
def test_an_ingestion_past_its_soft_time_limit_fails_its_video_with_a_message(
    synthetic_small: Path, monkeypatch
) -> None:
    from annotation.tasks import ingest_video

    video = annotation_services.video_create(
        fileobj=io.BytesIO(next((synthetic_small / "videos").iterdir()).read_bytes()),
        original_name="v.mp4",
        patient_code="P1",
        pixel_size_um=0.5,
        targets=[annotation_services.Target(10, 10)],
        uploaded_by=None,
        enqueue=False,
    )

    def out_of_time(**_: object) -> None:
        raise SoftTimeLimitExceeded()  # what Celery raises in the task at the soft limit

    monkeypatch.setattr(annotation_services, "video_ingest", out_of_time)
    ingest_video(video.pk)
    video.refresh_from_db()
    assert video.status == "failed"
    assert "took longer than 900 s" in video.error


@pytest.mark.django_db
def test_a_dataset_build_past_its_soft_time_limit_fails_its_version(monkeypatch) -> None:
    from datasets import services as dataset_services
    from datasets.models import DatasetVersion
    from datasets.tasks import build_dataset_version

    version = DatasetVersion.objects.create(name="slow-build", filters={})

    def out_of_time(**_: object) -> None:
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(dataset_services, "dataset_version_build", out_of_time)
    build_dataset_version(version.pk)
    version.refresh_from_db()
    assert version.status == "failed"
    assert "took longer than 3000 s" in version.error


@pytest.mark.django_db(transaction=True)
def test_requests_answer_503_with_a_message_while_the_database_is_unreachable(
    make_user,
) -> None:
    client = Client(raise_request_exception=False)
    client.force_login(make_user("curator"))
    saved_port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = "1"  # nothing listens there: every connect fails
    try:
        answer = client.get("/api/clips/")
    finally:
        connection.close()
        connection.settings_dict["PORT"] = saved_port
    assert answer.status_code == 503
    assert "database is unavailable" in answer.content.decode()
    assert answer["Retry-After"] == "5"
    assert client.get("/api/clips/").status_code == 200  # back as soon as it is
    assert Video.objects.count() == 0
