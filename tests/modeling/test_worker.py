"""Training through the real Celery worker (the `training` queue): a run started on the page
trains and predicts every clip; a cancel request stops a run and keeps its checkpoints."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.test import Client
from rest_framework.test import APIClient

from annotation.access.accounts import user_create
from modeling.models import EpochRecord, ExperimentGrid, Prediction, TrainingRun
from tests.conftest import PASSWORD, wait_for
from tests.modeling.conftest import TINY_CONFIG, build_version

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def remove_run_folders() -> Iterator[None]:
    """The worker writes under MERSV_VAR_DIR/runs: leave nothing behind."""
    yield
    for folder in TrainingRun.objects.values_list("checkpoint_dir", flat=True):
        shutil.rmtree(folder, ignore_errors=True)


def _finished(run_id: int) -> bool:
    return TrainingRun.objects.get(pk=run_id).status not in ("pending", "running")


def test_a_run_started_on_the_page_trains_in_the_worker_and_predicts_every_clip(
    celery_worker_process, synthetic_small: Path, remove_run_folders: None
) -> None:
    # The worker reads exports under MERSV_VAR_DIR: build the version there.
    version = build_version(synthetic_small, name="train-web")
    user_create(username="researcher", role="curator", password=PASSWORD)
    client = Client()
    client.login(username="researcher", password=PASSWORD)
    form = {
        "dataset": version.name, "name": "tiny", "backbone": "resnet", "loss": "emd",
        "preset": "small", "epochs": 2, "optimizer": "adam", "lr": "0.001", "batch_size": 4,
        "fair_sampling": "on", "augment": "on", "early_stopping_patience": 0, "seed": 0,
    }  # fmt: skip
    response = client.post("/training/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    run = TrainingRun.objects.get()
    assert response["Location"] == f"/training/{run.pk}/"
    wait_for(lambda: _finished(run.pk), timeout=240, what="the worker to train the run")
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.progress == 1.0 and run.folds_done == 3

    predictions = list(Prediction.objects.filter(run=run))
    assert sorted(p.clip_id for p in predictions) == sorted(
        version.clips.values_list("clip_id", flat=True)
    )
    assert np.allclose([sum(p.p) for p in predictions], 1.0)
    assert {p.model_version.split("-")[0] for p in predictions} == {f"run{run.pk}"}

    page = client.get(f"/training/{run.pk}/")
    assert page.status_code == 200
    for marker in ('id="learning-curves"', 'id="hi-by-class"', 'id="pca"', "pooled out-of-fold"):
        assert marker.encode() in page.content


def test_cancelling_a_running_run_stops_it_and_keeps_its_checkpoints(
    celery_worker_process, synthetic_small: Path, remove_run_folders: None
) -> None:
    version = build_version(synthetic_small, name="train-cancel")
    user_create(username="researcher", role="curator", password=PASSWORD)
    client = APIClient()
    client.login(username="researcher", password=PASSWORD)
    options = {**TINY_CONFIG, "epochs": 500, "early_stopping_patience": 0}
    data = {"dataset": version.name, **options}
    response = client.post("/api/training-runs/", data, format="json")
    assert response.status_code == 201, response.data
    run_id = response.data["id"]
    wait_for(
        lambda: EpochRecord.objects.filter(run_id=run_id).exists(),
        timeout=120,
        what="the first epoch",
    )

    response = client.post(f"/api/training-runs/{run_id}/cancel/")
    assert response.status_code == 200 and response.data["cancel_requested"] is True
    wait_for(lambda: _finished(run_id), timeout=60, what="the worker to stop the run")
    run = TrainingRun.objects.get(pk=run_id)
    assert run.status == "cancelled"
    assert run.progress_message.startswith("cancelled after epoch")
    assert run.finished_at is not None and run.folds_done == 0
    assert (Path(run.checkpoint_dir) / "fold_0" / "last.pt").is_file()
    # Cancelling again is refused with the reason.
    again = client.post(f"/api/training-runs/{run_id}/cancel/")
    assert again.status_code == 400 and "is cancelled" in again.data["detail"]


def test_a_grid_trains_its_settings_one_task_after_another_and_writes_its_report(
    celery_worker_process, synthetic_small: Path, remove_run_folders: None
) -> None:
    version = build_version(synthetic_small, name="train-grid")
    user_create(username="researcher", role="curator", password=PASSWORD)
    client = APIClient()
    client.login(username="researcher", password=PASSWORD)
    data = {
        "dataset": version.name, "backbones": ["resnet"], "losses": ["ce", "emd"], "epochs": 1,
        "batch_size": 4, "optimizer": "adam",
    }  # fmt: skip
    response = client.post("/api/experiment-grids/", data, format="json")
    assert response.status_code == 201, response.data
    grid_id = response.data["id"]
    wait_for(
        lambda: (
            client.get(f"/api/experiment-grids/{grid_id}/").data["status"]
            not in ("pending", "running")
        ),
        timeout=180,
        what="the worker to train the grid",
    )
    grid = client.get(f"/api/experiment-grids/{grid_id}/").data
    assert grid["status"] == "succeeded", grid
    assert [(r["name"], r["status"]) for r in grid["runs"]] == [
        ("resnet-ce", "succeeded"), ("resnet-emd", "succeeded"),
    ]  # fmt: skip
    assert grid["report_folder"] == f"grids/{grid_id}"
    assert ExperimentGrid.objects.get(pk=grid_id).report_dir == f"grids/{grid_id}"
    # The worker wrote the report into the runs storage; the page serves its files.
    pages = Client()
    pages.login(username="researcher", password=PASSWORD)
    report = pages.get(f"/training/grids/{grid_id}/report/report.md")
    assert report.status_code == 200 and report["Content-Type"].startswith("text/markdown")
    text = report.content.decode()
    assert "| ResNet + CE |" in text and "| ResNet + EMD |" in text
    page = pages.get(f"/training/grids/{grid_id}/").content.decode()
    assert f'href="/training/grids/{grid_id}/report/report.html"' in page
    shutil.rmtree(Path(settings.TRAINING_RUNS_ROOT) / "grids" / str(grid_id))
