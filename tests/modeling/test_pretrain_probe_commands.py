"""The pretrain_head and probe_head commands on heads the simulator draws, their errors, and a
training run that starts its head encoder from a pretrained file."""

from __future__ import annotations

import hashlib
import json
from io import StringIO
from pathlib import Path

import pandas as pd
import pytest
import torch
from django.core.management import CommandError, call_command

from datasets.models import DatasetVersion
from modeling.models import TrainingRun
from simulator.head_crops import write_head_dir


@pytest.fixture(scope="module")
def head_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_head_dir(tmp_path_factory.mktemp("heads") / "lab-heads", n=80, seed=2, png=True)


@pytest.fixture(scope="module")
def encoder_file(head_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("weights") / "lab-encoder.pt"
    call_command(
        "pretrain_head", str(head_dir), "--out", str(out), "--epochs", "3", "--batch-size",
        "32", "--no-progress", stdout=StringIO(),
    )  # fmt: skip
    return out


def test_pretrain_head_writes_an_encoder_that_records_its_training_data(
    head_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "enc.pt"
    stdout = StringIO()
    call_command(
        "pretrain_head", str(head_dir), "--out", str(out), "--labels", "vacuole", "normal",
        "--epochs", "2", "--seed", "5", "--no-progress", "--json", stdout=stdout,
    )  # fmt: skip
    record = json.loads(stdout.getvalue())
    assert out.is_file() and record["out"] == str(out)
    assert record["directory"] == "lab-heads" and record["n_images"] == 80
    assert record["labels"] == {"vacuole": ["no", "yes"], "normal": ["abnormal", "normal"]}
    assert (
        record["labels_sha256"]
        == hashlib.sha256((head_dir / "labels.csv").read_bytes()).hexdigest()
    )
    assert record["epochs_run"] == 2 and record["config"]["seed"] == 5
    assert set(record["val_metrics"]) == {"vacuole", "normal"}
    saved = torch.load(out, weights_only=True)
    assert saved["trained_on"]["counts"] == record["counts"]


def test_probe_head_prints_encoder_and_morphometry_side_by_side(
    head_dir: Path, encoder_file: Path
) -> None:
    stdout = StringIO()
    call_command("probe_head", str(encoder_file), str(head_dir), "--folds", "4", "--json",
                 stdout=stdout)  # fmt: skip
    report = json.loads(stdout.getvalue())
    assert report["n_images"] == 80 and report["folds"] == 4
    assert report["encoder"]["file"] == "lab-encoder.pt"
    assert report["encoder"]["trained_on"]["directory"] == "lab-heads"
    assert set(report["labels"]) == {"shape", "vacuole", "normal"}
    for name, row in report["labels"].items():
        for source in ("encoder", "morphometry"):
            scores = row[source]
            assert all(0 <= scores[key] <= 1 for key in ("accuracy", "balanced_accuracy", "auc"))
            # Binary labels also get the accuracy and balanced-accuracy operating points.
            points = scores.get("operating_points", {})
            assert set(points) == (set() if name == "shape" else {"accuracy", "balanced_accuracy"})
            for point in points.values():
                assert 0 <= point["accuracy"] <= 1 and 0 <= point["balanced_accuracy"] <= 1
    # The morphometry sees the simulator's vacuoles (pale spots) well above chance.
    assert report["labels"]["vacuole"]["morphometry"]["balanced_accuracy"] > 0.7

    table = StringIO()
    call_command("probe_head", str(encoder_file), str(head_dir), "--folds", "4", stdout=table)
    lines = table.getvalue().splitlines()
    assert "own point acc / bal" in lines[1] and "accuracy point acc / bal" in lines[1]
    assert [line.split()[0] for line in lines[2::2]] == ["shape", "vacuole", "normal"]
    assert [line.split()[0] for line in lines[3::2]] == ["morphometry"] * 3
    assert "n/a (not binary)" in lines[2] and "n/a" not in lines[4]
    tta = StringIO()
    call_command("probe_head", str(encoder_file), str(head_dir), "--folds", "4", "--tta",
                 "--json", stdout=tta)  # fmt: skip
    assert json.loads(tta.getvalue())["tta"] is True


def _write(root: Path, rows: list[dict[str, str]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return root


def test_the_commands_refuse_bad_input_with_a_message_that_says_what_is_wrong(
    head_dir: Path, encoder_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "never.pt"
    with pytest.raises(CommandError, match=r"labels\.csv is missing"):
        call_command("pretrain_head", str(tmp_path), "--out", str(out))
    one_class = _write(
        tmp_path / "one", [{"image": "../lab.png", "y": "a"}, {"image": "b.png", "y": "a"}]
    )
    with pytest.raises(CommandError, match="label 'y' has only one class"):
        call_command("pretrain_head", str(one_class), "--out", str(out))
    missing = _write(
        tmp_path / "missing", [{"image": "a.png", "y": "0"}, {"image": "b.png", "y": "1"}]
    )
    with pytest.raises(CommandError, match=r"row 2 \('a.png'\): no such image file"):
        call_command("pretrain_head", str(missing), "--out", str(out))
    with pytest.raises(CommandError, match="no label column"):
        call_command("pretrain_head", str(head_dir), "--out", str(out), "--labels", "colour")
    assert not out.exists()  # nothing half-written

    with pytest.raises(CommandError, match="is not a head encoder file"):
        call_command("probe_head", str(head_dir / "labels.csv"), str(head_dir))
    with pytest.raises(CommandError, match="head encoder file not found"):
        call_command("probe_head", str(tmp_path / "nope.pt"), str(head_dir))
    with pytest.raises(CommandError, match="--folds must be at least 2"):
        call_command("probe_head", str(encoder_file), str(head_dir), "--folds", "1")
    with pytest.raises(CommandError, match="30-fold cross-validation needs at least 30"):
        call_command("probe_head", str(encoder_file), str(head_dir), "--folds", "30")


def test_a_training_run_starts_its_head_encoder_from_the_pretrained_file_and_records_it(
    version: DatasetVersion, encoder_file: Path
) -> None:
    call_command(
        "train", "--dataset", "v1", "--backbone", "resnet", "--epochs", "1", "--batch-size",
        "4", "--optimizer", "adam", "--head-encoder", "--no-morphometry", "--pretrained",
        str(encoder_file), "--no-progress", stdout=StringIO(),
    )  # fmt: skip
    run = TrainingRun.objects.get()
    assert run.status == "succeeded"
    assert run.config["head_encoder"] is True and run.config["morphometry"] is False
    assert run.config["pretrained"] == str(encoder_file.resolve())
    saved = torch.load(
        Path(run.checkpoint_dir) / "fold_0" / "model.pt", map_location="cpu", weights_only=True
    )
    origin = saved["pretrained_origin"]
    assert origin["file"] == "lab-encoder.pt" and origin["kind"] == "head_encoder"
    assert origin["sha256"] == hashlib.sha256(encoder_file.read_bytes()).hexdigest()
    assert origin["trained_on"]["directory"] == "lab-heads"
    assert saved["model_kwargs"]["head_encoder"] == {"widths": [16, 32, 48]}


def test_a_run_without_the_head_encoder_refuses_an_encoder_file(
    version: DatasetVersion, encoder_file: Path
) -> None:
    with pytest.raises(CommandError, match="switch the head encoder on"):
        call_command(
            "train", "--dataset", "v1", "--backbone", "resnet", "--epochs", "1",
            "--pretrained", str(encoder_file), "--no-progress", stdout=StringIO(),
        )  # fmt: skip
