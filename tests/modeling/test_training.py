"""Training runs executed in the test process: resume, leases, errors, CLI, new clips."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from django.core.management import CommandError, call_command
from django.utils import timezone

from annotation.models import Clip, Video
from datasets.models import DatasetVersion
from datasets.services import export_dir_for
from modeling import services
from modeling.models import EpochRecord, ExperimentGrid, Prediction, TrainingRun
from tests.modeling.conftest import build_version


def _start(version: DatasetVersion, config: dict[str, Any]) -> TrainingRun:
    return services.training_run_start(
        version=version, config=config, created_by=None, enqueue=False
    )


def _epochs(run: TrainingRun, fold: int) -> list[int]:
    return list(EpochRecord.objects.filter(run=run, fold=fold).values_list("epoch", flat=True))


def test_a_run_interrupted_after_epoch_one_resumes_from_its_checkpoint(
    version: DatasetVersion, tiny_config: dict[str, Any]
) -> None:
    run = _start(version, tiny_config)

    def after_first_epoch() -> bool:
        return EpochRecord.objects.filter(run=run).exists()

    services.training_run_execute(run_id=run.pk, should_stop=after_first_epoch)
    run.refresh_from_db()
    assert run.status == "pending"
    assert run.progress_message.startswith("interrupted after epoch 1 of fold 1")
    assert _epochs(run, 0) == [1]
    first_epoch = EpochRecord.objects.get(run=run, fold=0, epoch=1)
    assert (Path(run.checkpoint_dir) / "fold_0" / "last.pt").is_file()
    assert not Prediction.objects.filter(run=run).exists()

    services.training_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.attempt == 2
    # Fold 0 went on from epoch 1 to 2 (not restarted): epochs counted across both attempts.
    assert _epochs(run, 0) == [1, 2]
    assert EpochRecord.objects.get(run=run, fold=0, epoch=1).train_loss == first_epoch.train_loss
    assert run.fold_summaries["0"]["epochs_run"] == 2
    assert run.folds_done == 3 and set(run.fold_metrics) == {"0", "1", "2"}
    assert run.duration_s > 0 and run.model_version.startswith(f"run{run.pk}-")
    # Every clip of the version got one out-of-fold prediction, from its own fold's model.
    predictions = Prediction.objects.filter(run=run).select_related("clip")
    folds = dict(version.clips.values_list("clip_id", "fold"))
    assert sorted(p.clip_id for p in predictions) == sorted(folds)
    assert all(p.fold == folds[p.clip_id] for p in predictions)
    assert np.allclose([sum(p.p) for p in predictions], 1.0)
    assert set(run.pca) == {"0", "1", "2"} and run.pooled_metrics["n"] == version.n_clips


def test_a_second_worker_cannot_claim_a_run_whose_heartbeat_is_fresh(
    version: DatasetVersion, tiny_config: dict[str, Any]
) -> None:
    run = _start(version, tiny_config)
    assert services.training_run_claim(run_id=run.pk) == 1
    with pytest.raises(services.RunBusy) as busy:
        services.training_run_claim(run_id=run.pk)
    assert busy.value.retry_after > 5
    # The first worker died: once its heartbeat is stale, a redelivery takes the run over.
    stale = timezone.now() - timedelta(hours=1)
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=stale)
    assert services.training_run_claim(run_id=run.pk) == 2
    # A finished run is never claimed again.
    TrainingRun.objects.filter(pk=run.pk).update(status="succeeded")
    assert services.training_run_claim(run_id=run.pk) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"backbone": "vgg"}, "Unknown backbone 'vgg'; choose one of resnet"),
        ({"loss": "kl"}, "kl"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of sgd, adam, adamw"),
        ({"epochs": 0}, "epochs must be a whole number from 1 to 10000, not 0"),
        ({"learning_rate": 0.1}, "unknown TrainConfig field(s): learning_rate"),
    ],
)
def test_a_bad_config_is_refused_with_a_message_naming_the_problem(
    version: DatasetVersion, tiny_config: dict[str, Any], change: dict, message: str
) -> None:
    with pytest.raises(services.TrainingError, match="invalid training configuration") as error:
        _start(version, {**tiny_config, **change})
    assert message in str(error.value)
    assert not TrainingRun.objects.exists()


def test_a_version_that_is_not_built_cannot_be_trained_on(
    db, local_roots: Path, tiny_config: dict[str, Any]
) -> None:
    version = DatasetVersion.objects.create(name="draft", pseudonym_salt="x")
    with pytest.raises(services.TrainingError, match="'draft' is pending, not ready"):
        _start(version, tiny_config)


def test_the_train_command_writes_predictions_that_evaluate_predictions_reads(
    version: DatasetVersion, tmp_path: Path
) -> None:
    out = tmp_path / "oof.csv"
    stdout = StringIO()
    call_command(
        "train", "--dataset", "v1", "--backbone", "resnet", "--loss", "jsd", "--epochs", "2",
        "--batch-size", "4", "--optimizer", "adam", "--patience", "0", "--no-progress",
        "--predictions-out", str(out), stdout=stdout,
    )  # fmt: skip
    run = TrainingRun.objects.get()
    text = stdout.getvalue()
    assert f"run {run.pk} succeeded" in text
    assert f"/training/{run.pk}/" in text and run.checkpoint_dir in text
    assert run.config["loss"] == "jsd" and run.config["early_stopping_patience"] is None
    assert run.config["morphometry"] is True  # the small preset's default

    table = pd.read_csv(out, dtype={"clip_id": str})
    assert list(table.columns) == ["clip_id", "fold", "p_A", "p_B", "p_C", "p_D", "p_E"]
    assert len(table) == version.n_clips
    evaluation = StringIO()
    call_command(
        "evaluate_predictions", str(export_dir_for(version) / "distributions.csv"), str(out),
        stdout=evaluation,
    )  # fmt: skip
    metrics = json.loads(evaluation.getvalue())
    assert metrics["n"] == version.n_clips
    assert metrics["hi"] == pytest.approx(run.pooled_metrics["hi"], abs=1e-5)


def test_the_train_command_can_leave_the_head_morphometry_out(
    version: DatasetVersion, tmp_path: Path
) -> None:
    call_command(
        "train", "--dataset", "v1", "--backbone", "resnet", "--epochs", "1", "--batch-size",
        "4", "--optimizer", "adam", "--no-morphometry", "--no-progress", stdout=StringIO(),
    )  # fmt: skip
    run = TrainingRun.objects.get()
    assert run.status == "succeeded" and run.config["morphometry"] is False
    saved = torch.load(
        Path(run.checkpoint_dir) / "fold_0" / "model.pt", map_location="cpu", weights_only=True
    )
    assert saved["config"]["morphometry"] is False
    assert "morphometry_shift" not in saved["model_kwargs"]  # the head takes no morphometry


def test_the_train_command_names_a_missing_version(db, local_roots: Path) -> None:
    with pytest.raises(CommandError, match="no dataset version named 'nope'"):
        call_command("train", "--dataset", "nope", "--no-progress")


def test_clips_ingested_after_the_version_get_the_mean_of_the_fold_models(
    db, synthetic_small: Path, local_roots: Path, tiny_config: dict[str, Any]
) -> None:
    # A version of five clips; the sixth clip arrives later.
    early = shutil.copytree(synthetic_small, local_roots / "early")
    clips = pd.read_csv(early / "clips.csv", dtype=str)
    late_id = clips["clip_id"].iloc[-1]
    clips.iloc[:-1].to_csv(early / "clips.csv", index=False)
    ratings = pd.read_csv(early / "ratings.csv", dtype=str)
    ratings[ratings["clip_id"] != late_id].to_csv(early / "ratings.csv", index=False)
    version = build_version(early)
    call_command("import_dataset", str(synthetic_small), "--no-progress")
    late = Clip.objects.get(external_id=late_id)

    run = _start(version, tiny_config)
    services.training_run_execute(run_id=run.pk)
    run.refresh_from_db()
    # The fold models measure the new clip's head morphometry themselves.
    assert run.config["morphometry"] is True
    assert services.predictions_for_new_clips(run=run, clips=list(Clip.objects.all())) == 1
    prediction = Prediction.objects.get(run=run, clip=late)
    assert prediction.fold is None and prediction.model_version == run.model_version
    assert sum(prediction.p) == pytest.approx(1.0)
    assert Prediction.objects.filter(run=run).count() == 6
    # The version's clips kept their out-of-fold predictions.
    assert not Prediction.objects.filter(run=run, fold__isnull=True).exclude(clip=late).exists()
    # Each prediction says the pixel size its morphometry was measured at: the clip's video's.
    assert prediction.metadata == {"pixel_size_um": late.video.pixel_size_um}
    for oof in Prediction.objects.filter(run=run, fold__isnull=False).select_related("clip__video"):
        assert oof.metadata == {"pixel_size_um": oof.clip.video.pixel_size_um}
    # A clip imaged far outside the pixel sizes the fold models were trained on is flagged.
    trained = late.video.pixel_size_um
    Video.objects.filter(pk=late.video_id).update(pixel_size_um=trained / 2)
    assert services.predictions_for_new_clips(run=run, clips=[late]) == 1
    prediction.refresh_from_db()
    assert prediction.metadata["pixel_size_um"] == trained / 2
    assert "far outside" in prediction.metadata["pixel_size_warning"]


def test_the_experiment_grid_command_trains_every_setting_and_writes_the_report(
    version: DatasetVersion, tmp_path: Path, local_roots: Path
) -> None:
    out = tmp_path / "report"
    stdout = StringIO()
    call_command(
        "experiment_grid", "--dataset", "v1", "--backbones", "resnet", "slowfast",
        "--losses", "ce", "emd", "--epochs", "1", "--batch-size", "4", "--optimizer", "adam",
        "--no-progress", "--out", str(out), stdout=stdout,
    )  # fmt: skip
    assert "succeeded" in stdout.getvalue()
    runs = TrainingRun.objects.filter(grid__isnull=False)
    assert sorted(runs.values_list("name", flat=True)) == [
        "resnet-ce", "resnet-emd", "slowfast-ce", "slowfast-emd",
    ]  # fmt: skip
    assert set(runs.values_list("status", flat=True)) == {"succeeded"}
    markdown = (out / "report.md").read_text()
    for number in range(1, 8):
        assert f"### Table {number}." in markdown
    assert "| ResNet + CE |" in markdown and "| SlowFast + EMD |" in markdown
    html = (out / "report.html").read_text()
    assert "<h3>Table 4. Grade-mode accuracy" in html
    svgs = sorted(p.name for p in out.glob("*.svg"))
    assert "grid_hi.svg" in svgs and any(name.endswith("_pca.svg") for name in svgs)
    for name in svgs:
        assert "![" in markdown and f"({name})" in markdown
    # The same files are in the runs storage (here TRAINING_RUNS_ROOT), which the pages serve.
    grid = ExperimentGrid.objects.get()
    stored = local_roots / "runs" / "grids" / str(grid.pk)
    assert sorted(p.name for p in stored.iterdir()) == sorted([*svgs, "report.html", "report.md"])
    assert (stored / "report.md").read_text() == markdown


def test_epochs_and_training_time_are_stored_while_a_fold_is_still_training(
    version: DatasetVersion, tiny_config: dict[str, Any]
) -> None:
    from modeling import selectors

    run = _start(version, {**tiny_config, "epochs": 3})
    seen: list[tuple[int, float, float, list[str]]] = []

    def watch() -> bool:
        # Called before every batch: what a page polling the run would read right now.
        row = TrainingRun.objects.get(pk=run.pk)
        epochs = EpochRecord.objects.filter(run=run).count()
        if epochs and not row.fold_metrics:
            states = [fold.state for fold in selectors.run_fold_progress(row)]
            seen.append((epochs, row.duration_s, selectors.run_elapsed_s(row), states))
        return False

    started = timezone.now()
    services.training_run_execute(run_id=run.pk, should_stop=watch)
    wall = (timezone.now() - started).total_seconds()
    assert seen, "no epoch was stored before the first fold ended"
    epochs, duration, elapsed, states = seen[0]
    assert epochs >= 1 and duration > 0 and elapsed >= duration
    assert states == ["training", "waiting", "waiting"]
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    # The heartbeats kept duration_s current; the end wrote it once more, not on top of them.
    assert max(d for _, d, _, _ in seen) <= run.duration_s <= wall
    assert [f.state for f in selectors.run_fold_progress(run)] == ["done"] * 3


def test_a_running_runs_time_counts_from_its_last_heartbeat_until_the_heartbeat_goes_stale(
    version: DatasetVersion, tiny_config: dict[str, Any], settings
) -> None:
    from modeling import selectors

    run = _start(version, tiny_config)
    now = timezone.now()
    TrainingRun.objects.filter(pk=run.pk).update(
        status="running", duration_s=30.0, progress=0.25, heartbeat_at=now - timedelta(seconds=10)
    )
    run.refresh_from_db()
    assert selectors.run_elapsed_s(run, now=now) == pytest.approx(40.0)
    # A quarter done in 40 s: about 120 s to go.
    assert selectors.run_remaining_s(run, 40.0) == pytest.approx(120.0)
    # A worker that died stops the clock at its last heartbeat.
    stale = now + timedelta(seconds=settings.TRAINING_HEARTBEAT_STALE_S + 1)
    assert selectors.run_elapsed_s(run, now=stale) == pytest.approx(30.0)
    TrainingRun.objects.filter(pk=run.pk).update(status="failed")
    run.refresh_from_db()
    assert selectors.run_elapsed_s(run, now=now) == 30.0
    assert selectors.run_remaining_s(run, 30.0) is None
