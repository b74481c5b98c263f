"""The grade-distribution model of the paper's eq. 1: ``y_hat = softmax(H(B(x), v))``.

- ``x``: a clip, (B, T, 1, H, W) grey values in [0, 1] (the platform stores T = 16 frames of
  150 x 150 px). The model selects frames, crops, resizes, repeats grey to three channels and
  normalises as its backbone preset says (:class:`modeling.ml.backbones.InputSpec`).
- ``v``: kinematics of the tracked head, (B, k) in the units of ``annotation.ingest.kinematics``
  (velocities in µm/s, ALH in µm, BCF in Hz, ratios in [0, 1]); missing values must arrive
  as 0. The model standardises them, ``(v - kinematics_shift) / kinematics_scale``: training
  passes the
  inner training split's mean and standard deviation (:func:`kinematics_standardisation`),
  which are stored with the model so prediction uses the same numbers; without them, the
  fixed typical scales of ``annotation.ingest.kinematics.KINEMATICS_TYPICAL`` (no shift) make them
  of order 1.
- ``m`` (optional): the head's morphometry (:mod:`modeling.ml.morphometry`: area, length,
  width, ellipticity, ..., vacuole spots), measured on the clip's own frames, (B, K). A model
  built with ``morphometry_shift``/``morphometry_scale`` (from the training split,
  :func:`~modeling.ml.morphometry.morphometry_standardisation`) standardises them and adds
  the head's standardised abnormality (how far its outline lies from the typical head, in
  any direction); without them the model has no morphometry input (the paper's setting).
- ``B``: a backbone (:mod:`modeling.ml.backbones`), one trunk per view, features concatenated.
  With ``head_encoder`` (a :class:`~modeling.ml.head_encoder.HeadEncoderConfig` as a dict),
  the head view at native resolution (the small presets' centre 40 x 40 px; added to a
  preset without one) goes through the small CNN :class:`~modeling.ml.head_encoder.HeadEncoder`
  instead of a backbone trunk, frame by frame; its features join the trunks' (per frame for
  ResNet, averaged over the frames for video backbones). Its weights can come from
  ``pretrain_head`` (``load_pretrained`` with an encoder file).
- ``H``: dropout and one linear layer from [features, standardised kinematics, standardised
  morphometry] to 5 logits (A..E), the paper's head; with ``head_hidden`` > 0, a hidden layer
  of that width (GELU, dropout) before it, so that motion and shape can combine.
  :meth:`GradeDistributionModel.init_head` starts it at a given distribution (training uses
  the training split's mean: epoch 0 predicts the baseline, not uniform).

An image backbone (ResNet) predicts every frame separately: ``frame_probabilities`` is
(B, T, 5) and ``forward`` averages the T per-frame distributions, which is how the paper's
baseline is evaluated. Video backbones give one prediction per clip (F = 1).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from transformers import TimesformerModel

from annotation.grades import N_GRADES
from annotation.ingest.kinematics import KINEMATICS_KEYS, KINEMATICS_TYPICAL
from modeling.ml.backbones import (
    BackbonePreset,
    InputSpec,
    TimesformerTrunk,
    build_trunks,
    get_preset,
)
from modeling.ml.head_encoder import (
    HeadEncoder,
    HeadEncoderConfig,
    encoder_origin,
    file_sha256,
    is_encoder_file,
    read_encoder_file,
)
from modeling.ml.morphometry import (
    MORPHOMETRY_FEATURES,
    MORPHOMETRY_INPUTS,
    clips_morphometry,
    standardised_inputs,
)

# The model's kinematics input is chosen from annotation.ingest.kinematics.KINEMATICS_KEYS; without
# standardisation each is divided by its typical magnitude there (KINEMATICS_TYPICAL). The
# default leaves out ``speed``, which repeats VCL.
DEFAULT_KINEMATICS_FEATURES: tuple[str, ...] = tuple(k for k in KINEMATICS_KEYS if k != "speed")

# The head view's size when a preset has no native-resolution view of its own (paper presets):
# the small presets' centre crop, 40 x 40 px of the 150 px tracked crop.
HEAD_VIEW_PX = 40

# Keys a pretrained state dict may carry for its own classification layer, which we replace.
_SOURCE_HEAD_PREFIXES: tuple[str, ...] = ("head.", "fc.", "classifier.")


def kinematics_scales(features: Sequence[str]) -> tuple[float, ...]:
    """The fixed scales of the named kinematics features."""
    unknown = [name for name in features if name not in KINEMATICS_TYPICAL]
    if unknown:
        raise ValueError(
            f"Unknown kinematics feature(s) {unknown}; choose from {', '.join(KINEMATICS_KEYS)}."
        )
    return tuple(KINEMATICS_TYPICAL[name] for name in features)


def kinematics_standardisation(
    kinematics: np.ndarray, features: Sequence[str]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The shift and scale that standardise ``kinematics`` (N, k) of the named features:
    their mean and standard deviation over the N clips (e.g. the training split). A feature
    that does not vary keeps its fixed scale (``KINEMATICS_TYPICAL``)."""
    kinematics = np.asarray(kinematics, dtype=np.float64)
    if kinematics.ndim != 2 or kinematics.shape[1] != len(features) or len(kinematics) == 0:
        raise ValueError(
            f"need kinematics of shape (N >= 1, {len(features)}), got {tuple(kinematics.shape)}"
        )
    std = kinematics.std(axis=0)
    fixed = kinematics_scales(features)
    scale = tuple(float(s) if s > 1e-6 * f else f for s, f in zip(std, fixed, strict=True))
    return tuple(float(m) for m in kinematics.mean(axis=0)), scale


class ClipInput(nn.Module):
    """Turns a clip (B, T, 1, H, W) in [0, 1] into one normalised tensor per view,
    (B, F, C, size, size) each. No parameters."""

    # Buffers (register_buffer), declared for the type checker.
    mean: torch.Tensor  # (1, 1, C, 1, 1) float32
    std: torch.Tensor  # (1, 1, C, 1, 1) float32

    def __init__(self, spec: InputSpec) -> None:
        super().__init__()
        self.spec = spec
        shape = (1, 1, spec.channels, 1, 1)
        mean = torch.tensor(spec.mean, dtype=torch.float32).view(shape)
        std = torch.tensor(spec.std, dtype=torch.float32).view(shape)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def frame_indices(self, n_frames: int) -> list[int]:
        """``spec.frames`` indices evenly spaced over ``n_frames`` (all when ``frames`` is None)."""
        wanted = self.spec.frames or n_frames
        if wanted > n_frames:
            raise ValueError(f"the backbone needs {wanted} frames per clip, got {n_frames}")
        return [i * n_frames // wanted for i in range(wanted)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim != 5 or x.shape[2] != 1:
            raise ValueError(f"clips must have shape (B, T, 1, H, W), got {tuple(x.shape)}")
        x = x[:, self.frame_indices(x.shape[1])]  # (B, F, 1, H, W)
        b, f, _, h, w = x.shape
        views = []
        for view in self.spec.views:
            crop = min(view.crop or h, h, w)
            top, left = (h - crop) // 2, (w - crop) // 2
            v = x[..., top : top + crop, left : left + crop].flatten(0, 1)  # (B*F, 1, crop, crop)
            if crop != view.size:
                v = F.interpolate(
                    v,
                    size=view.size,
                    mode="bilinear",
                    align_corners=False,
                    antialias=crop > view.size,
                )
            v = v.view(b, f, 1, view.size, view.size).expand(-1, -1, self.spec.channels, -1, -1)
            views.append((v - self.mean) / self.std)  # (B, F, C, size, size)
        return views


class GradeDistributionModel(nn.Module):
    """Backbone + head; ``forward(x, kinematics)`` gives (B, 5) grade distributions (rows sum to 1).

    Every entry point takes an optional ``morphometry`` (B, K): the clips' morphometry when
    the caller has it already (training measures it once on the unaugmented frames); when a
    model that uses morphometry is not given it, it measures it on ``x``.
    """

    # Buffers (register_buffer), declared for the type checker.
    kinematics_scale: torch.Tensor  # (k,) float32
    kinematics_shift: torch.Tensor  # (k,) float32
    morphometry_shift: torch.Tensor  # (m,) float32, empty without morphometry
    morphometry_scale: torch.Tensor  # (m,) float32, empty without morphometry

    def __init__(
        self,
        *,
        backbone: str,
        preset: str,
        n_kinematics_features: int,
        kinematics_scale: Sequence[float],
        kinematics_shift: Sequence[float] | None = None,
        morphometry_shift: Sequence[float] | None = None,
        morphometry_scale: Sequence[float] | None = None,
        head_hidden: int = 0,
        head_encoder: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        # Where pretrained weights came from (load_pretrained sets it; checkpoints keep it).
        self.pretrained_origin: dict[str, Any] | None = None
        # The pixel sizes of its training clips (modeling.ml.morphometry.pixel_size_summary;
        # set by training, kept by model files; None for a model saved before they recorded
        # it): a prediction at a pixel size far outside them is flagged.
        self.trained_pixel_sizes: dict[str, Any] | None = None
        if head_hidden < 0:
            raise ValueError(f"head_hidden must be 0 (a linear head) or more, not {head_hidden}")
        self.head_hidden = int(head_hidden)
        self.uses_morphometry = morphometry_shift is not None or morphometry_scale is not None
        if self.uses_morphometry:
            k = len(MORPHOMETRY_INPUTS)
            if (
                morphometry_shift is None
                or morphometry_scale is None
                or len(morphometry_shift) != k
                or len(morphometry_scale) != k
            ):
                raise ValueError(f"need {k} morphometry shifts and scales ({MORPHOMETRY_INPUTS})")
            if any(not s > 0 for s in morphometry_scale):
                raise ValueError(f"morphometry scales must be positive, got {morphometry_scale}")
        kinematics_shift = (
            [0.0] * n_kinematics_features if kinematics_shift is None else kinematics_shift
        )
        if (
            len(kinematics_scale) != n_kinematics_features
            or len(kinematics_shift) != n_kinematics_features
        ):
            raise ValueError(
                f"need {n_kinematics_features} kinematics scales and shifts, got "
                f"{len(kinematics_scale)} and {len(kinematics_shift)}"
            )
        if any(not s > 0 for s in kinematics_scale):
            raise ValueError(f"kinematics scales must be positive, got {list(kinematics_scale)}")
        self.backbone_name, self.preset_name = backbone, preset
        self.preset: BackbonePreset = get_preset(backbone, preset)
        self.head_encoder_config = (
            None if head_encoder is None else HeadEncoderConfig.from_dict(head_encoder)
        )
        trunk_preset, self.head_view_px = self.preset, 0
        if self.head_encoder_config is not None:
            # The native-resolution head view goes to the encoder, the others to trunks.
            inputs = self.preset.inputs
            native = [v for v in inputs.views if v.crop is not None and v.crop == v.size]
            self.head_view_px = native[0].size if native else HEAD_VIEW_PX
            kept = tuple(v for v in inputs.views if v not in native[:1])
            trunk_preset = dataclasses.replace(
                self.preset, inputs=dataclasses.replace(inputs, views=kept)
            )
        self.inputs = ClipInput(trunk_preset.inputs)
        # Video trunks are built for the number of frames they will see (TimeSformer's time
        # embeddings); a per-frame trunk does not care.
        trunks = build_trunks(trunk_preset, frames=trunk_preset.inputs.frames or 1)
        self.trunks = nn.ModuleList(trunks)
        self.per_frame = bool(trunks[0].per_frame)
        self.n_features = sum(int(trunk.out_features) for trunk in trunks)
        self.head_encoder: HeadEncoder | None = None
        if self.head_encoder_config is not None:
            self.head_encoder = HeadEncoder(self.head_encoder_config)
            self.n_features += self.head_encoder.out_features
        self.n_kinematics_features = n_kinematics_features
        # Not in the state dict: describe() carries them, so a checkpoint's model_kwargs
        # rebuild them, and pretrained weights from another dataset do not bring theirs.
        scale = torch.tensor(kinematics_scale, dtype=torch.float32)
        shift = torch.tensor(kinematics_shift, dtype=torch.float32)
        self.register_buffer("kinematics_scale", scale, persistent=False)
        self.register_buffer("kinematics_shift", shift, persistent=False)
        morph_shift = torch.tensor(
            [] if morphometry_shift is None else list(morphometry_shift), dtype=torch.float32
        )
        morph_scale = torch.tensor(
            [] if morphometry_scale is None else list(morphometry_scale), dtype=torch.float32
        )
        self.register_buffer("morphometry_shift", morph_shift, persistent=False)
        self.register_buffer("morphometry_scale", morph_scale, persistent=False)
        self.n_morphometry_inputs = len(MORPHOMETRY_INPUTS) if self.uses_morphometry else 0
        width = self.n_features + n_kinematics_features + self.n_morphometry_inputs
        layers: list[nn.Module] = [nn.Dropout(self.preset.head_dropout)]
        if self.head_hidden:  # one hidden layer: interactions of motion and shape
            layers += [
                nn.Linear(width, self.head_hidden),
                nn.GELU(),
                nn.Dropout(self.preset.head_dropout),
            ]
            width = self.head_hidden
        layers.append(nn.Linear(width, N_GRADES))
        self.head = nn.Sequential(*layers)

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features per prediction: (B, F, D); F = frames (ResNet) or 1."""
        views = self.inputs(x)
        features = [trunk(v) for trunk, v in zip(self.trunks, views, strict=True)]
        if self.head_encoder is not None:
            features.append(self.head_features(x, frames=features[0].shape[1]))
        return torch.cat(features, dim=2)

    def head_features(self, x: torch.Tensor, *, frames: int) -> torch.Tensor:
        """The head encoder's features of the clips' head views: (B, frames, D_head), per
        selected frame when ``frames`` > 1 (ResNet), their mean over the frames when 1."""
        assert self.head_encoder is not None
        x = x[:, self.inputs.frame_indices(x.shape[1])]  # (B, F, 1, H, W)
        b, f, _, h, w = x.shape
        crop = min(self.head_view_px, h, w)
        top, left = (h - crop) // 2, (w - crop) // 2
        heads = x[..., top : top + crop, left : left + crop].flatten(0, 1)  # (B*F, 1, c, c)
        z = self.head_encoder(heads).view(b, f, -1)  # (B, F, D_head)
        return z if frames == f else z.mean(dim=1, keepdim=True)

    def morphometry_inputs(
        self, x: torch.Tensor, morphometry: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The head's morphometry inputs (B, K + 1): the standardised features and
        abnormality (``MORPHOMETRY_INPUTS``); (B, 0) for a model without morphometry.
        ``morphometry`` (B, K): measured already, else measured on ``x`` at the default pixel
        size (pass it measured at the clips' own: ``modeling.ml.train.predict`` does)."""
        if not self.uses_morphometry:
            return x.new_zeros((x.shape[0], 0))
        if morphometry is None:
            frames = x[:, :, 0].detach().float().cpu().numpy()  # (B, T, H, W) in [0, 1]
            morphometry = torch.from_numpy(clips_morphometry(frames)).to(x.device)
        k = len(MORPHOMETRY_FEATURES)
        if morphometry.shape != (x.shape[0], k):
            raise ValueError(
                f"morphometry must have shape (B, {k}), got {tuple(morphometry.shape)}"
            )
        return standardised_inputs(
            morphometry.float(), self.morphometry_shift, self.morphometry_scale
        )

    def frame_logits(
        self, x: torch.Tensor, kinematics: torch.Tensor, morphometry: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Head logits (B, F, 5) and the backbone features (B, F, D) they came from."""
        features = self.frame_features(x)  # (B, F, D)
        if kinematics.shape != (x.shape[0], self.n_kinematics_features):
            raise ValueError(
                f"kinematics must have shape (B, {self.n_kinematics_features}), "
                f"got {tuple(kinematics.shape)}"
            )
        v = (kinematics - self.kinematics_shift) / self.kinematics_scale  # (B, k), standardised
        v = torch.cat([v, self.morphometry_inputs(x, morphometry)], dim=1)  # (B, k + m)
        v = v.unsqueeze(1).expand(-1, features.shape[1], -1)  # (B, F, k + m)
        return self.head(torch.cat([features, v], dim=2)), features

    def frame_probabilities(
        self, x: torch.Tensor, kinematics: torch.Tensor, morphometry: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One grade distribution per prediction: (B, F, 5). Training fits every one."""
        return self.frame_logits(x, kinematics, morphometry)[0].softmax(dim=-1)

    def forward(
        self, x: torch.Tensor, kinematics: torch.Tensor, morphometry: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Clip grade distributions (B, 5): the mean of the per-frame ones for ResNet."""
        return self.frame_probabilities(x, kinematics, morphometry).mean(dim=1)

    def predict_with_features(
        self, x: torch.Tensor, kinematics: torch.Tensor, morphometry: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Clip distributions (B, 5) and clip features (B, D) in one pass."""
        logits, features = self.frame_logits(x, kinematics, morphometry)
        return logits.softmax(dim=-1).mean(dim=1), features.mean(dim=1)

    def features(self, x: torch.Tensor, kinematics: torch.Tensor) -> torch.Tensor:
        """Backbone features of every clip, (B, D) (mean over frames for ResNet), e.g. for PCA.

        ``kinematics`` is accepted so every entry point takes (x, kinematics); it is not part of
        B(x).
        """
        return self.frame_features(x).mean(dim=1)

    @torch.no_grad()
    def init_head(self, distribution: Sequence[float] | np.ndarray) -> None:
        """Start the head at ``distribution`` (e.g. the training mean): weights 0 and bias
        ``log(distribution)``, so the untrained model predicts exactly ``distribution`` for
        every clip; the weights then learn from there (the backbone gets gradients from the
        first step on, once the weights have moved).

        A random head on a random backbone's features would instead start every clip at a
        random distribution, and the first epochs spend themselves undoing that.
        """
        p = torch.as_tensor(np.asarray(distribution, dtype=np.float64)).float()
        if p.shape != (N_GRADES,) or not torch.isfinite(p).all() or (p < 0).any():
            raise ValueError(f"need a distribution over the {N_GRADES} grades, got {p.tolist()}")
        p = (p / p.sum()).clamp_min(1e-4)  # a grade nobody chose: small, not -inf
        linear = self.head[-1]
        assert isinstance(linear, nn.Linear)  # __init__ ends the head with one
        linear.weight.zero_()
        linear.bias.copy_(p.log() - p.log().mean())

    def head_parameters(self) -> list[nn.Parameter]:
        """The head's parameters (e.g. for their own learning rate)."""
        return list(self.head.parameters())

    def describe(self) -> dict[str, Any]:
        """The builder arguments that rebuild this model (stored in checkpoints). Models
        without morphometry leave its keys out, as models saved before it existed did."""
        described: dict[str, Any] = {
            "backbone": self.backbone_name,
            "preset": self.preset_name,
            "n_kinematics_features": self.n_kinematics_features,
            "kinematics_scale": [float(s) for s in self.kinematics_scale],
            "kinematics_shift": [float(s) for s in self.kinematics_shift],
        }
        if self.uses_morphometry:
            described["morphometry_shift"] = [float(s) for s in self.morphometry_shift]
            described["morphometry_scale"] = [float(s) for s in self.morphometry_scale]
        if self.head_hidden:
            described["head_hidden"] = self.head_hidden
        if self.head_encoder_config is not None:
            described["head_encoder"] = self.head_encoder_config.to_dict()
        return described


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def build_model(
    *,
    backbone: str,
    preset: str = "small",
    n_kinematics_features: int,
    pretrained: Path | None = None,
    kinematics_scale: Sequence[float] | None = None,
    kinematics_shift: Sequence[float] | None = None,
    morphometry_shift: Sequence[float] | None = None,
    morphometry_scale: Sequence[float] | None = None,
    head_hidden: int = 0,
    head_encoder: dict[str, Any] | None = None,
) -> GradeDistributionModel:
    """A grade-distribution model with a freshly initialised head.

    backbone: ``resnet``, ``r2plus1d``, ``slowfast`` or ``timesformer``; preset: ``small`` or
    ``paper`` (see :mod:`modeling.ml.backbones`). ``kinematics_scale`` (one value per
    kinematics feature) defaults to the scales of ``DEFAULT_KINEMATICS_FEATURES`` when
    ``n_kinematics_features`` is 8, or of VCL alone when it is 1; ``kinematics_shift``
    (subtracted first) defaults to 0. Pass
    the training split's :func:`kinematics_standardisation` to standardise them. With
    ``morphometry_shift`` and ``morphometry_scale`` (the training split's
    :func:`~modeling.ml.morphometry.morphometry_standardisation`) the head also takes the
    clip's morphometry. With ``head_encoder`` (``HeadEncoderConfig.to_dict()``) the head view
    goes through the small head encoder (see the module docstring).

    pretrained: weights from a local path only, never downloaded:

    - a head encoder file written by ``pretrain_head`` (:mod:`modeling.ml.head_encoder`):
      loaded into the model's head encoder (the model must have one), the backbone trunks
      left as they are;

    - a file saved with ``torch.save``: a state dict of this model (e.g. ``model.pt`` or a
      checkpoint of :mod:`modeling.ml.train`; its head is dropped), or of the backbone alone
      for a single-view preset (e.g. a torchvision ResNet-18 for ``resnet``/``paper``; its
      ``fc``/``head``/``classifier`` keys are ignored);
    - for ``timesformer``, a Hugging Face model directory (``config.json`` + weights, e.g. a
      local copy of ``facebook/timesformer-base-finetuned-k400``) for a single-view preset.

    Any key missing or left over beyond the head's is an error that names the keys.
    """
    if kinematics_scale is None:
        defaults = {len(DEFAULT_KINEMATICS_FEATURES): DEFAULT_KINEMATICS_FEATURES, 1: ("vcl",)}
        if n_kinematics_features not in defaults:
            raise ValueError(
                f"pass kinematics_scale for {n_kinematics_features} kinematics features "
                "(see modeling.ml.model.kinematics_scales)"
            )
        kinematics_scale = kinematics_scales(defaults[n_kinematics_features])
    model = GradeDistributionModel(
        backbone=backbone,
        preset=preset,
        n_kinematics_features=n_kinematics_features,
        kinematics_scale=kinematics_scale,
        kinematics_shift=kinematics_shift,
        morphometry_shift=morphometry_shift,
        morphometry_scale=morphometry_scale,
        head_hidden=head_hidden,
        head_encoder=head_encoder,
    )
    if pretrained is not None:
        load_pretrained(model, Path(pretrained))
    return model


def load_pretrained(model: GradeDistributionModel, path: Path) -> None:
    """Load backbone (or head encoder) weights from ``path`` into ``model`` (see
    :func:`build_model`); ``model.pretrained_origin`` records the file (name, sha256 and, for a
    head encoder, what it was trained on)."""
    if not path.exists():
        raise FileNotFoundError(f"pretrained weights not found: {path}")
    if path.is_dir():
        _load_hf_timesformer(model, path)
        model.pretrained_origin = {"kind": "huggingface", "file": path.name}
        return
    state = torch.load(path, map_location="cpu", weights_only=True)
    if is_encoder_file(state):
        if model.head_encoder is None:
            raise ValueError(
                f"{path} holds a head encoder (pretrain_head); switch the head encoder on "
                "(head_encoder) to load it"
            )
        loaded = read_encoder_file(path)
        if HeadEncoderConfig.from_dict(loaded["encoder_config"]) != model.head_encoder_config:
            raise ValueError(
                f"{path} holds a head encoder of widths {loaded['encoder_config']['widths']}, "
                f"the model's has {list(model.head_encoder.config.widths)}"
            )
        model.head_encoder.load_state_dict(loaded["encoder"])
        model.pretrained_origin = encoder_origin(path, loaded)
        return
    model.pretrained_origin = {"kind": "backbone", "file": path.name, "sha256": file_sha256(path)}
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a training checkpoint or a saved model file
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict")
    if any(key.startswith("trunks.") for key in state):
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
        result = model.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if not k.startswith("head.")]
        _check_keys(path, missing, list(result.unexpected_keys))
        return
    trunk = _single_trunk(model, path)
    result = trunk.load_state_dict(state, strict=False)
    unexpected = [k for k in result.unexpected_keys if not k.startswith(_SOURCE_HEAD_PREFIXES)]
    _check_keys(path, list(result.missing_keys), unexpected)


def _single_trunk(model: GradeDistributionModel, path: Path) -> nn.Module:
    if len(model.trunks) != 1:
        raise ValueError(
            f"{path} holds backbone weights for one input view, but the "
            f"{model.backbone_name}/{model.preset_name} preset has {len(model.trunks)} views; "
            "use a single-view preset (paper) or a state dict of the whole model"
        )
    return model.trunks[0]


def _check_keys(path: Path, missing: list[str], unexpected: list[str]) -> None:
    if missing or unexpected:
        raise ValueError(
            f"{path} does not fit the model: missing keys {missing[:10]}"
            f"{' ...' if len(missing) > 10 else ''}, unexpected keys {unexpected[:10]}"
            f"{' ...' if len(unexpected) > 10 else ''}. Only the head may differ; check that the "
            "backbone and preset match those the weights were trained with."
        )


def _load_hf_timesformer(model: GradeDistributionModel, directory: Path) -> None:
    trunk = _single_trunk(model, directory)
    if not isinstance(trunk, TimesformerTrunk):
        raise ValueError(
            f"{directory} is a directory: only the timesformer backbone loads Hugging Face "
            "model directories; pass a state dict file for the others"
        )
    # With output_loading_info the answer is (model, info); transformers types it as the model.
    loaded: TimesformerModel
    info: dict[str, list[Any]]
    loaded, info = TimesformerModel.from_pretrained(  # type: ignore[misc]
        directory,
        config=trunk.timesformer.config,
        local_files_only=True,
        output_loading_info=True,
    )
    unexpected = [k for k in info["unexpected_keys"] if not k.startswith(_SOURCE_HEAD_PREFIXES)]
    _check_keys(directory, list(info["missing_keys"]), unexpected)
    if info.get("mismatched_keys"):
        raise ValueError(f"{directory}: weights of the wrong shape: {info['mismatched_keys'][:10]}")
    trunk.timesformer = loaded
