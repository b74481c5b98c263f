"""Video backbones B(x) of the paper's eq. 1 and their presets.

A *trunk* turns one view of a clip, ``(B, T, C, H, W)``, into features ``(B, F, D)``: F = T
for an image model applied to every frame (ResNet, the paper's baseline), F = 1 for a video
model (R(2+1)D, SlowFast, TimeSformer). :mod:`modeling.ml.model` crops, resizes and
normalises the clip into the views of an :class:`InputSpec`, runs one trunk per view and
concatenates their features for the head.

Every backbone has two presets:

- ``small``: trains from scratch on a CPU in minutes on a few hundred clips (tens of ms per
  clip and training step on one core). The sperm head is a few pixels across in a 150 px
  crop and shrinking the crop loses its shape, so a small preset looks at two views with a
  trunk each: the whole crop at 48 px (context: tail and motion) and the centre 40 x 40 px at
  native resolution (the head: crops are centred on the tracked head). 8 frames evenly
  spaced out of 16, grey input (one channel), 16-128 channels, one block per stage.
- ``paper``: the paper's setting. Frames upsampled from 150 to 224 px, grey repeated to three
  channels with ImageNet normalisation (to match pretrained weights); ResNet-18 on each of the
  16 frames; the video models on 8 frames evenly spaced out of the 16; TimeSformer-base
  (768-d, 12 layers, 12 heads, patch 16, divided space-time attention).

Network layouts (all written here except TimeSformer, which is Hugging Face's
``TimesformerModel`` built from a config, never downloaded):

- ``resnet``: ResNet with BasicBlocks (He et al. 2016). Module names follow the usual
  ResNet layout (``conv1``, ``bn1``, ``layer1``..``layer4``), so a torchvision-format
  ResNet-18 state dict loads into the paper preset (its ``fc`` is the dropped head).
- ``r2plus1d``: ResNet-18 layout where every 3x3x3 convolution is a spatial 1x3x3 followed by
  a temporal 3x1x1 convolution (Tran et al. 2018), with the intermediate width chosen so the
  parameter count matches the full 3D convolution.
- ``slowfast``: a slow pathway (every ``alpha``-th frame, wide) and a fast pathway (every
  frame, ``fast_ratio`` of the width) with time-strided lateral connections from fast to
  slow after the stem and each stage but the last (Feichtenhofer et al. 2019); the slow
  pathway uses temporal kernels only in its last two stages. BasicBlocks (ResNet-18 depth).
- ``timesformer``: features = the final CLS token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

import torch
from torch import nn
from transformers import TimesformerConfig, TimesformerModel

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

ConvFactory = Callable[..., nn.Module]
Stride = int | tuple[int, int, int]


# --------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class View:
    """One input stream: the centre ``crop`` x ``crop`` pixels (None = the whole frame), resized
    to ``size`` x ``size``."""

    crop: int | None
    size: int


@dataclass(frozen=True)
class InputSpec:
    """What a backbone sees of a clip (B, T, 1, H, W) of grey values in [0, 1]."""

    views: tuple[View, ...]
    frames: int | None  # frames evenly spaced out of the T given; None = all T
    channels: int  # 1 = grey, 3 = grey repeated (pretrained RGB weights)
    mean: tuple[float, ...]  # per channel, subtracted after resizing
    std: tuple[float, ...]


SMALL_INPUT = InputSpec(
    views=(View(crop=None, size=48), View(crop=40, size=40)),
    frames=8,
    channels=1,
    mean=(0.5,),
    std=(0.25,),
)
PAPER_INPUT = InputSpec(
    views=(View(crop=None, size=224),), frames=8, channels=3, mean=IMAGENET_MEAN, std=IMAGENET_STD
)


# --------------------------------------------------------------------------------------------
# Convolutions and the residual block shared by every CNN here


def _triple(stride: Stride) -> tuple[int, int, int]:
    return (stride, stride, stride) if isinstance(stride, int) else stride


def conv2d(
    in_channels: int, out_channels: int, *, stride: int, pointwise: bool = False
) -> nn.Module:
    """3x3 (or 1x1 when ``pointwise``) image convolution without bias (a BatchNorm follows)."""
    kernel = 1 if pointwise else 3
    return nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False)


def conv3d(
    in_channels: int,
    out_channels: int,
    *,
    stride: Stride,
    pointwise: bool = False,
    temporal_kernel: int = 3,
) -> nn.Module:
    """``temporal_kernel`` x 3 x 3 (or 1x1x1) video convolution without bias."""
    kernel = (1, 1, 1) if pointwise else (temporal_kernel, 3, 3)
    t, h, w = kernel
    padding = (t // 2, h // 2, w // 2)
    return nn.Conv3d(in_channels, out_channels, kernel, _triple(stride), padding, bias=False)


def conv2plus1d(
    in_channels: int,
    out_channels: int,
    *,
    stride: Stride,
    pointwise: bool = False,
    spatial_kernel: int = 3,
    temporal_kernel: int = 3,
) -> nn.Module:
    """A (2+1)D convolution: spatial 1 x k x k, BatchNorm, ReLU, temporal t x 1 x 1.

    The intermediate width ``t k^2 N_in N_out / (k^2 N_in + t N_out)`` gives the pair as many
    parameters as one t x k x k convolution (Tran et al. 2018).
    """
    if pointwise:
        return nn.Conv3d(in_channels, out_channels, 1, _triple(stride), bias=False)
    t_stride, s_stride, _ = _triple(stride)
    k2, t = spatial_kernel**2, temporal_kernel
    mid = max(1, t * k2 * in_channels * out_channels // (k2 * in_channels + t * out_channels))
    return nn.Sequential(
        nn.Conv3d(
            in_channels,
            mid,
            (1, spatial_kernel, spatial_kernel),
            (1, s_stride, s_stride),
            (0, spatial_kernel // 2, spatial_kernel // 2),
            bias=False,
        ),
        nn.BatchNorm3d(mid),
        nn.ReLU(inplace=True),
        nn.Conv3d(mid, out_channels, (t, 1, 1), (t_stride, 1, 1), (t // 2, 0, 0), bias=False),
    )


class BasicBlock(nn.Module):
    """Two convolutions with BatchNorm and an identity (or projection) shortcut.

    ``conv`` decides the kind: :func:`conv2d`, :func:`conv3d` or :func:`conv2plus1d`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: Stride,
        conv: ConvFactory,
        norm: Callable[[int], nn.BatchNorm2d | nn.BatchNorm3d],
    ) -> None:
        super().__init__()
        self.conv1 = conv(in_channels, out_channels, stride=stride)
        self.bn1 = norm(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv(out_channels, out_channels, stride=1)
        self.bn2 = norm(out_channels)
        # A block starts as the identity: training from scratch on few clips is steadier.
        nn.init.zeros_(self.bn2.weight)
        self.downsample: nn.Module | None = None
        if in_channels != out_channels or _triple(stride) != (1, 1, 1):
            self.downsample = nn.Sequential(
                conv(in_channels, out_channels, stride=stride, pointwise=True), norm(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + shortcut)


def residual_stage(
    in_channels: int,
    out_channels: int,
    *,
    depth: int,
    stride: Stride,
    conv: ConvFactory,
    norm: Callable[[int], nn.BatchNorm2d | nn.BatchNorm3d],
) -> nn.Sequential:
    """``depth`` BasicBlocks; the first one changes width and resolution."""
    blocks = [
        BasicBlock(
            in_channels if i == 0 else out_channels,
            out_channels,
            stride=stride if i == 0 else 1,
            conv=conv,
            norm=norm,
        )
        for i in range(depth)
    ]
    return nn.Sequential(*blocks)


def _check_stages(*lengths: int) -> None:
    if len(set(lengths)) != 1:
        raise ValueError(f"widths, depths and strides must have the same length, got {lengths}")


# --------------------------------------------------------------------------------------------
# ResNet (per frame)


@dataclass(frozen=True)
class ResNetConfig:
    """A 2D ResNet applied to every frame independently."""

    widths: tuple[int, ...] = (64, 128, 256, 512)
    depths: tuple[int, ...] = (2, 2, 2, 2)
    stem_kernel: int = 7
    stem_stride: int = 2
    stem_pool: bool = True  # 3x3 stride-2 max pool after the stem (ImageNet layout)

    def build(self, *, in_channels: int, image_size: int, frames: int) -> FrameResNet:
        return FrameResNet(self, in_channels=in_channels)


class FrameResNet(nn.Module):
    """ResNet over every frame: (B, T, C, H, W) -> (B, T, D)."""

    per_frame = True

    def __init__(self, config: ResNetConfig, *, in_channels: int) -> None:
        super().__init__()
        _check_stages(len(config.widths), len(config.depths))
        k = config.stem_kernel
        self.conv1 = nn.Conv2d(
            in_channels, config.widths[0], k, config.stem_stride, k // 2, bias=False
        )
        self.bn1 = nn.BatchNorm2d(config.widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if config.stem_pool else nn.Identity()
        in_width = config.widths[0]
        for i, (width, depth) in enumerate(zip(config.widths, config.depths, strict=True)):
            stage = residual_stage(
                in_width,
                width,
                depth=depth,
                stride=1 if i == 0 else 2,
                conv=conv2d,
                norm=nn.BatchNorm2d,
            )
            self.add_module(f"layer{i + 1}", stage)
            in_width = width
        self.n_stages = len(config.widths)
        self.out_features = config.widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        x = x.flatten(0, 1)  # (B*T, C, H, W): every frame is an image
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.n_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return x.mean(dim=(2, 3)).view(b, t, -1)  # (B, T, D)


# --------------------------------------------------------------------------------------------
# R(2+1)D


@dataclass(frozen=True)
class R2Plus1DConfig:
    """R(2+1)D: a video ResNet of (2+1)D convolutions."""

    widths: tuple[int, ...] = (64, 128, 256, 512)
    depths: tuple[int, ...] = (2, 2, 2, 2)
    temporal_strides: tuple[int, ...] = (1, 2, 2, 2)
    stem_kernel: int = 7  # spatial; the stem is stride 2 in space, 1 in time

    def build(self, *, in_channels: int, image_size: int, frames: int) -> R2Plus1DNet:
        return R2Plus1DNet(self, in_channels=in_channels)


class R2Plus1DNet(nn.Module):
    """(B, T, C, H, W) -> (B, 1, D)."""

    per_frame = False

    def __init__(self, config: R2Plus1DConfig, *, in_channels: int) -> None:
        super().__init__()
        _check_stages(len(config.widths), len(config.depths), len(config.temporal_strides))
        self.stem = nn.Sequential(
            conv2plus1d(
                in_channels, config.widths[0], stride=(1, 2, 2), spatial_kernel=config.stem_kernel
            ),
            nn.BatchNorm3d(config.widths[0]),
            nn.ReLU(inplace=True),
        )
        stages = []
        in_width = config.widths[0]
        for i, (width, depth, t_stride) in enumerate(
            zip(config.widths, config.depths, config.temporal_strides, strict=True)
        ):
            s_stride = 1 if i == 0 else 2
            stages.append(
                residual_stage(
                    in_width,
                    width,
                    depth=depth,
                    stride=(t_stride, s_stride, s_stride),
                    conv=conv2plus1d,
                    norm=nn.BatchNorm3d,
                )
            )
            in_width = width
        self.stages = nn.Sequential(*stages)
        self.out_features = config.widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)  # (B, C, T, H, W)
        x = self.stages(self.stem(x))
        return x.mean(dim=(2, 3, 4)).unsqueeze(1)  # (B, 1, D)


# --------------------------------------------------------------------------------------------
# SlowFast


@dataclass(frozen=True)
class SlowFastConfig:
    """SlowFast: widths are the slow pathway's; the fast one has ``fast_ratio`` of them."""

    widths: tuple[int, ...] = (64, 128, 256, 512)
    depths: tuple[int, ...] = (2, 2, 2, 2)
    alpha: int = 4  # the slow pathway sees every alpha-th frame
    fast_ratio: float = 1 / 8  # beta: fast-pathway width / slow-pathway width
    slow_temporal_kernels: tuple[int, ...] = (1, 1, 3, 3)
    stem_kernel: int = 7
    stem_pool: bool = True

    def build(self, *, in_channels: int, image_size: int, frames: int) -> SlowFastNet:
        return SlowFastNet(self, in_channels=in_channels)


class SlowFastNet(nn.Module):
    """(B, T, C, H, W) -> (B, 1, D_slow + D_fast)."""

    per_frame = False

    def __init__(self, config: SlowFastConfig, *, in_channels: int) -> None:
        super().__init__()
        _check_stages(len(config.widths), len(config.depths), len(config.slow_temporal_kernels))
        self.alpha = config.alpha
        slow_widths = config.widths
        fast_widths = tuple(max(1, round(w * config.fast_ratio)) for w in config.widths)
        self.slow_stem = self._stem(in_channels, slow_widths[0], 1, config)
        self.fast_stem = self._stem(in_channels, fast_widths[0], 5, config)

        self.laterals = nn.ModuleList()
        self.slow_stages = nn.ModuleList()
        self.fast_stages = nn.ModuleList()
        slow_in, fast_in = slow_widths[0], fast_widths[0]
        for i, depth in enumerate(config.depths):
            # Fast -> slow: a time-strided 5x1x1 convolution to twice the fast width, whose
            # output has as many frames as the slow pathway; concatenated to the slow features.
            self.laterals.append(
                nn.Sequential(
                    nn.Conv3d(
                        fast_in, 2 * fast_in, (5, 1, 1), (self.alpha, 1, 1), (2, 0, 0), bias=False
                    ),
                    nn.BatchNorm3d(2 * fast_in),
                    nn.ReLU(inplace=True),
                )
            )
            s_stride = 1 if i == 0 else 2
            self.slow_stages.append(
                residual_stage(
                    slow_in + 2 * fast_in,
                    slow_widths[i],
                    depth=depth,
                    stride=(1, s_stride, s_stride),
                    conv=partial(conv3d, temporal_kernel=config.slow_temporal_kernels[i]),
                    norm=nn.BatchNorm3d,
                )
            )
            self.fast_stages.append(
                residual_stage(
                    fast_in,
                    fast_widths[i],
                    depth=depth,
                    stride=(1, s_stride, s_stride),
                    conv=partial(conv3d, temporal_kernel=3),
                    norm=nn.BatchNorm3d,
                )
            )
            slow_in, fast_in = slow_widths[i], fast_widths[i]
        self.out_features = slow_widths[-1] + fast_widths[-1]

    @staticmethod
    def _stem(
        in_channels: int, width: int, temporal_kernel: int, config: SlowFastConfig
    ) -> nn.Sequential:
        k = config.stem_kernel
        layers: list[nn.Module] = [
            nn.Conv3d(
                in_channels,
                width,
                (temporal_kernel, k, k),
                (1, 2, 2),
                (temporal_kernel // 2, k // 2, k // 2),
                bias=False,
            ),
            nn.BatchNorm3d(width),
            nn.ReLU(inplace=True),
        ]
        if config.stem_pool:
            layers.append(nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fast = x.transpose(1, 2)  # (B, C, T, H, W)
        slow = fast[:, :, :: self.alpha]  # (B, C, ceil(T / alpha), H, W)
        slow, fast = self.slow_stem(slow), self.fast_stem(fast)
        for lateral, slow_stage, fast_stage in zip(
            self.laterals, self.slow_stages, self.fast_stages, strict=True
        ):
            slow = slow_stage(torch.cat([slow, lateral(fast)], dim=1))
            fast = fast_stage(fast)
        features = torch.cat([slow.mean(dim=(2, 3, 4)), fast.mean(dim=(2, 3, 4))], dim=1)
        return features.unsqueeze(1)  # (B, 1, D_slow + D_fast)


# --------------------------------------------------------------------------------------------
# TimeSformer


@dataclass(frozen=True)
class TimesformerArch:
    """The TimesformerConfig fields a preset chooses; image size, frames, channels come from
    the input spec."""

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    patch_size: int = 16
    # Not drop_path_rate: transformers 5.24 types it int and refuses 0.1.
    hidden_dropout_prob: float = 0.0

    def config(self, *, in_channels: int, image_size: int, frames: int) -> TimesformerConfig:
        return TimesformerConfig(
            image_size=image_size,
            patch_size=self.patch_size,
            num_channels=in_channels,
            num_frames=frames,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            hidden_dropout_prob=self.hidden_dropout_prob,
            attention_type="divided_space_time",
        )

    def build(self, *, in_channels: int, image_size: int, frames: int) -> TimesformerTrunk:
        config = self.config(in_channels=in_channels, image_size=image_size, frames=frames)
        return TimesformerTrunk(TimesformerModel(config))


class TimesformerTrunk(nn.Module):
    """(B, T, C, H, W) -> (B, 1, hidden_size): the final CLS token."""

    per_frame = False

    def __init__(self, timesformer: TimesformerModel) -> None:
        super().__init__()
        self.timesformer = timesformer
        self.out_features = timesformer.config.hidden_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.timesformer(pixel_values=x).last_hidden_state  # (B, 1 + T*P, D)
        return hidden[:, :1]  # (B, 1, D)


# --------------------------------------------------------------------------------------------
# Presets

Arch = ResNetConfig | R2Plus1DConfig | SlowFastConfig | TimesformerArch
# What an Arch builds: each has `per_frame` (bool) and `out_features` (int).
Trunk = FrameResNet | R2Plus1DNet | SlowFastNet | TimesformerTrunk


@dataclass(frozen=True)
class BackbonePreset:
    """A backbone's network layout and what it sees of a clip."""

    arch: Arch
    inputs: InputSpec
    head_dropout: float = 0.0  # before the head's linear layer


_SMALL_WIDTHS = (16, 32, 64, 128)
_SMALL_DEPTHS = (1, 1, 1, 1)

PRESETS: dict[str, dict[str, BackbonePreset]] = {
    "resnet": {
        # Every frame predicted separately (the paper's image baseline): all 16 in the paper
        # preset, 8 evenly spaced in the small one (half the cost, nearly the same views).
        "small": BackbonePreset(
            arch=ResNetConfig(
                widths=_SMALL_WIDTHS, depths=_SMALL_DEPTHS, stem_kernel=5, stem_pool=False
            ),
            inputs=SMALL_INPUT,
            head_dropout=0.2,
        ),
        "paper": BackbonePreset(
            arch=ResNetConfig(),  # ResNet-18
            inputs=replace(PAPER_INPUT, frames=None),
        ),
    },
    "r2plus1d": {
        "small": BackbonePreset(
            arch=R2Plus1DConfig(
                widths=_SMALL_WIDTHS,
                depths=_SMALL_DEPTHS,
                temporal_strides=(1, 1, 2, 2),
                stem_kernel=5,
            ),
            inputs=SMALL_INPUT,
            head_dropout=0.2,
        ),
        "paper": BackbonePreset(arch=R2Plus1DConfig(), inputs=PAPER_INPUT),  # R(2+1)D-18
    },
    "slowfast": {
        "small": BackbonePreset(
            arch=SlowFastConfig(
                widths=_SMALL_WIDTHS,
                depths=_SMALL_DEPTHS,
                fast_ratio=1 / 4,
                stem_kernel=5,
                stem_pool=False,
            ),
            inputs=SMALL_INPUT,
            head_dropout=0.2,
        ),
        "paper": BackbonePreset(arch=SlowFastConfig(), inputs=PAPER_INPUT),
    },
    "timesformer": {
        "small": BackbonePreset(
            arch=TimesformerArch(
                hidden_size=96,
                num_hidden_layers=4,
                num_attention_heads=4,
                intermediate_size=384,
                patch_size=8,
                hidden_dropout_prob=0.1,
            ),
            inputs=SMALL_INPUT,
            head_dropout=0.2,
        ),
        "paper": BackbonePreset(arch=TimesformerArch(), inputs=PAPER_INPUT),  # TimeSformer-base
    },
}
BACKBONES: tuple[str, ...] = tuple(PRESETS)


def get_preset(backbone: str, preset: str) -> BackbonePreset:
    """The preset called ``preset`` of ``backbone``, or a message naming the valid choices."""
    if backbone not in PRESETS:
        raise ValueError(f"Unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}.")
    presets = PRESETS[backbone]
    if preset not in presets:
        raise ValueError(
            f"Unknown preset {preset!r} for {backbone}; choose one of {', '.join(presets)}."
        )
    return presets[preset]


def build_trunks(preset: BackbonePreset, *, frames: int) -> list[Trunk]:
    """One freshly initialised trunk per view of ``preset.inputs``, for clips of ``frames``
    frames after frame selection."""
    return [
        preset.arch.build(in_channels=preset.inputs.channels, image_size=view.size, frames=frames)
        for view in preset.inputs.views
    ]
