"""A small CNN that encodes the sperm head at native resolution, and its pretraining on
labelled head images.

The grade model's head view (the centre of the tracked crop, where the head lies) goes
through :class:`HeadEncoder` when a run switches ``head_encoder`` on
(:mod:`modeling.ml.model`): three stages of two 3x3 convolutions (BatchNorm, ReLU), 2x2
max-pooling between them, then the mean and the maximum over the image of the last stage's
channels. About 51k parameters at the default widths (16, 32, 48): a few ms per head on a CPU
core. The network is fully convolutional, so it takes heads of any size; each image is
standardised first (its own median and spread), so the brightness and contrast of another
microscope do not shift the features.

Pretraining (``python manage.py pretrain_head DIR --out FILE``) fits the encoder and one
linear classifier per label to a directory of head crops (:func:`read_head_dir`), with
augmentation (rotations by 90 degrees, mirrors, small continuous rotations and shifts,
brightness and contrast), class-balanced cross-entropy (each class weighted by the inverse of
its frequency), and early stopping on a seeded stratified validation split. The file it
writes (:func:`save_encoder`, format ``HEAD_ENCODER_FORMAT``) holds the encoder's weights,
its layout and a record of what it was trained on; ``--pretrained FILE`` loads it into a grade
model's encoder (:func:`modeling.ml.model.load_pretrained`), never from the network.
``val_index`` (with :func:`fold_indices`) trains one model of a cross-fitted ensemble: model k
stops early on fold k and predicts it, so every head gets an out-of-fold prediction.

A head crop's orientation carries no label: with ``tta`` the features (:func:`encode_heads`)
and the predictions (:func:`classifier_scores`) are averaged over the eight rotations by 90
degrees and mirrors (:func:`dihedral_views`), which makes them exactly orientation-free.

Operating points. Every classifier here weighs the classes equally, so its own decisions sit
near the balanced-accuracy optimum and give up plain accuracy on an imbalanced label (MHSMA:
73-87 % normal). :func:`choose_threshold` picks the decision threshold of a binary label that
maximises accuracy or balanced accuracy on out-of-fold predictions; :func:`probe_scores`
reports both, each test fold's threshold chosen on an inner cross-validation of its training
folds.

Plain PyTorch/numpy/OpenCV, no Django.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from annotation.ingest.scale import DEFAULT_PIXEL_SIZE_UM
from modeling.ml.morphometry import (
    MORPHOMETRY_FEATURES,
    NO_HEAD,
    frame_morphometry,
)

HEAD_ENCODER_FORMAT = "mersv-head-encoder/1"
LABELS_FILE = "labels.csv"
# Bump when the encoder's layout or its training changes what a file means.
CODE_VERSION = "head-encoder/1"
IMAGE_SUFFIXES = (".png",)


# --------------------------------------------------------------------------------------------
# The encoder


@dataclass(frozen=True)
class HeadEncoderConfig:
    """The encoder's layout: ``widths`` channels per stage (two 3x3 convolutions each)."""

    widths: tuple[int, ...] = (16, 32, 48)

    def __post_init__(self) -> None:
        if not self.widths or any(not (isinstance(w, int) and 1 <= w <= 512) for w in self.widths):
            raise ValueError(f"head encoder widths must be 1..512 channels, got {self.widths}")

    @property
    def out_features(self) -> int:
        return 2 * self.widths[-1]  # mean and max pooling

    def to_dict(self) -> dict[str, Any]:
        return {"widths": list(self.widths)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> HeadEncoderConfig:
        return cls(widths=tuple(int(w) for w in values["widths"]))


def standardise_images(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) grey values -> each image minus its median, over its spread (the mean
    absolute deviation from the median, at least 1e-2 of the grey range)."""
    flat = x.flatten(1)
    median = flat.median(dim=1).values.view(-1, 1, 1, 1)
    spread = (flat - median.flatten(1)).abs().mean(dim=1).clamp_min(1e-2).view(-1, 1, 1, 1)
    return (x - median) / spread


class HeadEncoder(nn.Module):
    """(N, 1, H, W) grey heads in [0, 1] -> (N, out_features) features."""

    def __init__(self, config: HeadEncoderConfig | None = None) -> None:
        super().__init__()
        self.config = config or HeadEncoderConfig()
        layers: list[nn.Module] = []
        in_width = 1
        for i, width in enumerate(self.config.widths):
            if i:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            for _ in range(2):
                layers += [
                    nn.Conv2d(in_width, width, 3, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                ]
                in_width = width
        self.stages = nn.Sequential(*layers)
        self.out_features = self.config.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"heads must have shape (N, 1, H, W), got {tuple(x.shape)}")
        y = self.stages(standardise_images(x))  # (N, C, h, w)
        return torch.cat([y.mean(dim=(2, 3)), y.amax(dim=(2, 3))], dim=1)  # (N, 2C)


# --------------------------------------------------------------------------------------------
# Labelled head directories


@dataclass(frozen=True)
class HeadSet:
    """A labelled head directory read by :func:`read_head_dir`."""

    root: Path
    images: np.ndarray  # (N, H, W) float32 in [0, 1]
    labels: dict[str, np.ndarray]  # label name -> (N,) int class indices
    classes: dict[str, list[str]]  # label name -> the class names, index order
    labels_sha256: str

    def __len__(self) -> int:
        return len(self.images)

    def counts(self) -> dict[str, dict[str, int]]:
        return {
            name: {
                cls: int((self.labels[name] == i).sum()) for i, cls in enumerate(self.classes[name])
            }
            for name in self.labels
        }


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _grey01(image: np.ndarray, where: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        image = cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2GRAY)
    if image.ndim != 2 or min(image.shape) < 8:
        raise ValueError(f"{where} must be a grey image of at least 8 x 8 px, got {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    values = image.astype(np.float32)
    if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
        raise ValueError(f"{where}: float images must hold values in [0, 1]")
    return values


def read_head_dir(
    root: Path, *, labels: Sequence[str] | None = None, size: int | None = None
) -> HeadSet:
    """The head crops and labels of ``root``.

    ``root/labels.csv`` has an ``image`` column and one column per label (binary or
    categorical: any values, at least two classes each, none blank). ``image`` names PNG files
    relative to ``root`` (``heads/0001.png``) or, for a stack, ``FILE.npy:INDEX`` (an (N, H, W)
    array; uint8, uint16 or floats in [0, 1]). All images must have one size, or ``size``
    resizes each to ``size`` x ``size`` (area interpolation when shrinking). ``labels``: the
    columns to use (default: all but ``image``). Every problem is a ValueError or
    FileNotFoundError that says what was wrong.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    table_path = root / LABELS_FILE
    if not table_path.is_file():
        raise FileNotFoundError(
            f"{table_path} is missing: a head directory needs a labels.csv with an 'image' "
            "column and one column per label"
        )
    try:
        table = pd.read_csv(table_path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{table_path} is not a readable CSV file: {exc}") from exc
    if "image" not in table.columns:
        raise ValueError(f"{table_path} has no 'image' column (columns: {list(table.columns)})")
    names = [c for c in table.columns if c != "image"] if labels is None else list(labels)
    unknown = [n for n in names if n not in table.columns or n == "image"]
    if unknown:
        raise ValueError(f"{table_path} has no label column(s) {unknown}")
    if not names:
        raise ValueError(f"{table_path} has no label column beside 'image'")
    if table.empty:
        raise ValueError(f"{table_path} lists no images")
    label_arrays, classes = {}, {}
    for name in names:
        values = table[name].str.strip()
        blank = np.flatnonzero(values == "")
        if len(blank):
            raise ValueError(
                f"{table_path}: label {name!r} is blank in {len(blank)} row(s), e.g. row "
                f"{int(blank[0]) + 2}"
            )
        kinds = sorted(values.unique(), key=_class_key)
        if len(kinds) < 2:
            raise ValueError(
                f"{table_path}: label {name!r} has only one class ({kinds[0]!r}); a label "
                "needs at least two to learn from"
            )
        index = {k: i for i, k in enumerate(kinds)}
        label_arrays[name] = values.map(index).to_numpy(dtype=np.int64)
        classes[name] = kinds
    images = _read_images(root, list(table["image"]), size=size)
    return HeadSet(root, images, label_arrays, classes, file_sha256(table_path))


def _class_key(value: str) -> tuple[int, float, str]:
    """Numbers in numeric order (0 before 1 before 10), then words."""
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def _read_images(root: Path, references: list[str], *, size: int | None) -> np.ndarray:
    stacks: dict[str, np.ndarray] = {}
    images = []
    resolved_root = root.resolve()
    for row, reference in enumerate(references, start=2):
        where = f"{root / LABELS_FILE} row {row} ({reference!r})"
        name, _, index_text = reference.strip().partition(":")
        # Inside the directory (a link in it may point elsewhere: data kept read-only).
        path = Path(os.path.normpath(root.resolve() / name))
        if resolved_root not in path.parents:
            raise ValueError(f"{where}: images must lie inside {root}")
        if not path.is_file():
            raise FileNotFoundError(f"{where}: no such image file {path}")
        if path.suffix.lower() == ".npy":
            if name not in stacks:
                stack = np.load(path, allow_pickle=False)
                if stack.ndim != 3:
                    raise ValueError(f"{path} must hold an (N, H, W) stack, got {stack.shape}")
                stacks[name] = stack
            stack = stacks[name]
            if not index_text.isdigit() or int(index_text) >= len(stack):
                raise ValueError(
                    f"{where}: a stack image is FILE.npy:INDEX with 0 <= INDEX < {len(stack)}"
                )
            image = _grey01(stack[int(index_text)], where)
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if raw is None:
                raise ValueError(f"{where}: {path} is not a readable PNG image")
            image = _grey01(raw, where)
        else:
            raise ValueError(f"{where}: images must be .png files or FILE.npy:INDEX")
        if size is not None and image.shape != (size, size):
            shrink = min(image.shape) > size
            image = cv2.resize(
                image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
            )
        images.append(image)
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        raise ValueError(
            f"the images of {root} have different sizes ({sorted(shapes)[:4]}); pass a size to "
            "resize them all"
        )
    return np.stack(images).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Augmentation


def augment_heads(
    x: torch.Tensor, *, generator: torch.Generator, max_angle_deg: float = 15.0
) -> torch.Tensor:
    """(N, 1, H, W) in [0, 1] -> the same, each image turned by a multiple of 90 degrees,
    mirrored with probability 1/2 (both exact), then rotated by up to ``max_angle_deg``,
    shifted by up to 1.5 px (borders reflected), and its contrast and brightness scaled by
    up to 15 %."""
    n = len(x)
    quarter = torch.randint(0, 4, (n,), generator=generator)
    mirror = torch.rand(n, generator=generator) < 0.5
    out = torch.empty_like(x)
    for k in range(4):
        for flip in (False, True):
            chosen = (quarter == k) & (mirror == flip)
            if chosen.any():
                part = torch.rot90(x[chosen], k, dims=(2, 3))
                out[chosen] = part.flip(3) if flip else part
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(max_angle_deg)
    h, w = x.shape[2:]
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * 1.5
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack(
        [
            torch.stack([cos, -sin, 2 * shift[:, 0] / w], dim=1),
            torch.stack([sin, cos, 2 * shift[:, 1] / h], dim=1),
        ],
        dim=1,
    )  # (N, 2, 3)
    grid = F.affine_grid(theta, list(out.shape), align_corners=False)
    out = F.grid_sample(out, grid, padding_mode="reflection", align_corners=False)
    contrast = 1 + (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * 0.15
    brightness = 1 + (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * 0.15
    mean = out.mean(dim=(2, 3), keepdim=True)
    return (((out - mean) * contrast + mean) * brightness).clamp(0.0, 1.0)


# --------------------------------------------------------------------------------------------
# Pretraining


@dataclass(frozen=True)
class PretrainConfig:
    """How :func:`pretrain_encoder` trains (the pretrain_head command's flags)."""

    epochs: int = 60
    patience: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.2
    seed: int = 0
    augment: bool = True
    widths: tuple[int, ...] = (16, 32, 48)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise ValueError("epochs, batch_size and patience must be at least 1")
        if not 0 < self.val_fraction < 1:
            raise ValueError(
                f"val_fraction must lie strictly between 0 and 1, not {self.val_fraction}"
            )
        if not self.lr > 0 or self.weight_decay < 0 or self.seed < 0:
            raise ValueError("lr must be positive, weight_decay and seed at least 0")


@dataclass
class PretrainResult:
    encoder: HeadEncoder
    record: dict[str, Any]  # what the file records (see pretrain_encoder)
    val_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    classifier: nn.Module | None = None  # the encoder with its per-label linear layers

    def predict_scores(self, images: np.ndarray, *, tta: bool = False) -> dict[str, np.ndarray]:
        """Class scores of every label, (N, k) each, for heads (N, H, W) in [0, 1]: the
        logits, or with ``tta`` the log of the class probabilities averaged over the eight
        rotations and mirrors of each head (:func:`dihedral_views`)."""
        assert self.classifier is not None
        return classifier_scores(self.classifier, images, tta=tta)


@torch.no_grad()
def classifier_scores(
    classifier: nn.Module, images: np.ndarray, *, tta: bool = False, batch_size: int = 256
) -> dict[str, np.ndarray]:
    """See :meth:`PretrainResult.predict_scores`."""
    classifier.eval()
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).unsqueeze(1)
    parts: list[dict[str, torch.Tensor]] = []
    for i in range(0, len(x), batch_size):
        batch = x[i : i + batch_size]
        if not tta:
            parts.append(classifier(batch))
            continue
        views = [classifier(view) for view in dihedral_views(batch)]  # 8 x name -> (n, k)
        parts.append(
            {
                name: torch.stack([v[name].softmax(dim=1) for v in views]).mean(dim=0).log()
                for name in views[0]
            }
        )
    return {name: torch.cat([p[name] for p in parts]).numpy() for name in parts[0]}


def dihedral_views(x: torch.Tensor) -> list[torch.Tensor]:
    """The eight rotations by multiples of 90 degrees and mirrors of heads (N, 1, H, W): a
    head crop's orientation carries no label, so averaging over them (test-time
    augmentation) gives predictions and features that do not depend on it."""
    views = []
    for quarter in range(4):
        turned = torch.rot90(x, quarter, dims=(2, 3))
        views += [turned, turned.flip(3)]
    return views


class HeadClassifier(nn.Module):
    """The encoder and one linear layer per label (pretraining only)."""

    def __init__(self, encoder: HeadEncoder, n_classes: dict[str, int]) -> None:
        super().__init__()
        self.encoder = encoder
        self.heads = nn.ModuleDict(
            {name: nn.Linear(encoder.out_features, k) for name, k in n_classes.items()}
        )
        self.dropout = nn.Dropout(0.2)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.dropout(self.encoder(x))  # (N, D)
        return {name: head(z) for name, head in self.heads.items()}  # name -> (N, k) logits


def stratified_split(y: np.ndarray, *, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices: ``fraction`` of every class of ``y`` in val (at least one item
    of a class with two or more), seeded."""
    rng = np.random.default_rng(seed)
    val: list[int] = []
    for cls in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == cls))
        if len(members) >= 2:
            val.extend(members[: max(1, round(fraction * len(members)))].tolist())
    val_index = np.array(sorted(val), dtype=np.int64)
    train_index = np.setdiff1d(np.arange(len(y)), val_index)
    return train_index, val_index


def fold_indices(labels: dict[str, np.ndarray], *, folds: int, seed: int) -> list[np.ndarray]:
    """The val indices of ``folds`` disjoint folds covering every head once, stratified on the
    labels' classes (as :func:`stratified_split`), seeded: fold k trains on the others."""
    from sklearn.model_selection import StratifiedKFold

    strata = _strata(labels)
    if folds < 2:
        raise ValueError(f"a cross-fitted ensemble needs at least 2 folds, not {folds}")
    # Strata smaller than the fold count would warn and still be spread; pool them instead.
    _, inverse, counts = np.unique(strata, return_inverse=True, return_counts=True)
    strata = np.where(counts[inverse] >= folds, strata, -1)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [np.sort(val) for _, val in splitter.split(np.zeros(len(strata)), strata)]


def _strata(labels: dict[str, np.ndarray]) -> np.ndarray:
    """One stratum per combination of the labels' classes (rare combinations pooled into
    their first label's class), so val holds every class of every label where it can."""
    combined = np.zeros(len(next(iter(labels.values()))), dtype=np.int64)
    for y in labels.values():
        combined = combined * (int(y.max()) + 1) + y
    _, inverse, counts = np.unique(combined, return_inverse=True, return_counts=True)
    first = next(iter(labels.values()))
    return np.where(counts[inverse] >= 5, combined + int(first.max()) + 1, first)


def classification_metrics(y: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy and AUC (one-vs-rest macro for more than two classes;
    NaN when ``y`` holds one class) of class ``scores`` (N, k) against ``y`` (N,)."""
    y = np.asarray(y)
    predicted = scores.argmax(axis=1)
    k = scores.shape[1]
    auc = float("nan")
    present = np.unique(y)
    if len(present) == k and k == 2:
        auc = float(roc_auc_score(y, scores[:, 1]))
    elif len(present) == k:
        probabilities = np.exp(scores - scores.max(axis=1, keepdims=True))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        auc = float(roc_auc_score(y, probabilities, multi_class="ovr", average="macro"))
    return {
        "accuracy": float((predicted == y).mean()),
        "balanced_accuracy": float(balanced_accuracy_score(y, predicted)),
        "auc": auc,
    }


def pretrain_encoder(
    heads: HeadSet,
    config: PretrainConfig,
    *,
    progress: bool = False,
    val_index: np.ndarray | None = None,
) -> PretrainResult:
    """Train a fresh encoder (and one linear classifier per label, then dropped) on ``heads``.

    Val: ``config.val_fraction`` of the heads, stratified on the labels' classes, seeded; or
    the heads ``val_index`` names (one fold of a cross-fitted ensemble, :func:`fold_indices`).
    Loss: the sum over labels of the cross-entropy weighted by inverse class frequency (on
    the training split), so a rare abnormal class counts as much as the common one. The
    epoch with the lowest val loss is kept; training stops ``config.patience`` epochs after
    it. The record says what the encoder was trained on and how it did on val.
    """
    torch.manual_seed(config.seed)
    encoder = HeadEncoder(HeadEncoderConfig(widths=config.widths))
    n_classes = {name: len(cls) for name, cls in heads.classes.items()}
    model = HeadClassifier(encoder, n_classes)
    if val_index is None:
        train_index, val_index = stratified_split(
            _strata(heads.labels), fraction=config.val_fraction, seed=config.seed
        )
    else:
        val_index = np.unique(np.asarray(val_index, dtype=np.int64))
        if len(val_index) and (val_index[0] < 0 or val_index[-1] >= len(heads)):
            raise ValueError(f"val_index must name heads 0..{len(heads) - 1}")
        train_index = np.setdiff1d(np.arange(len(heads)), val_index)
    if len(train_index) < 2 or len(val_index) < 1:
        raise ValueError(f"{heads.root} holds too few heads ({len(heads)}) for a validation split")
    x = torch.from_numpy(heads.images).unsqueeze(1)  # (N, 1, H, W)
    y = {name: torch.as_tensor(np.array(labels)) for name, labels in heads.labels.items()}
    weights = {}
    for name, labels in heads.labels.items():
        counts = np.bincount(labels[train_index], minlength=n_classes[name]).astype(np.float64)
        w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / n_classes[name], 0.0)
        weights[name] = torch.tensor(w, dtype=torch.float32)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )

    def loss_of(logits: dict[str, torch.Tensor], index: torch.Tensor) -> torch.Tensor:
        return sum(  # type: ignore[return-value]
            F.cross_entropy(logits[name], y[name][index], weight=weights[name]) for name in logits
        )

    best_loss, best_epoch, best_state = float("inf"), 0, None
    bar = tqdm(total=config.epochs, desc="pretrain head", unit="epoch", disable=not progress)
    epoch = 0
    val_tensor = torch.from_numpy(val_index)
    for epoch in range(1, config.epochs + 1):
        model.train()
        generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        order = torch.from_numpy(train_index)[torch.randperm(len(train_index), generator=generator)]
        for start in range(0, len(order), config.batch_size):
            index = order[start : start + config.batch_size]
            if len(index) < 2:  # BatchNorm needs two heads
                continue
            batch = x[index]
            if config.augment:
                batch = augment_heads(batch, generator=generator)
            loss = loss_of(model(batch), index)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            val_loss = float(loss_of(model(x[val_tensor]), val_tensor))
        if val_loss < best_loss:
            best_loss, best_epoch = val_loss, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        bar.update(1)
        bar.set_postfix(val=f"{val_loss:.4f}", best=best_epoch)
        if epoch - best_epoch >= config.patience:
            break
    bar.close()
    assert best_state is not None  # the first epoch's val loss is finite or training failed
    model.load_state_dict(best_state)
    model.eval()
    with torch.no_grad():
        logits = model(x[val_tensor])
    val_metrics = {
        name: classification_metrics(heads.labels[name][val_index], logits[name].numpy())
        for name in logits
    }
    record = {
        "directory": heads.root.resolve().name,
        "labels_sha256": heads.labels_sha256,
        "labels": {name: list(cls) for name, cls in heads.classes.items()},
        "counts": heads.counts(),
        "n_images": len(heads),
        "n_train": len(train_index),
        "n_val": len(val_index),
        "image_size": list(heads.images.shape[1:]),
        "epochs_run": epoch,
        "best_epoch": best_epoch,
        "val_loss": best_loss,
        "val_metrics": val_metrics,
        "config": {**asdict(config), "widths": list(config.widths)},
        "code_version": CODE_VERSION,
    }
    return PretrainResult(encoder=encoder, record=record, val_metrics=val_metrics, classifier=model)


# --------------------------------------------------------------------------------------------
# Files


def save_encoder(path: Path, encoder: HeadEncoder, record: dict[str, Any]) -> None:
    """Write the encoder file (a temporary file renamed at the end: never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": HEAD_ENCODER_FORMAT,
        "encoder": encoder.state_dict(),
        "encoder_config": encoder.config.to_dict(),
        "trained_on": record,
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def is_encoder_file(loaded: Any) -> bool:
    return isinstance(loaded, dict) and loaded.get("format") == HEAD_ENCODER_FORMAT


def read_encoder_file(path: Path) -> dict[str, Any]:
    """The contents of an encoder file, checked; a ValueError says what it is instead."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"head encoder file not found: {path}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a text file, a truncated file, a pickle of something else
        raise ValueError(f"{path} is not a head encoder file ({exc.__class__.__name__})") from exc
    if not is_encoder_file(loaded):
        found = loaded.get("format") if isinstance(loaded, dict) else None
        raise ValueError(
            f"{path} is not a head encoder file (format {found!r}, expected "
            f"{HEAD_ENCODER_FORMAT}); write one with `python manage.py pretrain_head`"
        )
    return dict(loaded)


def encoder_origin(path: Path, loaded: dict[str, Any]) -> dict[str, Any]:
    """What a grade model's checkpoint records of the encoder file it started from."""
    return {
        "kind": "head_encoder",
        "file": Path(path).name,
        "sha256": file_sha256(Path(path)),
        "trained_on": loaded["trained_on"],
    }


def load_encoder(path: Path) -> tuple[HeadEncoder, dict[str, Any]]:
    """The encoder of a file written by :func:`save_encoder` (eval mode) and its record."""
    loaded = read_encoder_file(path)
    encoder = HeadEncoder(HeadEncoderConfig.from_dict(loaded["encoder_config"]))
    encoder.load_state_dict(loaded["encoder"])
    return encoder.eval(), loaded["trained_on"]


@torch.no_grad()
def encode_heads(
    encoder: HeadEncoder, images: np.ndarray, *, batch_size: int = 256, tta: bool = False
) -> np.ndarray:
    """Features (N, D) float64 of heads (N, H, W) in [0, 1]; with ``tta`` each head's
    features averaged over its eight rotations and mirrors (:func:`dihedral_views`)."""
    encoder.eval()
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).unsqueeze(1)
    rows = []
    for i in range(0, len(x), batch_size):
        batch = x[i : i + batch_size]
        views = dihedral_views(batch) if tta else [batch]
        rows.append(torch.stack([encoder(v) for v in views]).mean(dim=0).double().numpy())
    return np.concatenate(rows) if rows else np.zeros((0, encoder.out_features))


# --------------------------------------------------------------------------------------------
# Linear probes: what features know about a label


def head_morphometry(
    images: np.ndarray, *, pixel_size_um: float = DEFAULT_PIXEL_SIZE_UM
) -> tuple[np.ndarray, int]:
    """The morphometry (:func:`modeling.ml.morphometry.frame_morphometry`) of every head
    (N, H, W), imaged at ``pixel_size_um`` µm/px, as (N, K + 1) features (the last: 1 where a
    head was found; ``NO_HEAD`` values where none), and the number of images where none was
    found."""
    rows, missed = [], 0
    for image in images:
        measured = frame_morphometry(image, pixel_size_um=pixel_size_um)
        if measured is None:
            missed += 1
            rows.append([NO_HEAD[name] for name in MORPHOMETRY_FEATURES] + [0.0])
        else:
            rows.append([measured[name] for name in MORPHOMETRY_FEATURES] + [1.0])
    return np.asarray(rows, dtype=np.float64).reshape(len(images), -1), missed


def fit_probe(features: np.ndarray, y: np.ndarray) -> Any:
    """The linear probe: a logistic regression (C = 1) on features standardised on
    ``features``, classes weighted by inverse frequency, fitted to ``y``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(
        StandardScaler(), LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)
    )
    return probe.fit(features, y)


def probe_probabilities(probe: Any, features: np.ndarray, n_classes: int) -> np.ndarray:
    """(N, n_classes) class probabilities of a fitted probe (0 for a class it never saw)."""
    out = np.zeros((len(features), n_classes))
    out[:, probe.classes_] = probe.predict_proba(features)
    return out


def probe_scores(
    features: np.ndarray, y: np.ndarray, *, folds: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Out-of-fold accuracy, balanced accuracy and AUC of the linear probe (:func:`fit_probe`)
    predicting ``y`` from ``features``, over stratified ``folds``-fold cross-validation
    (seeded), at its own operating point (the most probable class; with balanced class
    weights, near the balanced-accuracy optimum).

    For a binary label also ``operating_points``: the accuracy and balanced accuracy when
    each test fold's decision threshold is the one that maximises plain accuracy
    (``"accuracy"``) or balanced accuracy (``"balanced_accuracy"``) on out-of-fold
    predictions of its training folds (an inner cross-validation, so no fold's threshold
    saw its own labels; :func:`choose_threshold`)."""
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y)
    present = np.bincount(y)
    smallest = int(present[present > 0].min())
    if smallest < folds:
        raise ValueError(
            f"a class has only {smallest} example(s): {folds}-fold cross-validation needs at "
            f"least {folds} of every class (use fewer folds)"
        )
    k = int(y.max()) + 1
    probabilities = np.zeros((len(y), k))
    binary = k == 2
    decided = {objective: np.zeros(len(y), dtype=np.int64) for objective in OPERATING_POINTS}
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(features, y):
        probe = fit_probe(features[train], y[train])
        probabilities[test] = probe_probabilities(probe, features[test], k)
        if binary:
            inner = np.full(len(train), 0.5)
            inner_folds = min(folds, int(np.bincount(y[train], minlength=2).min()))
            if inner_folds >= 2:
                inner_splitter = StratifiedKFold(inner_folds, shuffle=True, random_state=seed)
                for a, b in inner_splitter.split(features[train], y[train]):
                    inner_probe = fit_probe(features[train][a], y[train][a])
                    inner[b] = probe_probabilities(inner_probe, features[train][b], 2)[:, 1]
            for objective in OPERATING_POINTS:
                threshold = choose_threshold(y[train], inner, objective=objective)
                decided[objective][test] = probabilities[test, 1] > threshold
    with np.errstate(divide="ignore"):
        result: dict[str, Any] = classification_metrics(y, np.log(probabilities))
    if binary:
        result["operating_points"] = {
            objective: decision_metrics(y, decided[objective]) for objective in OPERATING_POINTS
        }
    return result


# --------------------------------------------------------------------------------------------
# Operating points: the decision threshold of a binary label

OPERATING_POINTS = ("accuracy", "balanced_accuracy")


def choose_threshold(y: np.ndarray, p: np.ndarray, *, objective: str) -> float:
    """The threshold ``t`` for which deciding class 1 where ``p > t`` maximises ``objective``
    (``"accuracy"`` or ``"balanced_accuracy"``) on labels ``y`` (N,) of 0 and 1 and scores
    ``p`` (N,) (e.g. the probability of class 1); among equally good thresholds the middle
    one. Choose it on data held out from whatever produced ``p`` (out-of-fold predictions),
    then apply it to new heads."""
    if objective not in OPERATING_POINTS:
        raise ValueError(f"objective must be one of {OPERATING_POINTS}, not {objective!r}")
    y = np.asarray(y)
    p = np.asarray(p, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(f"labels {y.shape} and scores {p.shape} must be two equal 1-D arrays")
    if not set(np.unique(y)) <= {0, 1}:
        raise ValueError("a decision threshold needs binary labels (0 and 1)")
    positive, negative = np.sort(p[y == 1]), np.sort(p[y == 0])
    if not len(positive) or not len(negative):
        raise ValueError("a decision threshold needs examples of both classes")
    values = np.unique(p)
    # Below every score (all class 1), between neighbours, at the top (all class 0).
    candidates = np.concatenate(
        [[np.nextafter(values[0], -np.inf)], (values[:-1] + values[1:]) / 2, [values[-1]]]
    )
    true_positive = len(positive) - np.searchsorted(positive, candidates, side="right")
    true_negative = np.searchsorted(negative, candidates, side="right")
    if objective == "accuracy":
        score = (true_positive + true_negative) / len(p)
    else:
        score = (true_positive / len(positive) + true_negative / len(negative)) / 2
    best = np.flatnonzero(score >= score.max() - 1e-12)
    return float(candidates[best[len(best) // 2]])


def decision_metrics(y: np.ndarray, decided: np.ndarray) -> dict[str, float]:
    """Accuracy and balanced accuracy of decided classes (N,) against ``y`` (N,)."""
    y, decided = np.asarray(y), np.asarray(decided)
    return {
        "accuracy": float((decided == y).mean()),
        "balanced_accuracy": float(balanced_accuracy_score(y, decided)),
    }
