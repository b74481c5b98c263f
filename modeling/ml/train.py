"""Training a grade-distribution model on one outer fold, and cross-validation over all folds.

The protocol is the paper's: for outer fold k the model trains on the inner train subset of
the clips outside fold k, the epoch with the lowest loss on the inner val subset is kept
(early stopping ends the run after ``early_stopping_patience`` epochs without a better one),
and only then does the kept model predict fold k, once. The test fold is never looked at while
training or selecting.

Every epoch ends with a checkpoint ``checkpoint_dir/last.pt`` (written to a temporary file and
renamed, so it is never half-written) holding the model, the optimizer, the config, the epoch,
the RNG state, the best weights so far and the epoch logs. ``train_fold`` resumes from it when
it exists, and a resumed run gives the same result as an uninterrupted one (see
:mod:`modeling.ml.data` for how augmentation and sampling are keyed by seed and epoch). The
weights kept are finally saved, self-described, as ``checkpoint_dir/model.pt``
(:func:`load_model`). Checkpoints hold only tensors and plain containers: they load with
``torch.load(weights_only=True)``.

Training loss: the configured loss between the target and every prediction of a clip (one per
frame for ResNet, so each frame is a training sample of its clip's distribution). Validation
loss and all metrics: on the clip's prediction (the mean of ResNet's per-frame predictions).

Hooks for a job runner: ``on_epoch(EpochLog)`` after each epoch's checkpoint (progress,
learning curves); ``should_stop()`` before every training batch and after each epoch: when it
returns True, :class:`TrainingCancelled` is raised and the last checkpoint stays for a resume.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from annotation.ingest.scale import DEFAULT_PIXEL_SIZE_UM
from modeling.ml.backbones import BACKBONES, get_preset
from modeling.ml.data import (
    Augment,
    ClipBatch,
    ClipItem,
    ExportDataset,
    collate_clips,
    derive_seed,
    fair_sampler,
    fold_label,
    list_folds,
    read_fold,
    shuffle_sampler,
)
from modeling.ml.head_encoder import HeadEncoderConfig
from modeling.ml.losses import LOSSES, LossFn, get_loss
from modeling.ml.metrics import evaluate_distributions
from modeling.ml.model import (
    DEFAULT_KINEMATICS_FEATURES,
    GradeDistributionModel,
    build_model,
    kinematics_scales,
    kinematics_standardisation,
)
from modeling.ml.morphometry import (
    clips_morphometry,
    morphometry_standardisation,
)
from modeling.ml.options import TrainOption, option, train_options

# Format 2 calls the model's kinematics input "kinematics" everywhere (config
# kinematics_features, model n_kinematics_features / kinematics_scale / kinematics_shift);
# format 1 called it "speed". Older files are refused, naming their format: retrain.
CHECKPOINT_FORMAT = "mersv-train-checkpoint/2"
MODEL_FORMAT = "mersv-grade-model/2"

# The paper's batch sizes; small presets are cheap enough for 16 clips per step.
PAPER_BATCH_SIZES: dict[str, int] = {"resnet": 32, "slowfast": 16, "r2plus1d": 8, "timesformer": 8}
SMALL_BATCH_SIZE = 16
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam", "adamw")
# Whether the head takes the clip's morphometry when a config does not say: yes for the small
# presets, which train from scratch on few clips and do not learn a head's shape themselves
# (benchmarks/training.py); no for the paper's pretrained networks, the paper's setting.
MORPHOMETRY_BY_PRESET: dict[str, bool] = {"small": True, "paper": False}
# The head's hidden width when a config does not say: one hidden layer for the small presets
# (the quality combines motion and shape; benchmarks/training.py), the paper's linear head else.
HEAD_HIDDEN_BY_PRESET: dict[str, int] = {"small": 64, "paper": 0}
# Fields added after runs were stored: what an older stored config meant by leaving them out.
_ABSENT_IN_OLDER_CONFIGS: dict[str, Any] = {
    "morphometry": False,
    "head_hidden": 0,
    "head_encoder": False,
}
# Whether the head view goes through the small head encoder when a config does not say: off
# for both presets (today's backbone trunk on the head view; benchmarks/training.py compares).
HEAD_ENCODER_BY_PRESET: dict[str, bool] = {"small": False, "paper": False}
# The head encoder's layout in a run that switches it on (modeling.ml.head_encoder).
HEAD_ENCODER_LAYOUT: dict[str, Any] = HeadEncoderConfig().to_dict()

# Config fields that may change between an interrupted run and its resume: they do not change
# what is computed (workers, device), or only where the run ends (epochs, patience).
_RESUMABLE_CHANGES = frozenset({"num_workers", "device", "epochs", "early_stopping_patience"})


class TrainingCancelled(Exception):
    """``should_stop()`` returned True; the last checkpoint (after ``epoch``) is kept."""

    def __init__(self, outer_fold: int, epoch: int) -> None:
        super().__init__(f"training of {fold_label(outer_fold)} stopped after epoch {epoch}")
        self.outer_fold = outer_fold
        self.epoch = epoch


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run. The fields declared with ``option`` are the
    training options of the web form, the API and the CLI (modeling.ml.options); their
    defaults are what benchmarks/training.py found best from scratch on a CPU with the small
    presets (AdamW lr 3e-4, the head at 20x, weight decay 0.05, batch 16, at most 40 epochs,
    patience 10, no fair sampling). The paper's settings are the recipe ``paper``."""

    backbone: str = option(
        "timesformer", "the video backbone (ResNet: one prediction per frame)", choices=BACKBONES
    )
    preset: str = option(
        "small",
        "small: trains from scratch on a CPU; paper: the paper's networks (GPU)",
        choices=("small", "paper"),
    )
    loss: str = option("emd", "the training loss between true and predicted distributions",
                       choices=tuple(LOSSES))  # fmt: skip
    optimizer: str = option(
        "adamw",
        "the paper: SGD (momentum 0.9) on pretrained backbones; from scratch, AdamW learns "
        "much faster",
        choices=OPTIMIZERS,
    )
    lr: float = option(
        3e-4,
        "learning rate: 3e-4 from scratch (small presets); 1e-3 with SGD on pretrained weights",
        min=1e-8,
        max=10.0,
        label="Learning rate",
    )
    momentum: float = option(0.9, "SGD's momentum (other optimizers ignore it)", min=0.0, max=1.0)
    weight_decay: float = option(0.05, "weight decay (the paper: 5e-4 with SGD)", min=0.0, max=1.0)
    epochs: int = option(
        40, "at most this many epochs per fold; early stopping often ends sooner", min=1,
        max=10000,
    )  # fmt: skip
    batch_size: int | None = option(
        None,
        "clips per step; unset: the preset's (16 small; 32 ResNet, 16 SlowFast, 8 R(2+1)D and "
        "TimeSformer paper)",
        min=1,
        max=4096,
    )  # None: PAPER_BATCH_SIZES or SMALL_BATCH_SIZE
    fair_sampling: bool = option(False, "balance grade-mode classes in every epoch")
    augment: bool = option(True, "rotation, mirror, shift, brightness/contrast")
    early_stopping_patience: int | None = option(
        10,
        "stop after this many epochs without a better val loss; 0 = off",
        min=0,
        max=10000,
        label="Early-stopping patience",
        flag="--patience",
        off=0,
    )  # None: off
    seed: int = option(0, "the training seed (sampling, augmentation, initial weights)", min=0,
                       max=2**31 - 1)  # fmt: skip
    num_workers: int = 0
    device: str = option("cpu", "cpu, cuda, cuda:1, ...", max_length=32)
    frames: int = 16  # the first second at 15-16 fps
    kinematics_features: tuple[str, ...] = DEFAULT_KINEMATICS_FEATURES
    # The head's kinematics: standardised with the inner training split's mean and std (else
    # divided by fixed typical scales), which puts them on the scale of the backbone features.
    standardise_kinematics: bool = True
    # The head starts at the inner training split's mean distribution (weights 0, bias its
    # log), so the first epoch starts from the baseline prediction, not from a random one.
    init_head: bool = True
    # The head learns at lr * head_lr_scale (1: one learning rate, the paper's).
    head_lr_scale: float = option(
        20.0,
        "the head learns this many times faster than the backbone (the paper: 1)",
        min=1e-3,
        max=1000.0,
        label="Head learning rate x",
    )
    pretrained: str | None = option(
        None,
        "backbone weights: the name of a file or folder in the weights folder "
        "(MERSV_WEIGHTS_DIR; never downloaded; see modeling.ml.model); the train command also "
        "takes a path",
        max_length=500,
    )
    # The head also takes the clip's head morphometry (modeling.ml.morphometry), standardised
    # on the inner training split. None: MORPHOMETRY_BY_PRESET (resolved on creation).
    morphometry: bool | None = option(
        None,
        "the head also takes the sperm head's measured shape and vacuoles; unset: on for the "
        "small preset, off for paper",
        label="Head morphometry",
    )
    # Width of the head's hidden layer; 0: the paper's linear head. None: HEAD_HIDDEN_BY_PRESET.
    head_hidden: int | None = option(
        None,
        "width of the head's hidden layer, 0 for the paper's linear head; unset: 64 for the "
        "small preset, 0 for paper",
        min=0,
        max=4096,
        label="Head hidden width",
    )

    # The head view at native resolution through the small CNN head encoder
    # (modeling.ml.head_encoder) instead of a backbone trunk. None: HEAD_ENCODER_BY_PRESET.
    head_encoder: bool | None = option(
        None,
        "the head view (native resolution) goes through a small CNN head encoder, which "
        "pretrained weights from pretrain_head can start; unset: off",
        label="Learned head encoder",
    )

    def __post_init__(self) -> None:
        get_preset(self.backbone, self.preset)  # names the valid choices
        if self.head_encoder is None:
            object.__setattr__(self, "head_encoder", HEAD_ENCODER_BY_PRESET.get(self.preset, False))
        if self.morphometry is None:  # frozen: resolved once, so stored configs say it
            object.__setattr__(self, "morphometry", MORPHOMETRY_BY_PRESET.get(self.preset, False))
        if self.head_hidden is None:
            object.__setattr__(self, "head_hidden", HEAD_HIDDEN_BY_PRESET.get(self.preset, 0))
        if not (isinstance(self.head_hidden, int) and self.head_hidden >= 0):
            raise ValueError(f"head_hidden must be a whole number >= 0, not {self.head_hidden!r}")
        get_loss(self.loss)
        kinematics_scales(self.kinematics_features)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {self.optimizer!r}"
            )
        if self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, not {self.seed}")
        if not self.lr >= 0 or not self.head_lr_scale > 0:  # lr 0: a frozen model, for tests
            raise ValueError("lr must be at least 0 and head_lr_scale positive")
        if self.epochs < 1 or (self.batch_size is not None and self.batch_size < 1):
            raise ValueError("epochs and batch_size must be at least 1")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ValueError(
                "early_stopping_patience must be at least 1, or None for no early stop"
            )

    @property
    def resolved_batch_size(self) -> int:
        if self.batch_size is not None:
            return self.batch_size
        return PAPER_BATCH_SIZES[self.backbone] if self.preset == "paper" else SMALL_BATCH_SIZE

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (lists for tuples), as stored in checkpoints and in the database."""
        values = asdict(self)
        values["kinematics_features"] = list(self.kinematics_features)
        return values

    @classmethod
    def from_options(cls, values: dict[str, Any]) -> TrainConfig:
        """The config of a new run from plain field values; unset fields take the defaults."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s): {', '.join(sorted(unknown))}")
        values = dict(values)
        if "kinematics_features" in values:
            values["kinematics_features"] = tuple(values["kinematics_features"])
        return cls(**values)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """The config of stored ``values`` (:meth:`to_dict`, in a checkpoint or the database).
        A field added since they were stored takes the value that does what the older code
        did (no morphometry), not today's default."""
        return cls.from_options(_ABSENT_IN_OLDER_CONFIGS | dict(values))


# The options the web form, the API and the CLI offer (generated from TrainConfig's fields).
TRAIN_OPTIONS: tuple[TrainOption, ...] = train_options(TrainConfig)


@dataclass(frozen=True)
class EpochLog:
    """One epoch of one fold, as ``on_epoch`` receives it. ``epoch`` counts from 1."""

    outer_fold: int
    epoch: int
    epochs: int  # the maximum; the run may stop earlier
    train_loss: float
    val_loss: float
    val_metrics: dict[str, Any]
    best_epoch: int
    is_best: bool
    finished: bool  # no epoch follows (maximum reached or early stopping)
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FoldResult:
    """The outcome of one outer fold; every field but ``logs`` is plain JSON-able data."""

    outer_fold: int
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    test_metrics: dict[str, Any]
    predictions: dict[str, list[float]]  # test clip_id -> predicted p_A..p_E
    targets: dict[str, list[float]]  # test clip_id -> true p_A..p_E
    features: dict[str, list[float]]  # test clip_id -> backbone features (for PCA)
    logs: list[EpochLog] = field(default_factory=list)
    model_path: str = ""
    # The pixel sizes of the fold's training clips (morphometry.pixel_size_summary) and each
    # test clip's pixel size (µm/px), so a prediction far outside the range can be flagged.
    trained_pixel_sizes: dict[str, Any] | None = None
    test_pixel_sizes: dict[str, float] = field(default_factory=dict)


@dataclass
class CrossValidationResult:
    """Per-fold results, their mean and standard deviation, and the pooled out-of-fold scores."""

    folds: list[FoldResult]
    mean: dict[str, float]  # over folds, for every scalar metric
    std: dict[str, float]  # sample standard deviation over folds (0 for one fold)
    pooled_metrics: dict[str, Any]  # all out-of-fold predictions evaluated together
    predictions: dict[str, list[float]]  # every clip's out-of-fold prediction


@dataclass
class _RunState:
    """What a checkpoint carries besides model and optimizer."""

    epoch: int = 0
    best_epoch: int = 0
    best_val_loss: float = float("inf")
    epochs_without_improvement: int = 0
    best_model: dict[str, torch.Tensor] = field(default_factory=dict)
    logs: list[EpochLog] = field(default_factory=list)

    def record_epoch(self, epoch: int, val_loss: float, model: torch.nn.Module) -> bool:
        """Count ``epoch`` as done; keep a copy of the weights if its val loss is the best."""
        self.epoch = epoch
        if not val_loss < self.best_val_loss:  # also when NaN
            self.epochs_without_improvement += 1
            return False
        self.best_epoch, self.best_val_loss = epoch, val_loss
        self.best_model = {
            k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
        }
        self.epochs_without_improvement = 0
        return True


@dataclass(frozen=True)
class _Predictions:
    clip_ids: list[str]
    probabilities: np.ndarray  # (N, 5)
    features: np.ndarray  # (N, D)


# --------------------------------------------------------------------------------------------
# One fold


def train_fold(
    config: TrainConfig,
    export_root: Path,
    outer_fold: int,
    *,
    checkpoint_dir: Path,
    on_epoch: Callable[[EpochLog], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress: bool = False,
) -> FoldResult:
    """Train on the inner split of ``outer_fold``, keep the best val epoch, predict the fold.

    Resumes from ``checkpoint_dir/last.pt`` when it exists (a finished run only predicts).
    Raises :class:`TrainingCancelled` when ``should_stop()`` says so.
    """
    with _deterministic_algorithms():
        return _train_fold(
            config,
            Path(export_root),
            outer_fold,
            checkpoint_dir=Path(checkpoint_dir),
            on_epoch=on_epoch,
            should_stop=should_stop,
            progress=progress,
        )


@contextmanager
def _deterministic_algorithms() -> Iterator[None]:
    """Deterministic kernels where PyTorch has them (a warning where not), restored after."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def _train_fold(
    config: TrainConfig,
    export_root: Path,
    outer_fold: int,
    *,
    checkpoint_dir: Path,
    on_epoch: Callable[[EpochLog], None] | None,
    should_stop: Callable[[], bool] | None,
    progress: bool,
) -> FoldResult:
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(config.device)
    seed = derive_seed(config.seed, outer_fold)
    split = read_fold(export_root, outer_fold)
    augment = Augment() if config.augment else None
    train_set = _dataset(config, export_root, split.train, augment=augment, seed=seed)
    val_set = _dataset(config, export_root, split.val)
    sampler = (
        fair_sampler(train_set.modes, seed=seed)
        if config.fair_sampling
        else shuffle_sampler(len(train_set), seed=seed)
    )
    train_loader = _loader(config, train_set, sampler=sampler)
    val_loader = _loader(config, val_set)

    torch.manual_seed(seed)
    model = _build(config, train_set).to(device)
    optimizer = make_optimizer(config, model)
    loss_fn = get_loss(config.loss)
    checkpoint_path = checkpoint_dir / "last.pt"
    state = _RunState()
    if checkpoint_path.exists():
        state = _resume(checkpoint_path, config, model, optimizer)

    with tqdm(
        total=config.epochs, initial=state.epoch, disable=not progress, desc=fold_label(outer_fold)
    ) as bar:
        while not _finished(config, state):
            epoch = state.epoch + 1
            started = time.perf_counter()
            sampler.set_epoch(epoch)
            train_set.set_epoch(epoch)
            train_loss = _train_one_epoch(
                model, train_loader, optimizer, loss_fn, device, should_stop
            )
            if train_loss is None:  # should_stop() during the epoch: resume redoes it
                raise TrainingCancelled(outer_fold, state.epoch)

            val = _predict_loader(model, val_loader, device)
            val_loss = float(
                loss_fn(torch.from_numpy(val.probabilities), torch.from_numpy(val_set.targets))
            )
            is_best = state.record_epoch(epoch, val_loss, model)
            log = EpochLog(
                outer_fold=outer_fold,
                epoch=epoch,
                epochs=config.epochs,
                train_loss=train_loss,
                val_loss=val_loss,
                val_metrics=evaluate_distributions(val_set.targets, val.probabilities),
                best_epoch=state.best_epoch,
                is_best=is_best,
                finished=_finished(config, state),
                seconds=time.perf_counter() - started,
            )
            state.logs.append(log)
            _save_checkpoint(checkpoint_path, config, model, optimizer, state)
            bar.update(1)
            bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}", best=state.best_epoch)
            if on_epoch is not None:
                on_epoch(log)
            if not log.finished and should_stop is not None and should_stop():
                raise TrainingCancelled(outer_fold, epoch)

    # The kept epoch predicts the test fold, once.
    model.load_state_dict(state.best_model)
    test_set = _dataset(config, export_root, split.test)
    test = _predict_loader(model, _loader(config, test_set), device)
    model_path = checkpoint_dir / "model.pt"
    save_model(model_path, model, config=config, outer_fold=outer_fold, best_epoch=state.best_epoch)
    return FoldResult(
        outer_fold=outer_fold,
        best_epoch=state.best_epoch,
        epochs_run=state.epoch,
        stopped_early=state.epoch < config.epochs,
        test_metrics=evaluate_distributions(test_set.targets, test.probabilities),
        predictions=_by_clip(test.clip_ids, test.probabilities),
        targets=_by_clip(test.clip_ids, test_set.targets),
        features=_by_clip(test.clip_ids, test.features),
        logs=list(state.logs),
        model_path=str(model_path),
        trained_pixel_sizes=model.trained_pixel_sizes,
        test_pixel_sizes={
            c: float(p) for c, p in zip(test_set.clip_ids, test_set.pixel_sizes, strict=True)
        },
    )


def _train_one_epoch(
    model: GradeDistributionModel,
    loader: DataLoader[ClipItem],
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    device: torch.device,
    should_stop: Callable[[], bool] | None,
) -> float | None:
    """One pass over ``loader``: the mean training loss per clip, None if stopped midway."""
    model.train()
    total, count = 0.0, 0
    batch: ClipBatch
    for batch in loader:
        if should_stop is not None and should_stop():
            return None
        x = batch["frames"].to(device)  # (B, T, 1, H, W)
        kinematics = batch["kinematics"].to(device)  # (B, k)
        p = batch["target"].to(device)  # (B, 5)
        morphometry = _morphometry(batch, device)  # (B, K) or None
        q = model.frame_probabilities(x, kinematics, morphometry)  # (B, F, 5): F = ResNet's frames
        loss = loss_fn(q.flatten(0, 1), p.unsqueeze(1).expand_as(q).flatten(0, 1))
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"the training loss became {loss.item()}: lower the learning rate"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(p)
        count += len(p)
    return total / count


@torch.no_grad()
def _predict_loader(
    model: GradeDistributionModel, loader: DataLoader[ClipItem], device: torch.device
) -> _Predictions:
    model.eval()
    clip_ids: list[str] = []
    probabilities, features = [], []
    batch: ClipBatch
    for batch in loader:
        q, f = model.predict_with_features(
            batch["frames"].to(device), batch["kinematics"].to(device), _morphometry(batch, device)
        )
        clip_ids.extend(batch["clip_id"])
        probabilities.append(q.double().cpu().numpy())
        features.append(f.float().cpu().numpy())
    return _Predictions(clip_ids, np.concatenate(probabilities), np.concatenate(features))


def _morphometry(batch: ClipBatch, device: torch.device) -> torch.Tensor | None:
    """The batch's morphometry, measured on the unaugmented frames by the dataset (None when
    the run does not use it)."""
    morphometry = batch.get("morphometry")
    return None if morphometry is None else morphometry.to(device)


def _finished(config: TrainConfig, state: _RunState) -> bool:
    patience = config.early_stopping_patience
    return state.epoch >= config.epochs or (
        patience is not None and state.epochs_without_improvement >= patience
    )


def _dataset(
    config: TrainConfig,
    root: Path,
    clip_ids: Sequence[str],
    *,
    augment: Augment | None = None,
    seed: int = 0,
) -> ExportDataset:
    return ExportDataset(
        root,
        clip_ids=clip_ids,
        frames=config.frames,
        augment=augment,
        kinematics_features=config.kinematics_features,
        seed=seed,
        morphometry=bool(config.morphometry),
    )


def _loader(
    config: TrainConfig, dataset: ExportDataset, *, sampler: Any = None
) -> DataLoader[ClipItem]:
    return DataLoader(
        dataset,
        batch_size=config.resolved_batch_size,
        collate_fn=collate_clips,
        sampler=sampler,  # None: the dataset's order (evaluation)
        num_workers=config.num_workers,
        pin_memory=config.device.startswith("cuda"),
    )


def _build(config: TrainConfig, train_set: ExportDataset) -> GradeDistributionModel:
    """A fresh model for ``config``; the kinematics' and morphometry's standardisation and the
    head's starting distribution come from the inner training split ``train_set`` (never val
    or test clips)."""
    shift, scale = None, kinematics_scales(config.kinematics_features)
    if config.standardise_kinematics:
        shift, scale = kinematics_standardisation(train_set.kinematics, config.kinematics_features)
    morph_shift = morph_scale = None
    if train_set.morphometry is not None:
        morph_shift, morph_scale = morphometry_standardisation(train_set.morphometry)
    model = build_model(
        backbone=config.backbone,
        preset=config.preset,
        n_kinematics_features=len(config.kinematics_features),
        kinematics_scale=scale,
        kinematics_shift=shift,
        morphometry_shift=morph_shift,
        morphometry_scale=morph_scale,
        head_hidden=int(config.head_hidden or 0),
        head_encoder=dict(HEAD_ENCODER_LAYOUT) if config.head_encoder else None,
        pretrained=Path(config.pretrained) if config.pretrained else None,
    )
    if config.init_head:
        model.init_head(train_set.targets.mean(axis=0))
    model.trained_pixel_sizes = train_set.pixel_size_summary()
    return model


def make_optimizer(config: TrainConfig, model: GradeDistributionModel) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's), Adam or AdamW, with the config's lr and weight decay;
    the head's parameters at ``lr * head_lr_scale``."""
    head = {id(p) for p in model.head_parameters()}
    params = [
        {"params": [p for p in model.parameters() if id(p) not in head], "lr": config.lr},
        {"params": model.head_parameters(), "lr": config.lr * config.head_lr_scale},
    ]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    optimizer_class = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return optimizer_class(params, lr=config.lr, weight_decay=config.weight_decay)


def _by_clip(clip_ids: Sequence[str], rows: np.ndarray) -> dict[str, list[float]]:
    return {clip_id: [float(x) for x in row] for clip_id, row in zip(clip_ids, rows, strict=True)}


# --------------------------------------------------------------------------------------------
# Checkpoints


def _atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file in the same directory, then rename over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save_checkpoint(
    path: Path,
    config: TrainConfig,
    model: GradeDistributionModel,
    optimizer: torch.optim.Optimizer,
    state: _RunState,
) -> None:
    _atomic_save(
        {
            "format": CHECKPOINT_FORMAT,
            "config": config.to_dict(),
            "epoch": state.epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "best_model": state.best_model,
            "best_epoch": state.best_epoch,
            "best_val_loss": state.best_val_loss,
            "epochs_without_improvement": state.epochs_without_improvement,
            "logs": [log.to_dict() for log in state.logs],
            "rng": _rng_state(),
            "pretrained_origin": model.pretrained_origin,
            "trained_pixel_sizes": model.trained_pixel_sizes,
        },
        path,
    )


def _resume(
    path: Path,
    config: TrainConfig,
    model: GradeDistributionModel,
    optimizer: torch.optim.Optimizer,
) -> _RunState:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    _check_format(path, checkpoint, CHECKPOINT_FORMAT, "a training checkpoint")
    stored, current = _ABSENT_IN_OLDER_CONFIGS | checkpoint["config"], config.to_dict()
    changed = sorted(
        k for k in current if stored.get(k) != current[k] and k not in _RESUMABLE_CHANGES
    )
    if changed:
        raise ValueError(
            f"{path} belongs to a run with a different {', '.join(changed)}; "
            "use a new checkpoint directory for a new configuration"
        )
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    _set_rng_state(checkpoint["rng"])
    return _RunState(
        epoch=checkpoint["epoch"],
        best_epoch=checkpoint["best_epoch"],
        best_val_loss=checkpoint["best_val_loss"],
        epochs_without_improvement=checkpoint["epochs_without_improvement"],
        best_model=checkpoint["best_model"],
        logs=[EpochLog(**log) for log in checkpoint["logs"]],
    )


def _check_format(path: Path, loaded: Any, expected: str, what: str) -> None:
    """ValueError unless ``loaded`` (a torch.load result) is of format ``expected``; the
    message names the format found, so an older file says which version it is."""
    found = loaded.get("format") if isinstance(loaded, dict) else None
    if found == expected:
        return
    if isinstance(found, str) and found.split("/")[0] == expected.split("/")[0]:
        raise ValueError(
            f"{path} is {what} of format {found}; this version reads only {expected} "
            f"(format 2 names the model's input kinematics, format 1 called it speed). "
            f"Train the model again; no converter is provided."
        )
    raise ValueError(f"{path} is not {what} (format {found!r}, expected {expected})")


def save_model(
    path: Path,
    model: GradeDistributionModel,
    *,
    config: TrainConfig,
    outer_fold: int | None = None,
    best_epoch: int | None = None,
) -> None:
    """Save ``model`` with everything needed to rebuild it (atomically), and where its
    pretrained weights came from (``pretrained_origin``: file name, sha256 and, for a head
    encoder, what it was trained on; None when it started from scratch) and the pixel sizes of
    its training clips (``trained_pixel_sizes``: range, median, count, how many defaulted)."""
    _atomic_save(
        {
            "format": MODEL_FORMAT,
            "model": model.state_dict(),
            "model_kwargs": model.describe(),
            "config": config.to_dict(),
            "outer_fold": outer_fold,
            "best_epoch": best_epoch,
            "pretrained_origin": model.pretrained_origin,
            "trained_pixel_sizes": model.trained_pixel_sizes,
        },
        Path(path),
    )


def load_model(path: Path, *, device: str = "cpu") -> tuple[GradeDistributionModel, TrainConfig]:
    """A model saved by :func:`save_model` (in eval mode) and the config it was trained with."""
    saved = torch.load(path, map_location=device, weights_only=True)
    _check_format(path, saved, MODEL_FORMAT, "a saved grade-distribution model")
    model = GradeDistributionModel(**saved["model_kwargs"])
    model.load_state_dict(saved["model"])
    model.pretrained_origin = saved.get("pretrained_origin")
    model.trained_pixel_sizes = saved.get("trained_pixel_sizes")
    return model.to(device).eval(), TrainConfig.from_dict(saved["config"])


# --------------------------------------------------------------------------------------------
# Cross-validation and prediction


def cross_validate(
    config: TrainConfig,
    export_root: Path,
    *,
    checkpoint_root: Path,
    folds: Sequence[int] | None = None,
    on_epoch: Callable[[EpochLog], None] | None = None,
    on_fold: Callable[[FoldResult], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress: bool = False,
) -> CrossValidationResult:
    """:func:`train_fold` on every outer fold (checkpoints in ``checkpoint_root/fold_<k>``).

    A fold already finished in an earlier, interrupted call is not trained again.
    """
    folds = list_folds(export_root) if folds is None else list(folds)
    results = []
    for outer_fold in folds:
        result = train_fold(
            config,
            export_root,
            outer_fold,
            checkpoint_dir=Path(checkpoint_root) / f"fold_{outer_fold}",
            on_epoch=on_epoch,
            should_stop=should_stop,
            progress=progress,
        )
        results.append(result)
        if on_fold is not None:
            on_fold(result)
    return summarise_folds(results)


def summarise_folds(results: Sequence[FoldResult]) -> CrossValidationResult:
    """Mean and std over folds of every scalar test metric, and the pooled out-of-fold scores."""
    scalar_keys = [k for k, v in results[0].test_metrics.items() if isinstance(v, int | float)]
    table = np.array([[r.test_metrics[k] for k in scalar_keys] for r in results], dtype=float)
    std = table.std(axis=0, ddof=1) if len(results) > 1 else np.zeros(len(scalar_keys))
    predictions = {k: v for r in results for k, v in r.predictions.items()}
    targets = {k: v for r in results for k, v in r.targets.items()}
    clip_ids = sorted(predictions)
    pooled = evaluate_distributions(
        np.array([targets[c] for c in clip_ids]), np.array([predictions[c] for c in clip_ids])
    )
    return CrossValidationResult(
        folds=list(results),
        mean={k: float(m) for k, m in zip(scalar_keys, table.mean(axis=0), strict=True)},
        std={k: float(s) for k, s in zip(scalar_keys, std, strict=True)},
        pooled_metrics=pooled,
        predictions=predictions,
    )


@torch.no_grad()
def predict(
    model: GradeDistributionModel,
    frames: np.ndarray | torch.Tensor,
    kinematics: np.ndarray | torch.Tensor,
    *,
    batch_size: int = 8,
    pixel_size_um: float | Sequence[float] | np.ndarray = DEFAULT_PIXEL_SIZE_UM,
) -> np.ndarray:
    """Grade distributions (N, 5) of new clips.

    frames: (T, H, W) for one clip or (N, T, H, W) / (N, T, 1, H, W); uint8 (0..255) or float
    in [0, 1]. kinematics: (k,) or (N, k) in the units of ``annotation.ingest.kinematics``, in the
    order the model was trained with (``TrainConfig.kinematics_features``). A model trained with
    morphometry measures it on these frames, as training measured it on the stored ones, at
    ``pixel_size_um`` (the clips' µm per px: one for all, or one per clip).
    """
    x = torch.as_tensor(frames)
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    if x.ndim == 3:
        x = x.unsqueeze(0)  # one clip
    if x.ndim == 4:
        x = x.unsqueeze(2)  # grey channel
    v = torch.as_tensor(kinematics, dtype=torch.float32).reshape(len(x), -1)
    sizes = np.broadcast_to(np.asarray(pixel_size_um, dtype=np.float64), (len(x),))
    morphometry = None
    if model.uses_morphometry:
        morphometry = torch.from_numpy(
            clips_morphometry(x[:, :, 0].cpu().numpy(), pixel_size_um=sizes)
        )
    model.eval()
    device = next(model.parameters()).device
    out = [
        model(
            x[i : i + batch_size].to(device),
            v[i : i + batch_size].to(device),
            None if morphometry is None else morphometry[i : i + batch_size].to(device),
        )
        .double()
        .cpu()
        for i in range(0, len(x), batch_size)
    ]
    return torch.cat(out).numpy()
