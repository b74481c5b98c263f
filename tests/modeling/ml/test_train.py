"""Training one fold, resuming, cancelling and cross-validation (modeling.ml.train)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from modeling.ml.data import ExportDataset, read_fold
from modeling.ml.model import build_model, kinematics_scales
from modeling.ml.morphometry import MORPHOMETRY_FEATURES, morphometry_standardisation
from modeling.ml.train import (
    EpochLog,
    FoldResult,
    TrainConfig,
    TrainingCancelled,
    cross_validate,
    load_model,
    make_optimizer,
    predict,
    train_fold,
)

# Small enough for a shared CPU: 8 frames, 2 epochs, batches of 8.
CONFIG = TrainConfig(
    backbone="resnet", preset="small", optimizer="adam", lr=3e-3, epochs=2, batch_size=8, frames=8
)


@pytest.fixture(scope="module")
def reference(export_root: Path, tmp_path_factory: pytest.TempPathFactory) -> FoldResult:
    """An uninterrupted two-epoch run on outer fold 0."""
    torch.set_num_threads(1)
    return train_fold(CONFIG, export_root, 0, checkpoint_dir=tmp_path_factory.mktemp("reference"))


def test_a_fold_predicts_only_its_test_clips_with_the_best_val_epoch(
    reference: FoldResult, export_root: Path
) -> None:
    split = read_fold(export_root, 0)
    assert sorted(reference.predictions) == sorted(split.test)
    assert sorted(reference.features) == sorted(split.test)
    for p in reference.predictions.values():
        assert sum(p) == pytest.approx(1.0, abs=1e-5)
    assert [log.epoch for log in reference.logs] == [1, 2]
    assert all(log.val_metrics["n"] == len(split.val) for log in reference.logs)
    best = min(reference.logs, key=lambda log: log.val_loss)
    assert reference.best_epoch == best.epoch
    assert reference.test_metrics["n"] == len(split.test)
    assert reference.epochs_run == 2 and not reference.stopped_early
    json.dumps(
        [reference.test_metrics, reference.predictions, [log.to_dict() for log in reference.logs]]
    )


def _stopped_after_epoch_one(
    config: TrainConfig, export_root: Path, fold: int, checkpoint_dir: Path
) -> list[EpochLog]:
    """Train ``fold`` until a stop request after epoch 1; the epochs logged (a checkpoint of
    epoch 1 is left in ``checkpoint_dir``)."""
    seen: list[EpochLog] = []
    with pytest.raises(TrainingCancelled) as stopped:
        train_fold(
            config,
            export_root,
            fold,
            checkpoint_dir=checkpoint_dir,
            on_epoch=seen.append,
            should_stop=lambda: bool(seen),
        )
    assert stopped.value.epoch == 1
    return seen


def test_two_runs_with_the_same_seed_give_identical_predictions(
    reference: FoldResult, export_root: Path, tmp_path: Path
) -> None:
    again = train_fold(CONFIG, export_root, 0, checkpoint_dir=tmp_path)
    assert again.predictions == reference.predictions
    assert [log.train_loss for log in again.logs] == [log.train_loss for log in reference.logs]


def test_a_run_stopped_after_epoch_one_and_resumed_equals_an_uninterrupted_run(
    reference: FoldResult, export_root: Path, tmp_path: Path
) -> None:
    seen = _stopped_after_epoch_one(CONFIG, export_root, 0, tmp_path)
    assert [log.epoch for log in seen] == [1]
    assert (tmp_path / "last.pt").exists()

    resumed = train_fold(CONFIG, export_root, 0, checkpoint_dir=tmp_path, on_epoch=seen.append)

    assert [log.epoch for log in seen] == [1, 2]  # epoch 1 was not trained again
    assert resumed.predictions == reference.predictions
    assert [log.val_loss for log in resumed.logs] == [log.val_loss for log in reference.logs]
    assert resumed.best_epoch == reference.best_epoch


def test_cancelling_inside_the_first_epoch_leaves_no_checkpoint(
    export_root: Path, tmp_path: Path
) -> None:
    with pytest.raises(TrainingCancelled) as stopped:
        train_fold(CONFIG, export_root, 0, checkpoint_dir=tmp_path, should_stop=lambda: True)
    assert stopped.value.epoch == 0
    assert not (tmp_path / "last.pt").exists()


def test_a_checkpoint_of_another_configuration_is_not_resumed(
    reference: FoldResult, export_root: Path
) -> None:
    checkpoint_dir = Path(reference.model_path).parent
    with pytest.raises(ValueError, match="different loss"):
        train_fold(replace(CONFIG, loss="ce"), export_root, 0, checkpoint_dir=checkpoint_dir)


def _as_format_1(saved: dict, fmt: str) -> dict:
    """``saved`` as format 1 wrote it: the kinematics input was called speed."""
    old = dict(saved, format=fmt)
    old["config"] = {
        ("speed_features" if k == "kinematics_features" else k): v
        for k, v in saved["config"].items()
    }
    return old


def test_a_saved_model_of_the_old_speed_format_is_refused_naming_its_format(
    reference: FoldResult, tmp_path: Path
) -> None:
    saved = torch.load(reference.model_path, weights_only=True)
    assert saved["format"] == "mersv-grade-model/2" and "kinematics_scale" in saved["model_kwargs"]
    torch.save(_as_format_1(saved, "mersv-grade-model/1"), tmp_path / "old.pt")
    with pytest.raises(ValueError, match=r"of format mersv-grade-model/1; this version reads"):
        load_model(tmp_path / "old.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="is not a saved grade-distribution model"):
        load_model(tmp_path / "other.pt")


def test_a_checkpoint_of_the_old_speed_format_is_not_resumed_and_names_its_format(
    export_root: Path, tmp_path: Path
) -> None:
    _stopped_after_epoch_one(CONFIG, export_root, 0, tmp_path)
    checkpoint = torch.load(tmp_path / "last.pt", weights_only=True)
    assert checkpoint["format"] == "mersv-train-checkpoint/2"
    torch.save(_as_format_1(checkpoint, "mersv-train-checkpoint/1"), tmp_path / "last.pt")
    with pytest.raises(ValueError, match=r"of format mersv-train-checkpoint/1; this version"):
        train_fold(CONFIG, export_root, 0, checkpoint_dir=tmp_path)


def test_early_stopping_ends_the_run_patience_epochs_after_the_best(
    export_root: Path, tmp_path: Path
) -> None:
    # A learning rate of 0 and no BatchNorm (TimeSformer): the val loss never improves.
    config = TrainConfig(
        backbone="timesformer",
        lr=0.0,
        epochs=10,
        early_stopping_patience=2,
        batch_size=8,
        frames=8,
        augment=False,
    )
    result = train_fold(config, export_root, 2, checkpoint_dir=tmp_path)
    assert result.best_epoch == 1 and result.epochs_run == 3 and result.stopped_early
    assert result.logs[-1].finished and not result.logs[0].finished


def test_the_saved_model_and_predict_reproduce_the_fold_predictions(
    reference: FoldResult, export_root: Path
) -> None:
    model, config = load_model(Path(reference.model_path))
    assert config == CONFIG
    dataset = ExportDataset(
        export_root, clip_ids=sorted(reference.predictions), frames=config.frames
    )
    frames = np.stack(
        [np.load(dataset.frame_path(c))[: config.frames] for c in dataset.clip_ids]
    )  # uint8
    q = predict(model, frames, dataset.kinematics)
    expected = np.array([reference.predictions[c] for c in dataset.clip_ids])
    np.testing.assert_allclose(q, expected, atol=1e-5)
    one = predict(model, frames[0], dataset.kinematics[0])  # a single clip
    np.testing.assert_allclose(one[0], expected[0], atol=1e-5)


def test_cross_validation_predicts_every_clip_once_out_of_fold(
    export_root: Path, tmp_path: Path
) -> None:
    config = replace(CONFIG, epochs=1, optimizer="sgd", fair_sampling=False)
    finished: list[int] = []
    result = cross_validate(
        config,
        export_root,
        checkpoint_root=tmp_path,
        on_fold=lambda r: finished.append(r.outer_fold),
    )
    assert finished == [0, 1, 2]
    assert len(result.predictions) == 24
    assert set(result.mean) >= {"emd", "hi", "macro_hi", "mode_accuracy", "macro_f1", "top25_hi"}
    assert result.mean["hi"] == pytest.approx(np.mean([f.test_metrics["hi"] for f in result.folds]))
    assert result.std["hi"] >= 0.0
    assert result.pooled_metrics["n"] == 24
    assert (tmp_path / "fold_2" / "model.pt").exists()


def test_the_saved_model_keeps_the_training_splits_kinematics_standardisation(
    reference: FoldResult, export_root: Path
) -> None:
    train = ExportDataset(export_root, clip_ids=read_fold(export_root, 0).train)
    model, _ = load_model(Path(reference.model_path))
    np.testing.assert_allclose(
        model.kinematics_shift.numpy(), train.kinematics.mean(axis=0), rtol=1e-5
    )
    std = train.kinematics.std(axis=0)
    vcl = CONFIG.kinematics_features.index("vcl")
    lin = CONFIG.kinematics_features.index("lin")  # constant in the fixture: keeps its fixed scale
    assert model.kinematics_scale[vcl].item() == pytest.approx(std[vcl], rel=1e-5)
    assert model.kinematics_scale[lin].item() == 1.0


def test_without_standardisation_the_kinematics_keep_their_fixed_scales(
    export_root: Path, tmp_path: Path
) -> None:
    config = replace(CONFIG, epochs=1, standardise_kinematics=False, init_head=False)
    result = train_fold(config, export_root, 1, checkpoint_dir=tmp_path)
    model, loaded = load_model(Path(result.model_path))
    assert loaded == config
    assert model.kinematics_shift.abs().sum() == 0
    assert model.kinematics_scale.tolist() == list(kinematics_scales(config.kinematics_features))


def test_the_saved_model_keeps_the_training_splits_morphometry_standardisation(
    reference: FoldResult, export_root: Path
) -> None:
    assert CONFIG.morphometry  # the small preset's default
    train = ExportDataset(
        export_root, clip_ids=read_fold(export_root, 0).train, frames=8, morphometry=True
    )
    assert train.morphometry is not None and train.morphometry.shape == (len(train), 12)
    # The fixture's heads are discs of radius 9 - grade: the measured area follows.
    area = train.morphometry[:, MORPHOMETRY_FEATURES.index("area")]
    radius = 9 - train.targets.argmax(axis=1)
    assert np.corrcoef(area, radius**2)[0, 1] > 0.95
    model, _ = load_model(Path(reference.model_path))
    assert model.uses_morphometry
    shift, scale = morphometry_standardisation(train.morphometry)
    np.testing.assert_allclose(model.morphometry_shift.numpy(), shift, rtol=1e-5)
    np.testing.assert_allclose(model.morphometry_scale.numpy(), scale, rtol=1e-5)


def test_a_run_without_morphometry_and_an_older_checkpoint_without_the_option(
    export_root: Path, tmp_path: Path
) -> None:
    config = replace(CONFIG, epochs=2, morphometry=False)
    _stopped_after_epoch_one(config, export_root, 1, tmp_path)
    # A checkpoint written before the option existed: its config does not name it.
    checkpoint = torch.load(tmp_path / "last.pt", weights_only=True)
    del checkpoint["config"]["morphometry"]
    torch.save(checkpoint, tmp_path / "last.pt")

    result = train_fold(config, export_root, 1, checkpoint_dir=tmp_path)  # resumes

    assert result.epochs_run == 2
    model, loaded = load_model(Path(result.model_path))
    assert loaded.morphometry is False and not model.uses_morphometry
    assert model.head[1].in_features == model.n_features + len(config.kinematics_features)
    assert (
        "morphometry_shift" not in torch.load(result.model_path, weights_only=True)["model_kwargs"]
    )


def test_the_head_starts_at_the_training_mean_distribution(
    export_root: Path, tmp_path: Path
) -> None:
    # lr 0 and no BatchNorm (TimeSformer): the kept model is the initial one.
    config = TrainConfig(
        backbone="timesformer", lr=0.0, epochs=1, batch_size=8, frames=8, augment=False
    )
    result = train_fold(config, export_root, 0, checkpoint_dir=tmp_path)
    model, _ = load_model(Path(result.model_path))
    train = ExportDataset(export_root, clip_ids=read_fold(export_root, 0).train)
    torch.testing.assert_close(
        model.head[-1].bias.softmax(dim=0),
        torch.tensor(train.targets.mean(axis=0)),
        atol=1e-5,
        rtol=0,
    )


def test_optimizers_and_invalid_configs() -> None:
    model = build_model(
        backbone="timesformer", n_kinematics_features=len(CONFIG.kinematics_features)
    )
    for name, cls in (
        ("sgd", torch.optim.SGD),
        ("adam", torch.optim.Adam),
        ("adamw", torch.optim.AdamW),
    ):
        optimizer = make_optimizer(replace(CONFIG, optimizer=name, head_lr_scale=10), model)
        assert isinstance(optimizer, cls)
        backbone, head = optimizer.param_groups
        assert backbone["lr"] == CONFIG.lr and head["lr"] == pytest.approx(10 * CONFIG.lr)
        assert head["params"] == list(model.head.parameters())
        n_all = sum(1 for _ in model.parameters())
        assert len(backbone["params"]) + len(head["params"]) == n_all
    with pytest.raises(ValueError, match="head_lr_scale"):
        TrainConfig(head_lr_scale=0.0)
    assert TrainConfig(backbone="slowfast", preset="paper").resolved_batch_size == 16
    assert TrainConfig.from_dict(CONFIG.to_dict()) == CONFIG
    # The head's hidden layer: the small presets have one, the paper's head is linear, and a
    # config stored before the option existed meant the linear head.
    assert CONFIG.head_hidden == 64 and TrainConfig(preset="paper").head_hidden == 0
    older = {k: v for k, v in CONFIG.to_dict().items() if k != "head_hidden"}
    assert TrainConfig.from_dict(older).head_hidden == 0
    with pytest.raises(ValueError, match="head_hidden"):
        TrainConfig(head_hidden=-2)
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="Unknown loss"):
        TrainConfig(loss="kl")
    with pytest.raises(ValueError, match="Unknown kinematics"):
        TrainConfig(kinematics_features=("vcl", "tail_length"))


def test_a_fold_records_the_pixel_sizes_of_its_training_and_test_clips(
    reference: FoldResult, export_root: Path
) -> None:
    split = read_fold(export_root, 0)
    assert reference.trained_pixel_sizes == {
        "min_um": 0.5, "max_um": 0.5, "median_um": 0.5, "n_clips": len(split.train),
        "n_defaulted": 0, "default_um": 0.5,
    }  # fmt: skip
    assert reference.test_pixel_sizes == dict.fromkeys(split.test, 0.5)
    model, _ = load_model(Path(reference.model_path))
    assert model.trained_pixel_sizes == reference.trained_pixel_sizes
    checkpoint = torch.load(
        Path(reference.model_path).parent / "last.pt", map_location="cpu", weights_only=True
    )
    assert checkpoint["trained_pixel_sizes"] == reference.trained_pixel_sizes
