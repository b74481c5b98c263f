"""`make demo`: its seeding (demo users, clips with votes, a practice set and a trained model),
its two workers (an upload is ingested while a model trains), its port and its quiet pip."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from annotation.access.roles import ROLES, user_role
from annotation.models import Clip, ReferenceClip, Video
from datasets.models import DatasetVersion, TrainingSet
from datasets.services import export_dir_for
from modeling.models import JobStatus, Prediction, TrainingRun
from modeling.services import training_run_cancel, training_run_start
from tests.conftest import PASSWORD, wait_for


@pytest.mark.django_db
def test_seed_demo_seeds_everything_a_new_user_tries_and_reuses_it(
    settings, tmp_path: Path
) -> None:
    settings.VAR_DIR = tmp_path
    settings.EXPORT_ROOT = tmp_path / "exports"
    settings.TRAINING_RUNS_ROOT = tmp_path / "runs"
    args = ["seed_demo", "--clips", "9", "--votes-per-clip", "12"]
    call_command(*args, stdout=io.StringIO())
    users = get_user_model().objects
    assert all(user_role(users.get(username=f"demo-{role}")) == role for role in ROLES)
    assert Clip.objects.count() == 9 and all(c.votes_total == 12 for c in Clip.objects.all())
    version = DatasetVersion.objects.get(name="demo-v1")
    assert version.frozen and TrainingSet.objects.filter(version=version).exists()
    run = TrainingRun.objects.get(version=version)
    assert run.status == JobStatus.SUCCEEDED
    assert Prediction.objects.filter(run=run).count() == 9
    # The field guide has examples, all settled clips filed under their panel's commonest grade.
    references = list(ReferenceClip.objects.select_related("clip"))
    assert references and all(r.clip.retired_at is not None for r in references)
    for r in references:
        counts = {g: getattr(r.clip, f"votes_{g.lower()}") for g in "ABCDE"}
        assert counts[r.grade] == max(counts.values())
    out = io.StringIO()
    call_command(*args, stdout=out)  # a second run reuses what exists
    assert Clip.objects.count() == 9 and TrainingRun.objects.count() == 1
    assert ReferenceClip.objects.count() == len(references)
    assert "imported 0 clips (9 already there)" in out.getvalue()


# --- the demo's two workers -------------------------------------------------------------------


@contextlib.contextmanager
def _other_workers_paused() -> Iterator[None]:
    """Workers already on the test broker (the session's solo worker of tests/conftest.py)
    stop consuming while the demo's workers are tested, so that each task reaches the
    demo's worker of its queue; they consume again afterwards (Celery's remote control)."""
    from config.celery import app

    others = [name for reply in app.control.ping(timeout=1.0) for name in reply]
    for queue in ("celery", "training"):
        if others:
            app.control.cancel_consumer(queue, destination=others, reply=True, timeout=2.0)
    try:
        yield
    finally:
        for queue in ("celery", "training"):
            if others:
                app.control.add_consumer(queue, destination=others, reply=True, timeout=2.0)


@pytest.fixture
def demo_workers_running(django_db_setup, tmp_path: Path) -> Iterator[list]:
    """The demo's two workers (`run_demo`'s own command lines) on the test DB and broker."""
    from frontend.management.commands.run_demo import demo_workers_start, workers_ready
    from tests.conftest import ROOT, _test_database_url

    env = {
        **os.environ,
        "DATABASE_URL": _test_database_url(),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "MERSV_TORCH_THREADS": "1",  # the test machines share their cores
    }
    with _other_workers_paused():
        started = demo_workers_start(
            log_dir=tmp_path / "logs", env=env, cwd=ROOT, suffix=f"test{os.getpid()}"
        )
        try:
            # The training worker is in the idle class: on a busy machine it starts when the CPU
            # is free; the test waits for it through its run's first epoch.
            wait_for(
                lambda: workers_ready(started, queues=("celery",)),
                timeout=120,
                what="the demo's default-queue worker",
            )
            yield started
        finally:
            for _, proc, _ in started:
                proc.terminate()
            for _, proc, _ in started:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_an_upload_during_a_training_run_is_ingested_within_a_minute_by_the_demo_workers(
    demo_workers_running, synthetic_small: Path, make_user, settings
) -> None:
    from tests.annotation.ingest.test_ingestion import _upload
    from tests.modeling.conftest import TINY_CONFIG, build_version

    # The workers read media and exports under MERSV_VAR_DIR.
    settings.MEDIA_ROOT = Path(settings.VAR_DIR) / "media"
    training = next(proc for w, proc, _ in demo_workers_running if w.queue == "training")
    assert os.getpriority(os.PRIO_PROCESS, training.pid) == 19  # nice 19 (idle where allowed)
    version = build_version(synthetic_small, name="demo-busy")
    run = training_run_start(
        version=version,
        config={**TINY_CONFIG, "epochs": 500},  # minutes on one core; cancelled below
        created_by=None,
    )
    try:
        wait_for(
            lambda: TrainingRun.objects.get(pk=run.pk).epochs.exists(),
            timeout=300,
            what="the idle-priority worker to train the run's first epoch",
        )
        api = APIClient()
        api.force_authenticate(make_user("curator"))
        row = pd.read_csv(synthetic_small / "clips.csv").iloc[0]
        uploaded = time.monotonic()
        answer = _upload(api, synthetic_small / row.video, [{"x": row.x, "y": row.y}])
        assert answer.status_code == 201, answer.content
        video_id = answer.json()["id"]
        wait_for(
            lambda: Video.objects.get(pk=video_id).status in ("ready", "failed"),
            timeout=60,
            what="the default-queue worker to ingest the upload while the run trains",
        )
        assert Video.objects.get(pk=video_id).status == "ready"
        assert time.monotonic() - uploaded < 60
        # The training run went on all along: it is neither finished nor stopped.
        assert TrainingRun.objects.get(pk=run.pk).status == JobStatus.RUNNING
    finally:
        with contextlib.suppress(Exception):
            training_run_cancel(run=TrainingRun.objects.get(pk=run.pk), by=None)
        wait_for(
            lambda: TrainingRun.objects.get(pk=run.pk).status != JobStatus.RUNNING,
            timeout=60,
            what="the run to stop",
        )
        shutil.rmtree(TrainingRun.objects.get(pk=run.pk).checkpoint_dir, ignore_errors=True)
        shutil.rmtree(export_dir_for(version), ignore_errors=True)


@pytest.mark.django_db
def test_a_pending_video_page_says_it_is_queued_behind_a_running_training_run(
    synthetic_small: Path, make_user
) -> None:
    from tests.modeling.conftest import build_version

    version = build_version(synthetic_small, name="busy")
    run = training_run_start(version=version, config={}, created_by=None, enqueue=False)
    TrainingRun.objects.filter(pk=run.pk).update(status=JobStatus.RUNNING)
    video = Video.objects.first()
    client = Client()
    client.login(username=make_user("curator").username, password=PASSWORD)
    Video.objects.filter(pk=video.pk).update(status=Video.Status.PENDING)
    page = client.get(f"/videos/{video.pk}/").content.decode()
    assert f"Queued behind a training run: {run.name} (run {run.pk}) is training" in page
    TrainingRun.objects.filter(pk=run.pk).update(status=JobStatus.SUCCEEDED)
    assert "Waiting for a worker" in client.get(f"/videos/{video.pk}/").content.decode()
    Video.objects.filter(pk=video.pk).update(status=Video.Status.READY)
    assert 'id="waiting-for"' not in client.get(f"/videos/{video.pk}/").content.decode()


def test_make_demo_takes_a_port_and_sends_pip_to_a_log_file() -> None:
    from tests.conftest import ROOT

    dry = subprocess.run(
        ["make", "-n", "-B", "demo", "PORT=8123"], cwd=ROOT, capture_output=True, text=True
    )
    assert dry.returncode == 0, dry.stderr
    assert "run_demo --host 127.0.0.1 --port 8123" in dry.stdout
    commands = dry.stdout.replace("\\\n", " ").splitlines()  # continued lines joined
    pip_lines = [line for line in commands if "pip install" in line]
    assert pip_lines and all("> var/logs/pip.log 2>&1" in line for line in pip_lines)
