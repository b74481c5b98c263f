"""Run and grid pages and the training API: curators only, and no prediction ever reaches an
expert (the grading stays blind to the model)."""

from __future__ import annotations

import io
import re
from typing import Any

import pandas as pd
import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from datasets.models import DatasetVersion
from modeling import services
from modeling.ml.train import TrainConfig
from modeling.models import EpochRecord, ExperimentGrid, Prediction, TrainingRun
from tests.conftest import PASSWORD

# Distinctive numbers: if any of them shows up in a response, a prediction leaked.
LEAK_P = (0.0371737, 0.1939393, 0.5151515, 0.2020202, 0.0517153)
LEAK_DIGITS = ("0.03717", "0.19393", "0.51515")
LEAK_VERSION = "run0-predmarker01"


@pytest.fixture
def finished_run(version: DatasetVersion, tiny_config: dict[str, Any]) -> TrainingRun:
    """A succeeded run written by hand (no training): metrics, epoch logs, PCA, predictions."""
    run = services.training_run_start(
        version=version, config=tiny_config, created_by=None, enqueue=False
    )
    clips = list(version.clips.all())
    metrics = {"emd": 0.05, "hi": 0.81, "macro_hi": 0.78, "mode_accuracy": 0.6, "n": 2}
    TrainingRun.objects.filter(pk=run.pk).update(
        status="succeeded",
        progress=1.0,
        folds_done=3,
        fold_metrics={str(k): metrics for k in range(3)},
        metrics_mean=metrics,
        metrics_std={"emd": 0.01, "hi": 0.02},
        pooled_metrics={**metrics, "n": len(clips)},
        pca={"0": {"explained": [0.7, 0.2], "points": [[c.clip_external_id, 0.1 * i, 0.0, c.mode]
                                                       for i, c in enumerate(clips)]}},
        model_version=LEAK_VERSION,
    )  # fmt: skip
    EpochRecord.objects.bulk_create(
        EpochRecord(run=run, fold=0, epoch=e, train_loss=0.3 / e, val_loss=0.32 / e,
                    best_epoch=e, seconds=1.0)
        for e in (1, 2)
    )  # fmt: skip
    Prediction.objects.bulk_create(
        Prediction(run=run, clip_id=c.clip_id, fold=c.fold, model_version=LEAK_VERSION,
                   **dict(zip(("p_a", "p_b", "p_c", "p_d", "p_e"), LEAK_P, strict=True)))
        for c in clips
    )  # fmt: skip
    run.refresh_from_db()
    return run


def _client(make_user, role: str) -> Client:
    user = make_user(role)
    client = APIClient()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def test_a_curator_sees_the_run_page_with_metrics_figures_and_downloads(
    make_user, finished_run: TrainingRun
) -> None:
    client = _client(make_user, "curator")
    listing = client.get("/training/")
    assert listing.status_code == 200 and finished_run.name.encode() in listing.content
    page = client.get(f"/training/{finished_run.pk}/")
    assert page.status_code == 200
    body = page.content.decode()
    for marker in ('id="learning-curves"', 'id="hi-by-class"', 'id="pca"', "mean ± std",
                   f"/api/training-runs/{finished_run.pk}/predictions.csv"):  # fmt: skip
        assert marker in body, marker
    assert "<script>" not in body and "style=" not in body  # CSP: static JS and CSS only
    # The learning curves' numbers in a table beside the figure (keyboards, screen readers):
    # fold 0 ran epochs 1 and 2 and kept epoch 2 (0.3 / 2 and 0.32 / 2).
    table_html = body[body.index('id="run-curves-table"') :].split("</table>")[0]
    cells = [cell.split(">", 1)[1] for cell in table_html.split("<td")[1:]]
    cells = [cell.split("<", 1)[0] for cell in cells]
    assert "fold 1</th>" in table_html
    assert cells == ["2", "2", "0.1500", "0.1600", "0.1500", "0.1600"]

    csv = client.get(f"/api/training-runs/{finished_run.pk}/predictions.csv")
    assert csv.status_code == 200 and csv["Content-Type"].startswith("text/csv")
    table = pd.read_csv(io.BytesIO(csv.content), dtype={"clip_id": str})
    assert list(table.columns) == ["clip_id", "fold", "p_A", "p_B", "p_C", "p_D", "p_E"]
    assert len(table) == finished_run.version.n_clips


def test_the_run_api_reports_status_metrics_and_logs_and_one_clips_prediction(
    make_user, finished_run: TrainingRun
) -> None:
    client = _client(make_user, "curator")
    detail = client.get(f"/api/training-runs/{finished_run.pk}/").json()
    assert detail["status"] == "succeeded" and detail["metrics_mean"]["hi"] == 0.81
    assert [e["epoch"] for e in detail["logs"]["0"]] == [1, 2]
    assert client.get(f"/api/training-runs/{finished_run.pk}/?logs=0").json()["logs"] is None
    clip_id = finished_run.version.clips.first().clip_external_id
    one = client.get(f"/api/training-runs/{finished_run.pk}/predictions/{clip_id}/").json()
    assert one["clip_id"] == clip_id and one["p"]["C"] == pytest.approx(LEAK_P[2])
    missing = client.get(f"/api/training-runs/{finished_run.pk}/predictions/nope/")
    assert missing.status_code == 404
    assert "no prediction for clip 'nope'" in missing.json()["detail"]
    schema = client.get("/api/schema/").content.decode()
    assert "/api/training-runs/{id}/predictions.csv" in schema


def test_the_api_refuses_a_bad_config_with_the_reason(make_user, version: DatasetVersion) -> None:
    client = _client(make_user, "curator")
    response = client.post(
        "/api/training-runs/", {"dataset": version.name, "backbone": "vgg"}, format="json"
    )
    assert response.status_code == 400 and "backbone" in response.json()
    response = client.post(
        "/api/training-runs/",
        {"dataset": version.name, "backbone": "resnet", "batch_size": 0},
        format="json",
    )
    assert response.status_code == 400 and "batch_size" in response.json()
    response = client.post("/api/training-runs/", {"dataset": "nope"}, format="json")
    assert "no dataset version named 'nope'" in response.json()["dataset"][0]
    assert not TrainingRun.objects.exists()


def test_a_grid_started_on_the_page_creates_one_run_per_setting(
    make_user, version: DatasetVersion, django_capture_on_commit_callbacks
) -> None:
    client = _client(make_user, "curator")
    form = {
        "dataset": version.name, "backbones": ["resnet", "timesformer"], "losses": ["ce", "emd"],
        "preset": "small", "epochs": 2, "optimizer": "adam", "lr": "0.001",
        "head_lr_scale": "20", "weight_decay": "", "early_stopping_patience": 0, "seed": 0,
    }  # fmt: skip
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post("/training/grids/", form)
    assert response.status_code == 302
    grid = ExperimentGrid.objects.get()
    assert len(callbacks) == 1  # one chained task; the runs wait for it
    assert sorted(grid.runs.values_list("name", flat=True)) == [
        "resnet-ce", "resnet-emd", "timesformer-ce", "timesformer-emd",
    ]  # fmt: skip
    # The head's own rate is taken; a blank weight decay keeps the default.
    config = grid.runs.first().config
    assert config["head_lr_scale"] == 20.0 and config["weight_decay"] == TrainConfig().weight_decay
    assert all(r.config["epochs"] == 2 and r.status == "pending" for r in grid.runs.all())
    page = client.get(f"/training/grids/{grid.pk}/")
    assert page.status_code == 200 and b"Table 1. Metrics" in page.content


@pytest.mark.parametrize("role", ["expert", "trainee"])
def test_training_pages_and_api_are_for_curators_only(
    make_user, finished_run: TrainingRun, role: str
) -> None:
    client = _client(make_user, role)
    pk = finished_run.pk
    clip_id = finished_run.version.clips.first().clip_external_id
    for path in (
        "/training/", f"/training/{pk}/", "/training/grids/", "/api/training-runs/",
        f"/api/training-runs/{pk}/", f"/api/training-runs/{pk}/predictions.csv",
        f"/api/training-runs/{pk}/predictions/{clip_id}/", "/api/experiment-grids/",
    ):  # fmt: skip
        assert client.get(path).status_code == 403, path
    for path in (f"/training/{pk}/cancel/", f"/api/training-runs/{pk}/cancel/",
                 "/api/training-runs/"):  # fmt: skip
        assert client.post(path, {}).status_code == 403, path
    assert TrainingRun.objects.get(pk=pk).status == "succeeded"


@pytest.mark.parametrize("role", ["curator", "admin"])
def test_the_live_endpoints_redraw_the_run_and_grid_pages_for_curators_and_admins(
    make_user, finished_run: TrainingRun, version: DatasetVersion, role: str
) -> None:
    client = _client(make_user, role)
    answer = client.get(f"/training/{finished_run.pk}/live/")
    assert answer.status_code == 200 and answer["Cache-Control"] == "no-store"
    live = answer.json()
    assert live["active"] is False and live["status"] == "succeeded"
    assert set(live["regions"]) == {"run-progress", "run-actions", "run-folds-box", "run-results"}
    assert 'id="learning-curves"' in live["regions"]["run-results"]
    assert ">fold 1<" in live["regions"]["run-folds-box"]
    assert "<script" not in "".join(live["regions"].values())
    grid = services.experiment_grid_start(
        version=version, backbones=["resnet"], losses=["ce"], epochs=1, created_by=None,
        enqueue=False,
    )  # fmt: skip
    live = client.get(f"/training/grids/{grid.pk}/live/").json()
    assert live["active"] is True and set(live["regions"]) == {"grid-runs-box", "grid-report"}
    assert "Table 2. Average rank per backbone" in live["regions"]["grid-report"]
    detail = client.get(f"/api/training-runs/{finished_run.pk}/?logs=0").json()
    assert [f["label"] for f in detail["folds"]] == ["fold 1", "fold 2", "fold 3"]
    assert detail["remaining_s"] is None and detail["elapsed_s"] == 0.0


@pytest.mark.parametrize("role", ["expert", "trainee", None])
def test_the_live_endpoints_refuse_everyone_else(
    make_user, finished_run: TrainingRun, version: DatasetVersion, role: str | None
) -> None:
    client = _client(make_user, role) if role else Client()
    grid = services.experiment_grid_start(
        version=version, backbones=["resnet"], losses=["ce"], epochs=1, created_by=None,
        enqueue=False,
    )  # fmt: skip
    for path in (f"/training/{finished_run.pk}/live/", f"/training/grids/{grid.pk}/live/"):
        response = client.get(path)
        if role is None:  # not logged in: to the login page
            assert response.status_code == 302 and "/login/" in response["Location"], path
        else:
            assert response.status_code == 403, path
        assert b"regions" not in response.content and b"fold 1" not in response.content


def _every_get_path(values: dict[str, str]) -> list[str]:
    """Every route of the project with its parameters filled from ``values`` (routes with
    other parameters, the admin and logout are left out)."""
    paths: list[str] = []

    def walk(patterns: list, prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                if not route.startswith("admin"):
                    walk(pattern.url_patterns, route)
                continue
            route = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values.get(m[1], m[0]), route)
            if isinstance(pattern, URLPattern) and not re.search(r"[<(^$]", route):
                paths.append("/" + route)

    walk(get_resolver().url_patterns, "")
    return [p for p in paths if p != "/logout/"]


def test_no_response_an_expert_can_get_contains_a_prediction(
    make_user, finished_run: TrainingRun
) -> None:
    clip = finished_run.version.clips.first()
    values = {"pk": str(finished_run.pk), "clip_id": clip.clip_external_id,
              "name": finished_run.version.name, "other": finished_run.version.name}  # fmt: skip
    client = _client(make_user, "expert")
    served = []
    for path in _every_get_path(values):
        response = client.get(path)
        assert response.status_code < 500, path
        if response.status_code != 200 or getattr(response, "streaming", False):
            continue
        body = response.content.decode(errors="replace")
        served.append(path)
        assert "predmarker" not in body, path
        assert not any(digits in body for digits in LEAK_DIGITS), path
    assert "/api/grading/next/" in served and "/grade/" in served
