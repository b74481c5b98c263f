"""The head encoder (modeling.ml.head_encoder): the network, labelled head directories,
augmentation, pretraining on heads the simulator draws, and its place in the grade model."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from modeling.ml.head_encoder import (
    HEAD_ENCODER_FORMAT,
    HeadClassifier,
    HeadEncoder,
    HeadEncoderConfig,
    PretrainConfig,
    augment_heads,
    choose_threshold,
    classifier_scores,
    dihedral_views,
    encode_heads,
    fold_indices,
    head_morphometry,
    load_encoder,
    pretrain_encoder,
    probe_scores,
    read_encoder_file,
    read_head_dir,
    save_encoder,
)
from modeling.ml.model import build_model, count_parameters, load_pretrained
from modeling.ml.morphometry import MORPHOMETRY_FEATURES
from modeling.ml.train import TrainConfig, load_model, train_fold
from simulator.head_crops import write_head_dir


@pytest.fixture(scope="module")
def head_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 heads the simulator draws (a stack), labelled from its truth."""
    return write_head_dir(tmp_path_factory.mktemp("heads") / "sim-heads", n=120, seed=1)


@pytest.fixture(scope="module")
def encoder_file(head_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    heads = read_head_dir(head_dir)
    result = pretrain_encoder(heads, PretrainConfig(epochs=6, patience=3, batch_size=32))
    out = tmp_path_factory.mktemp("encoder") / "head-encoder.pt"
    save_encoder(out, result.encoder, result.record)
    return out


def test_the_encoder_is_small_and_encodes_heads_of_any_size() -> None:
    encoder = HeadEncoder().eval()
    assert 10_000 <= count_parameters(encoder) <= 100_000
    for size in (22, 40, 64):
        assert encoder(torch.rand(3, 1, size, size)).shape == (3, encoder.out_features)
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        encoder(torch.rand(3, 40, 40))


def test_the_encoder_does_not_see_the_brightness_or_contrast_of_the_microscope() -> None:
    torch.manual_seed(0)
    encoder = HeadEncoder().eval()
    heads = torch.rand(4, 1, 40, 40) * 0.5 + 0.2
    same = encoder(heads * 0.6 + 0.1)  # another gain and offset, same picture
    assert torch.allclose(encoder(heads), same, atol=1e-4)
    assert not torch.allclose(encoder(heads), encoder(heads.flip(2)), atol=1e-3)


def test_augmentation_is_seeded_and_keeps_a_head_centred_and_in_range() -> None:
    x = torch.zeros(6, 1, 21, 21)
    x[:, :, 7:14, 2:19] = 1.0  # a bar through the centre
    a = augment_heads(x, generator=torch.Generator().manual_seed(3))
    b = augment_heads(x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == x.shape
    assert a.min() >= 0 and a.max() <= 1
    assert (a[:, :, 10, 10] > 0.5).all()  # the centre stays on the head
    # Some images were turned by 90 degrees: the bar then runs up and down.
    assert (a[:, 0, 4, 10] > 0.5).any() and not torch.equal(a, x.expand_as(a))


def test_a_head_directory_reads_png_files_and_npy_stacks_alike(tmp_path: Path) -> None:
    png = read_head_dir(write_head_dir(tmp_path / "png", n=12, seed=4, png=True))
    stack = read_head_dir(write_head_dir(tmp_path / "npy", n=12, seed=4))
    assert png.images.shape == stack.images.shape == (12, 40, 40)
    assert np.array_equal(png.images, stack.images)
    assert set(png.labels) == {"shape", "vacuole", "normal"}
    assert png.classes["vacuole"] == ["no", "yes"]
    assert sum(png.counts()["shape"].values()) == 12
    digest = hashlib.sha256((tmp_path / "png" / "labels.csv").read_bytes()).hexdigest()
    assert png.labels_sha256 == digest
    resized = read_head_dir(tmp_path / "png", size=22)
    assert resized.images.shape == (12, 22, 22)


def _labelled(tmp_path: Path, rows: list[dict[str, str]], images: int = 4) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    np.save(tmp_path / "heads.npy", np.full((images, 16, 16), 128, np.uint8))
    pd.DataFrame(rows).to_csv(tmp_path / "labels.csv", index=False)
    return tmp_path


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"image": "heads.npy:0", "vac": "yes"}, {"image": "heads.npy:1", "vac": "yes"}],
         "label 'vac' has only one class"),
        ([{"image": "heads.npy:0", "vac": "yes"}, {"image": "heads.npy:9", "vac": "no"}],
         r"row 3 .*0 <= INDEX < 4"),
        ([{"image": "heads.npy:0", "vac": "yes"}, {"image": "nope.png", "vac": "no"}],
         r"row 3 .*no such image file"),
        ([{"image": "heads.npy:0", "vac": "yes"}, {"image": "heads.npy:1", "vac": ""}],
         "label 'vac' is blank in 1 row"),
        ([{"picture": "heads.npy:0", "vac": "yes"}], "no 'image' column"),
        ([{"image": "heads.npy:0"}], "no label column"),
        ([{"image": "../heads.npy:0", "vac": "yes"}, {"image": "heads.npy:1", "vac": "no"}],
         "must lie inside"),
    ],
)  # fmt: skip
def test_a_bad_head_directory_is_refused_with_a_message_that_says_what_is_wrong(
    tmp_path: Path, rows: list[dict[str, str]], message: str
) -> None:
    root = _labelled(tmp_path / "heads", rows)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        read_head_dir(root)


def test_a_directory_without_labels_csv_or_with_mixed_sizes_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"labels\.csv is missing"):
        read_head_dir(tmp_path)
    for name, size in (("a.png", 16), ("b.png", 20)):
        cv2.imwrite(str(tmp_path / name), np.zeros((size, size), np.uint8))
    pd.DataFrame({"image": ["a.png", "b.png"], "y": ["0", "1"]}).to_csv(
        tmp_path / "labels.csv", index=False
    )
    with pytest.raises(ValueError, match="different sizes"):
        read_head_dir(tmp_path)
    assert read_head_dir(tmp_path, size=16).images.shape == (2, 16, 16)
    (tmp_path / "b.png").write_text("not a png")
    with pytest.raises(ValueError, match="not a readable PNG"):
        read_head_dir(tmp_path, size=16)


def test_pretraining_records_what_the_encoder_was_trained_on(
    head_dir: Path, encoder_file: Path
) -> None:
    loaded = read_encoder_file(encoder_file)
    assert loaded["format"] == HEAD_ENCODER_FORMAT
    record = loaded["trained_on"]
    assert record["directory"] == "sim-heads"
    digest = hashlib.sha256((head_dir / "labels.csv").read_bytes()).hexdigest()
    assert record["labels_sha256"] == digest
    assert record["labels"]["shape"] == ["amorphous", "normal", "pear", "round", "tapered"]
    assert sum(record["counts"]["normal"].values()) == record["n_images"] == 120
    assert record["n_train"] + record["n_val"] == 120
    assert 1 <= record["best_epoch"] <= record["epochs_run"] <= 6
    assert record["code_version"] and record["config"]["epochs"] == 6
    for scores in record["val_metrics"].values():
        assert 0 <= scores["balanced_accuracy"] <= 1 and 0 <= scores["auc"] <= 1


def test_the_pretrained_encoder_tells_normal_heads_from_abnormal_ones(
    head_dir: Path, encoder_file: Path
) -> None:
    """A linear probe on the pretrained features beats the majority class on held-out folds;
    a fresh (random) encoder's features are worse."""
    heads = read_head_dir(head_dir)
    encoder, _ = load_encoder(encoder_file)
    trained = probe_scores(encode_heads(encoder, heads.images), heads.labels["normal"], folds=4)
    torch.manual_seed(0)
    random = probe_scores(
        encode_heads(HeadEncoder(), heads.images), heads.labels["normal"], folds=4
    )
    majority = max(heads.counts()["normal"].values()) / len(heads)
    assert trained["accuracy"] > majority + 0.1
    assert trained["auc"] > random["auc"]


def test_the_morphometry_of_simulated_heads_finds_every_head_and_knows_vacuoles(
    head_dir: Path,
) -> None:
    heads = read_head_dir(head_dir)
    features, missed = head_morphometry(heads.images)
    assert missed == 0 and features.shape == (120, len(MORPHOMETRY_FEATURES) + 1)
    scores = probe_scores(features, heads.labels["vacuole"], folds=4)
    assert scores["balanced_accuracy"] > 0.75


def test_the_accuracy_threshold_trades_the_rare_class_for_plain_accuracy() -> None:
    # 8 normal heads (0) and 2 abnormal (1); two normal heads score above one abnormal one.
    y = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.45, 0.5, 0.7, 0.8, 0.6, 0.9])
    t_accuracy = choose_threshold(y, p, objective="accuracy")
    # Only the 0.9 head called abnormal: 9 of 10 right, the one best accuracy.
    assert 0.8 <= t_accuracy < 0.9 and ((p > t_accuracy) == y).mean() == 0.9
    t_balanced = choose_threshold(y, p, objective="balanced_accuracy")
    # Catching both abnormal heads costs two normal ones: balanced accuracy 7/8, accuracy 8/10.
    assert 0.5 <= t_balanced < 0.6 and ((p > t_balanced) == y).mean() == 0.8
    # Perfectly separated scores: the threshold lies between the classes.
    assert 0.4 < choose_threshold(np.array([0, 0, 1]), np.array([0.1, 0.4, 0.7]),
                                  objective="accuracy") < 0.7  # fmt: skip
    with pytest.raises(ValueError, match="both classes"):
        choose_threshold(np.zeros(4, int), np.linspace(0, 1, 4), objective="accuracy")
    with pytest.raises(ValueError, match="objective must be one of"):
        choose_threshold(y, p, objective="f1")


def test_a_probe_reports_the_accuracy_operating_point_beside_its_balanced_one() -> None:
    """On a rare class (10 %), the class-balanced probe's own decisions give up plain
    accuracy; the threshold chosen on inner folds of each training fold wins it back."""
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.1).astype(np.int64)
    features = np.column_stack([rng.normal(1.5 * y, 1.0), rng.normal(0, 1, 400)])
    scores = probe_scores(features, y, folds=5)
    majority = 1 - y.mean()
    point = scores["operating_points"]["accuracy"]
    assert scores["accuracy"] < majority < point["accuracy"]
    assert point["balanced_accuracy"] < scores["balanced_accuracy"]
    balanced = scores["operating_points"]["balanced_accuracy"]
    assert balanced["balanced_accuracy"] > point["balanced_accuracy"]
    # A label of more than two classes keeps the probe's own point only.
    three = probe_scores(features, np.arange(400) % 3, folds=5)
    assert "operating_points" not in three and 0 <= three["accuracy"] <= 1


def test_test_time_augmentation_makes_features_and_predictions_orientation_free() -> None:
    torch.manual_seed(0)
    encoder = HeadEncoder().eval()
    heads = np.random.default_rng(1).random((3, 24, 24)).astype(np.float32)
    turned = np.rot90(heads, 1, axes=(1, 2)).copy()
    mirrored = heads[:, :, ::-1].copy()
    plain = encode_heads(encoder, heads)
    assert not np.allclose(plain, encode_heads(encoder, turned), atol=1e-3)
    averaged = encode_heads(encoder, heads, tta=True)
    for other in (turned, mirrored):
        assert np.allclose(averaged, encode_heads(encoder, other, tta=True), atol=1e-5)
    assert len(dihedral_views(torch.from_numpy(heads).unsqueeze(1))) == 8

    classifier = HeadClassifier(encoder, {"vacuole": 2, "shape": 5})
    scores = classifier_scores(classifier, heads, tta=True)
    assert scores["shape"].shape == (3, 5)
    assert np.allclose(np.exp(scores["vacuole"]).sum(axis=1), 1, atol=1e-5)  # log-probabilities
    for name, values in classifier_scores(classifier, turned, tta=True).items():
        assert np.allclose(values, scores[name], atol=1e-5)


def test_cross_fitting_folds_cover_every_head_once_and_train_on_the_others(
    head_dir: Path,
) -> None:
    heads = read_head_dir(head_dir)
    folds = fold_indices(heads.labels, folds=4, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(120))
    for fold in folds:
        assert 24 <= len(fold) <= 36
        assert heads.labels["vacuole"][fold].any()  # every fold holds both vacuole classes
    torch.set_num_threads(1)
    config = PretrainConfig(epochs=1, batch_size=32)
    result = pretrain_encoder(heads, config, val_index=folds[1])
    assert result.record["n_val"] == len(folds[1]) and result.record["n_train"] == 120 - len(
        folds[1]
    )
    with pytest.raises(ValueError, match=r"val_index must name heads 0\.\.119"):
        pretrain_encoder(heads, config, val_index=np.array([3, 120]))
    with pytest.raises(ValueError, match="at least 2 folds"):
        fold_indices(heads.labels, folds=1, seed=0)


def test_a_probe_needs_enough_heads_of_every_class() -> None:
    with pytest.raises(ValueError, match="only 2 example"):
        probe_scores(np.random.default_rng(0).random((12, 3)), np.array([0] * 10 + [1] * 2))


def test_encoder_weights_load_into_the_grade_models_head_view(encoder_file: Path) -> None:
    model = build_model(
        backbone="timesformer", preset="small", n_kinematics_features=8,
        head_encoder=HeadEncoderConfig().to_dict(), pretrained=encoder_file,
    )  # fmt: skip
    encoder, _ = load_encoder(encoder_file)
    assert model.head_encoder is not None
    for key, value in encoder.state_dict().items():
        assert torch.equal(model.head_encoder.state_dict()[key], value)
    # The head view went to the encoder: one trunk left, for the whole crop.
    assert len(model.trunks) == 1 and model.head_view_px == 40
    assert model(torch.rand(2, 16, 1, 150, 150), torch.zeros(2, 8)).shape == (2, 5)
    origin = model.pretrained_origin
    assert origin is not None and origin["kind"] == "head_encoder"
    assert origin["file"] == "head-encoder.pt"
    assert origin["sha256"] == hashlib.sha256(encoder_file.read_bytes()).hexdigest()
    assert origin["trained_on"]["directory"] == "sim-heads"


def test_an_encoder_file_is_refused_by_a_model_without_one_or_of_other_widths(
    encoder_file: Path,
) -> None:
    plain = build_model(backbone="resnet", preset="small", n_kinematics_features=8)
    with pytest.raises(ValueError, match="switch the head encoder on"):
        load_pretrained(plain, encoder_file)
    wider = build_model(
        backbone="resnet", preset="small", n_kinematics_features=8,
        head_encoder={"widths": [8, 16]},
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"widths \[16, 32, 48\]"):
        load_pretrained(wider, encoder_file)


def test_a_paper_preset_gains_a_native_head_view_with_the_encoder() -> None:
    model = build_model(
        backbone="resnet", preset="paper", n_kinematics_features=8,
        head_encoder=HeadEncoderConfig(widths=(8,)).to_dict(),
    )  # fmt: skip
    assert len(model.trunks) == 1 and model.head_view_px == 40
    assert model.n_features == 512 + 16
    # ResNet predicts every frame: the encoder's features join each frame's.
    x = torch.rand(1, 16, 1, 150, 150)
    assert model.frame_features(x).shape == (1, 16, 528)


@pytest.mark.parametrize(
    ("morphometry", "head_encoder"), [(False, False), (True, False), (False, True), (True, True)]
)
def test_a_training_run_runs_with_every_switch_combination(
    export_root: Path, tmp_path: Path, encoder_file: Path, morphometry: bool, head_encoder: bool
) -> None:
    config = TrainConfig(
        backbone="resnet", preset="small", epochs=1, batch_size=8, morphometry=morphometry,
        head_encoder=head_encoder, pretrained=str(encoder_file) if head_encoder else None,
    )  # fmt: skip
    result = train_fold(config, export_root, 0, checkpoint_dir=tmp_path / "fold")
    assert len(result.predictions) == 8 and np.isfinite(result.test_metrics["hi"])
    model, stored = load_model(Path(result.model_path))
    assert stored.head_encoder is head_encoder and stored.morphometry is morphometry
    assert (model.head_encoder is not None) is head_encoder
    assert ("head_encoder" in model.describe()) is head_encoder
    if head_encoder:
        saved = torch.load(tmp_path / "fold" / "model.pt", weights_only=True)
        assert (
            saved["pretrained_origin"]["sha256"]
            == hashlib.sha256(encoder_file.read_bytes()).hexdigest()
        )
        checkpoint = torch.load(tmp_path / "fold" / "last.pt", weights_only=True)
        assert checkpoint["pretrained_origin"]["trained_on"]["directory"] == "sim-heads"
    else:
        assert model.pretrained_origin is None


def test_an_older_stored_config_means_no_head_encoder() -> None:
    stored = TrainConfig(backbone="resnet").to_dict()
    del stored["head_encoder"]
    assert TrainConfig.from_dict(stored).head_encoder is False
    assert TrainConfig(backbone="resnet").head_encoder is False  # today's default: off
