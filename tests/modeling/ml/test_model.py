"""Backbones, the grade-distribution model and pretrained weights (modeling.ml.model)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import TimesformerForVideoClassification

from modeling.ml import backbones
from modeling.ml.backbones import BACKBONES, PRESETS, View
from modeling.ml.losses import emd_loss
from modeling.ml.model import build_model, count_parameters, kinematics_standardisation

N_SPEED = 8


def _batch(
    b: int = 2, t: int = 8, size: int = 150
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(b, t, 1, size, size, generator=generator)  # (B, T, 1, H, W)
    speed = torch.rand(b, N_SPEED, generator=generator) * 100  # (B, k), µm/s-like
    target = torch.tensor([[0.0, 0.2, 0.8, 0.0, 0.0], [0.6, 0.4, 0.0, 0.0, 0.0]])[:b]
    return x, speed, target


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_small_backbone_predicts_distributions_and_learns_a_fixed_batch(
    backbone: str,
) -> None:
    torch.manual_seed(0)
    model = build_model(backbone=backbone, preset="small", n_kinematics_features=N_SPEED)
    x, speed, target = _batch()

    model.eval()
    with torch.no_grad():
        q = model(x, speed)
        features = model.features(x, speed)
    assert q.shape == (2, 5)
    assert torch.allclose(q.sum(dim=1), torch.ones(2), atol=1e-6) and (q >= 0).all()
    assert features.shape == (2, model.n_features)

    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(4):
        q_frames = model.frame_probabilities(x, speed)  # (B, F, 5)
        loss = emd_loss(
            q_frames.flatten(0, 1), target.unsqueeze(1).expand_as(q_frames).flatten(0, 1)
        )
        optimizer.zero_grad()
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert all(torch.isfinite(g).all() for g in grads)
        assert model.head[1].weight.grad.abs().sum() > 0
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_resnet_predicts_every_frame_and_averages_them() -> None:
    model = build_model(backbone="resnet", preset="small", n_kinematics_features=N_SPEED).eval()
    x, speed, _ = _batch(t=16)
    with torch.no_grad():
        per_frame = model.frame_probabilities(x, speed)
        clip = model(x, speed)
    assert per_frame.shape == (2, 8, 5)  # the small preset: 8 of the 16 frames
    torch.testing.assert_close(clip, per_frame.mean(dim=1))
    assert model.inputs.frame_indices(16) == [0, 2, 4, 6, 8, 10, 12, 14]


def test_the_head_takes_the_speed() -> None:
    model = build_model(backbone="slowfast", preset="small", n_kinematics_features=1).eval()
    x, _, _ = _batch()
    with torch.no_grad():
        slow = model(x, torch.tensor([[5.0], [5.0]]))
        fast = model(x, torch.tensor([[150.0], [150.0]]))
    assert not torch.allclose(slow, fast)
    with pytest.raises(ValueError, match="kinematics must have shape"):
        model(x, torch.zeros(2, 3))


def test_the_head_sees_kinematics_standardised_with_the_given_mean_and_std() -> None:
    speed = np.array([[50.0, 2.0], [150.0, 4.0], [100.0, 3.0]])  # (N, k): VCL, ALH
    shift, scale = kinematics_standardisation(speed, ("vcl", "alh"))
    np.testing.assert_allclose(shift, [100.0, 3.0])
    np.testing.assert_allclose(scale, speed.std(axis=0))
    torch.manual_seed(0)
    model = build_model(
        backbone="timesformer",
        n_kinematics_features=2,
        kinematics_scale=scale,
        kinematics_shift=shift,
    ).eval()
    x, _, _ = _batch(b=3)
    with torch.no_grad():
        logits = model.frame_logits(x, torch.tensor(speed, dtype=torch.float32))[0]
        # The same logits with the standardisation done by hand.
        z = torch.tensor(speed, dtype=torch.float32) - torch.tensor(shift, dtype=torch.float32)
        z = z / torch.tensor(scale, dtype=torch.float32)
        features = model.frame_features(x)[:, 0]
        expected = model.head(torch.cat([features, z.float()], dim=1))
    torch.testing.assert_close(logits[:, 0], expected)


def test_a_constant_kinematics_feature_keeps_its_fixed_scale() -> None:
    shift, scale = kinematics_standardisation(np.array([[1.0, 8.0], [3.0, 8.0]]), ("lin", "bcf"))
    assert shift == (2.0, 8.0) and scale == (1.0, 10.0)  # bcf: SPEED_FEATURES["bcf"]
    with pytest.raises(ValueError, match="shape"):
        kinematics_standardisation(np.zeros((0, 2)), ("lin", "bcf"))


def test_the_initialised_head_predicts_the_given_distribution_for_every_clip() -> None:
    torch.manual_seed(0)
    model = build_model(backbone="r2plus1d", n_kinematics_features=N_SPEED).eval()
    mean = np.array([0.1, 0.3, 0.35, 0.25, 0.0])  # nobody chose E
    model.init_head(mean)
    x, speed, _ = _batch()
    with torch.no_grad():
        q = model(x, speed)
    expected = torch.tensor(np.clip(mean, 1e-4, None) / np.clip(mean, 1e-4, None).sum())
    torch.testing.assert_close(q, expected.float().expand(2, -1), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="distribution over the 5 grades"):
        model.init_head([0.5, 0.5])


def test_a_head_with_a_hidden_layer_starts_at_the_distribution_learns_and_rebuilds() -> None:
    torch.manual_seed(0)
    model = build_model(backbone="r2plus1d", n_kinematics_features=N_SPEED, head_hidden=8)
    hidden, last = model.head[1], model.head[-1]
    assert isinstance(hidden, torch.nn.Linear) and hidden.out_features == 8
    assert last.in_features == 8
    mean = np.array([0.1, 0.3, 0.3, 0.2, 0.1])
    model.init_head(mean)
    x, speed, target = _batch()
    with torch.no_grad():
        torch.testing.assert_close(
            model.eval()(x, speed), torch.tensor(mean).float().expand(2, -1), atol=1e-5, rtol=0
        )
    # The hidden layer gets gradients once the last layer has left zero.
    optimizer = torch.optim.Adam(model.head_parameters(), lr=1e-2)
    model.train()
    for _ in range(3):
        optimizer.zero_grad()
        emd_loss(model(x, speed), target).backward()
        optimizer.step()
    assert hidden.weight.grad is not None and hidden.weight.grad.abs().sum() > 0
    # describe() rebuilds the same layout; a linear head leaves the key out, as before.
    described = model.describe()
    assert described["head_hidden"] == 8
    rebuilt = type(model)(**described)
    rebuilt.load_state_dict(model.state_dict())
    linear = build_model(backbone="r2plus1d", n_kinematics_features=N_SPEED)
    assert "head_hidden" not in linear.describe()
    with pytest.raises(ValueError, match="head_hidden"):
        build_model(backbone="r2plus1d", n_kinematics_features=N_SPEED, head_hidden=-1)


def test_clips_of_the_wrong_shape_or_too_few_frames_are_refused() -> None:
    model = build_model(backbone="r2plus1d", preset="small", n_kinematics_features=N_SPEED)
    x, speed, _ = _batch(t=4)
    with pytest.raises(ValueError, match="needs 8 frames"):
        model(x, speed)
    with pytest.raises(ValueError, match=r"\(B, T, 1, H, W\)"):
        model(x[:, :, 0], speed)


# Parameter counts of the paper presets (with an 8-feature head): ResNet-18, R(2+1)D-18, a
# SlowFast of ResNet-18 depth, TimeSformer-base (about 121 M, as published).
PAPER_PARAMETERS = {
    "resnet": 11_179_117,
    "r2plus1d": 33_181_202,
    "slowfast": 33_544_149,
    "timesformer": 121_262_637,
}


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_paper_preset_builds_at_its_size_and_predicts_one_clip(backbone: str) -> None:
    model = build_model(backbone=backbone, preset="paper", n_kinematics_features=N_SPEED).eval()
    assert count_parameters(model) == PAPER_PARAMETERS[backbone]
    assert len(model.trunks) == 1 and model.inputs.spec.views[0].size == 224
    if backbone == "timesformer":
        assert model.n_features == 768
    x, speed, _ = _batch(b=1, t=16)
    with torch.no_grad():
        q = model(x, speed)
    assert q.shape == (1, 5)
    assert float(q.sum()) == pytest.approx(1.0, abs=1e-5)


def test_small_presets_are_a_fraction_of_the_paper_size() -> None:
    for backbone in BACKBONES:
        small = build_model(backbone=backbone, preset="small", n_kinematics_features=N_SPEED)
        assert count_parameters(small) < PAPER_PARAMETERS[backbone] / 5
        assert len(small.trunks) == 2  # the whole crop and the native-resolution head patch


def test_unknown_names_are_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="resnet, r2plus1d, slowfast, timesformer"):
        build_model(backbone="vit", n_kinematics_features=1)
    with pytest.raises(ValueError, match="small, paper"):
        build_model(backbone="resnet", preset="huge", n_kinematics_features=1)
    with pytest.raises(ValueError, match="kinematics_scale"):
        build_model(backbone="resnet", n_kinematics_features=3)


# ------------------------------------------------------------------------------------------
# Pretrained weights


def test_a_saved_model_loads_as_pretrained_backbone_with_a_fresh_head(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = build_model(backbone="timesformer", preset="small", n_kinematics_features=N_SPEED)
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)

    torch.manual_seed(2)
    model = build_model(
        backbone="timesformer", preset="small", n_kinematics_features=N_SPEED, pretrained=path
    )

    source_state, state = source.state_dict(), model.state_dict()
    for key in state:
        same = torch.equal(state[key], source_state[key])
        assert same == (not key.startswith("head.")), key


def test_weights_of_another_backbone_are_refused_naming_the_keys(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save(build_model(backbone="r2plus1d", n_kinematics_features=N_SPEED).state_dict(), path)
    with pytest.raises(ValueError, match=r"missing keys.*Only the head may differ"):
        build_model(backbone="slowfast", n_kinematics_features=N_SPEED, pretrained=path)
    with pytest.raises(FileNotFoundError):
        build_model(
            backbone="slowfast", n_kinematics_features=N_SPEED, pretrained=tmp_path / "nope.pt"
        )


def test_an_image_model_state_dict_with_its_own_classifier_loads_into_the_paper_resnet(
    tmp_path: Path,
) -> None:
    # A torchvision-format ResNet-18 file: conv1, bn1, layer1..4 and an ImageNet fc.
    trunk = backbones.ResNetConfig().build(in_channels=3, image_size=224, frames=1)
    state = {
        k: torch.randn_like(v) if v.is_floating_point() else v
        for k, v in trunk.state_dict().items()
    }
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    torch.save(state, tmp_path / "resnet18.pth")

    model = build_model(
        backbone="resnet",
        preset="paper",
        n_kinematics_features=1,
        pretrained=tmp_path / "resnet18.pth",
    )
    torch.testing.assert_close(model.trunks[0].conv1.weight, state["conv1.weight"])

    with pytest.raises(ValueError, match="one input view"):
        build_model(
            backbone="resnet",
            preset="small",
            n_kinematics_features=1,
            pretrained=tmp_path / "resnet18.pth",
        )


def test_a_hugging_face_timesformer_directory_loads_without_downloading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = PRESETS["timesformer"]["small"]
    single_view = replace(small, inputs=replace(small.inputs, views=(View(crop=None, size=32),)))
    monkeypatch.setitem(PRESETS["timesformer"], "single", single_view)
    config = single_view.arch.config(in_channels=1, image_size=32, frames=8)
    config.num_labels = 400
    hf_model = TimesformerForVideoClassification(config)
    hf_model.save_pretrained(tmp_path / "k400")

    model = build_model(
        backbone="timesformer",
        preset="single",
        n_kinematics_features=1,
        pretrained=tmp_path / "k400",
    )

    torch.testing.assert_close(
        model.trunks[0].timesformer.embeddings.cls_token, hf_model.timesformer.embeddings.cls_token
    )
    x, _, _ = _batch(b=1)
    assert model(x, torch.zeros(1, 1)).shape == (1, 5)
    with pytest.raises(ValueError, match="only the timesformer"):
        build_model(
            backbone="resnet", preset="paper", n_kinematics_features=1, pretrained=tmp_path / "k400"
        )
