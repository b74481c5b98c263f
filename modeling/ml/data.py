"""Reading an exported dataset version for training: clips, folds, augmentation, sampling.

Export layout (written by ``export_dataset``; the columns are the exchange format's,
``annotation.exchange``, and the loader reads only the ones it needs):

    root/distributions.csv  clip_id, p_A..p_E, n, mean, std, mode
    root/clips.csv          clip_id, patient_id, video, fps, x, y, pixel_size_um, and the
                            kinematics (annotation.ingest.kinematics.KINEMATICS_KEYS)
    root/splits.csv         clip_id, fold           (the outer fold where the clip is test)
    root/inner_splits.csv   outer_fold, clip_id, subset   (subset: train or val)
    root/frames/<clip_id>.npy   (T, 150, 150) uint8 grey frames of the tracked crop

Randomness is keyed, not streamed: the augmentation of item i in epoch e is drawn from a
generator seeded with ``derive_seed(seed, e, i)``, and the sampler's order of epoch e from
``derive_seed(seed, e)``. A run is therefore reproducible whatever the number of workers,
and a run resumed at epoch e sees exactly the batches the uninterrupted run would have.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NotRequired, TypedDict

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset, Sampler, default_collate

from annotation.exchange import (
    CLIPS_FILE,
    DISTRIBUTIONS_FILE,
    INNER_SPLIT_COLUMNS,
    INNER_SPLITS_FILE,
    SPLIT_COLUMNS,
    SPLITS_FILE,
    missing_columns,
    names,
)
from annotation.grades import PROB_COLUMNS
from annotation.ingest.scale import DEFAULT_PIXEL_SIZE_UM
from modeling.ml.metrics import grade_mode_index
from modeling.ml.model import DEFAULT_KINEMATICS_FEATURES
from modeling.ml.morphometry import (
    MORPHOMETRY_FEATURES,
    clip_morphometry,
    pixel_size_summary,
)

log = logging.getLogger(__name__)


def derive_seed(*keys: int) -> int:
    """A well-mixed 32-bit seed from integer keys (e.g. run seed, epoch, item)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


# --------------------------------------------------------------------------------------------
# Export tables


def _read_csv(root: Path, name: str, columns: Sequence[str]) -> pd.DataFrame:
    path = root / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: is {root} an exported dataset directory?")
    table = pd.read_csv(path, dtype={"clip_id": str})
    missing = missing_columns(table.columns, columns)
    if missing:
        raise ValueError(f"{path} lacks the column(s) {', '.join(missing)}")
    return table


@dataclass(frozen=True)
class FoldSplit:
    """The clips of one outer fold: inner train and val (for training and model selection)
    and the test fold (only for the final prediction)."""

    outer_fold: int
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]


def fold_label(outer_fold: int) -> str:
    """How people read an outer fold: ``fold 1`` .. ``fold K``. The export numbers folds from
    0 (splits.csv, the ``fold_<k>`` folders, the APIs' keys); every page, figure and message
    counts from 1, so "fold 2/3" and "of fold 2" name the same fold."""
    return f"fold {outer_fold + 1}"


def list_folds(root: Path) -> list[int]:
    """The outer folds of the export, ascending."""
    splits = _read_csv(Path(root), SPLITS_FILE, names(SPLIT_COLUMNS))
    return sorted(int(f) for f in splits["fold"].unique())


def read_fold(root: Path, outer_fold: int) -> FoldSplit:
    """Train/val/test clip ids of ``outer_fold``; refuses splits that let the test fold leak."""
    root = Path(root)
    splits = _read_csv(root, SPLITS_FILE, names(SPLIT_COLUMNS))
    inner = _read_csv(root, INNER_SPLITS_FILE, names(INNER_SPLIT_COLUMNS))
    test = tuple(sorted(splits.loc[splits["fold"] == outer_fold, "clip_id"]))
    inner = inner[inner["outer_fold"] == outer_fold]
    train = tuple(sorted(inner.loc[inner["subset"] == "train", "clip_id"]))
    val = tuple(sorted(inner.loc[inner["subset"] == "val", "clip_id"]))
    for name, ids in (("test", test), ("inner train", train), ("inner val", val)):
        if not ids:
            raise ValueError(f"outer fold {outer_fold} of {root} has no {name} clips")
    leaked = (set(train) | set(val)) & set(test)
    if leaked or set(train) & set(val):
        raise ValueError(
            f"outer fold {outer_fold} of {root}: inner train/val overlap each other or the "
            f"test fold (e.g. {sorted(leaked or set(train) & set(val))[:3]})"
        )
    return FoldSplit(outer_fold=outer_fold, train=train, val=val, test=test)


# --------------------------------------------------------------------------------------------
# Augmentation


@dataclass(frozen=True)
class Augment:
    """Random transforms of a training clip, the same for all of its frames.

    Geometry: a rotation by any angle about the crop centre (a sperm has no preferred
    orientation), a mirror with probability 1/2 (with free rotation one mirror axis gives every
    flip), a shift of up to ``translate_px`` pixels (tracking is not exact); borders are
    reflected. Intensity on grey values in [0, 1]: gamma ``x ** exp(U(-gamma, gamma))``,
    contrast about the clip mean by ``U(1 - contrast, 1 + contrast)``, brightness by
    ``U(1 - brightness, 1 + brightness)``, then clipped to [0, 1].
    """

    rotate: bool = True
    flip: bool = True
    translate_px: float = 3.0
    brightness: float = 0.2
    contrast: float = 0.2
    gamma: float = 0.2

    def __call__(self, frames: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        """frames: (T, 1, H, W) in [0, 1] -> the same shape."""

        def uniform(low: float, high: float) -> float:
            return low + (high - low) * float(torch.rand((), generator=generator))

        # Draw every number whether or not it is used, so switching one transform off does
        # not change the others.
        angle = uniform(0.0, 2 * math.pi)
        mirror = uniform(0.0, 1.0) < 0.5
        shift = (uniform(-1.0, 1.0), uniform(-1.0, 1.0))
        gamma = math.exp(uniform(-self.gamma, self.gamma))
        contrast = uniform(1 - self.contrast, 1 + self.contrast)
        brightness = uniform(1 - self.brightness, 1 + self.brightness)

        _, _, h, w = frames.shape
        angle = angle if self.rotate else 0.0
        sign = -1.0 if (self.flip and mirror) else 1.0
        # affine_grid works in [-1, 1] coordinates: a shift of s pixels is 2 s / size.
        tx, ty = (2 * self.translate_px * shift[0] / w, 2 * self.translate_px * shift[1] / h)
        cos, sin = math.cos(angle), math.sin(angle)
        theta = torch.tensor([[sign * cos, -sin, tx], [sign * sin, cos, ty]], dtype=frames.dtype)
        if angle or sign < 0 or tx or ty:
            grid = F.affine_grid(
                theta.expand(len(frames), 2, 3), list(frames.shape), align_corners=False
            )
            frames = F.grid_sample(frames, grid, padding_mode="reflection", align_corners=False)

        frames = frames.clamp(0.0, 1.0) ** gamma
        mean = frames.mean()
        frames = (frames - mean) * contrast + mean
        return (frames * brightness).clamp(0.0, 1.0)


# --------------------------------------------------------------------------------------------
# Dataset


class ClipItem(TypedDict):
    """One clip of an :class:`ExportDataset`."""

    frames: torch.Tensor  # (T, 1, H, W) float32 in [0, 1], augmented when training
    kinematics: torch.Tensor  # (k,) float32: the kinematics_features columns, NaN as 0
    target: torch.Tensor  # (5,) float32: the grade distribution A..E, sums to 1
    clip_id: str
    morphometry: NotRequired[torch.Tensor]  # (K,) float32; only with morphometry=True


class ClipBatch(TypedDict):
    """B items collated by :func:`collate_clips`: the tensors stacked on a new first dim."""

    frames: torch.Tensor  # (B, T, 1, H, W) float32 in [0, 1]
    kinematics: torch.Tensor  # (B, k) float32
    target: torch.Tensor  # (B, 5) float32, rows sum to 1
    clip_id: list[str]  # B clip ids, in the batch's order
    morphometry: NotRequired[torch.Tensor]  # (B, K) float32; only with morphometry=True


def collate_clips(items: list[ClipItem]) -> ClipBatch:
    """A batch of items: PyTorch's default collate (tensors stacked, in a worker process
    straight into shared memory; clip ids as a list), typed."""
    return default_collate(items)


class ExportDataset(Dataset[ClipItem]):
    """Clips of an export directory as training items.

    Each item is a :class:`ClipItem`: ``frames`` (T, 1, H, W) float in [0, 1], ``kinematics``
    (k,) float, ``target`` (5,) float grade distribution, ``clip_id``. ``kinematics`` holds the
    ``kinematics_features`` columns of clips.csv in their units (missing values as 0); the model
    scales them. Only the first ``frames`` frames of a clip are used (the paper's first
    second); a clip with fewer is an error. With ``morphometry``, items also hold
    ``"morphometry"``: (K,) float, the head's morphometry (:mod:`modeling.ml.morphometry`)
    measured once on the clip's unaugmented frames (also ``self.morphometry``, (N, K)) at the
    clip's pixel size.

    Pixel sizes: clips.csv's ``pixel_size_um`` (the video's µm per px, recorded at ingestion
    and frozen with the version) is each clip's scale (``self.pixel_sizes``, (N,)); the
    morphometry measures the head at it, so its lengths and areas are in µm whatever the
    magnification. A clip without one (no column, or an empty cell: an export from elsewhere)
    is measured at ``DEFAULT_PIXEL_SIZE_UM`` and counted: ``self.pixel_size_defaulted`` lists
    those clips, a warning names how many, and the model file records the count
    (``self.pixel_size_summary()``). A pixel size that is no positive number is an error.
    """

    def __init__(
        self,
        root: Path,
        *,
        clip_ids: Sequence[str] | None = None,
        frames: int = 16,
        augment: Augment | None = None,
        kinematics_features: Sequence[str] = DEFAULT_KINEMATICS_FEATURES,
        seed: int = 0,
        morphometry: bool = False,
    ) -> None:
        self.root = Path(root)
        self.frames = frames
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        distributions = _read_csv(self.root, DISTRIBUTIONS_FILE, ["clip_id", *PROB_COLUMNS])
        clips = _read_csv(self.root, CLIPS_FILE, ["clip_id", *kinematics_features])
        table = distributions.merge(clips, on="clip_id", how="inner", validate="one_to_one")
        table = table.set_index("clip_id")
        if clip_ids is None:
            clip_ids = list(table.index)
        unknown = [c for c in clip_ids if c not in table.index]
        if unknown:
            raise ValueError(
                f"{len(unknown)} clip(s) lack a distribution or a clips.csv row in {self.root}, "
                f"e.g. {unknown[:3]}"
            )
        self.clip_ids: list[str] = list(clip_ids)
        rows = table.loc[self.clip_ids]

        targets = rows[list(PROB_COLUMNS)].to_numpy(dtype=np.float64)  # (N, 5)
        sums = targets.sum(axis=1, keepdims=True)
        if np.any(~np.isfinite(targets)) or np.any(np.abs(sums - 1) > 1e-3):
            raise ValueError(f"{self.root}/distributions.csv has rows that do not sum to 1")
        self.targets = (targets / sums).astype(np.float32)
        self.kinematics = np.nan_to_num(rows[list(kinematics_features)].to_numpy(dtype=np.float32))
        self.modes: np.ndarray = grade_mode_index(self.targets)  # (N,) 0=A .. 4=E

        missing = [c for c in self.clip_ids if not self.frame_path(c).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} frame file(s) missing under {self.root / 'frames'}, "
                f"e.g. {missing[0]}.npy"
            )
        self.pixel_sizes, self.pixel_size_defaulted = _pixel_sizes(rows, self.root)
        if self.pixel_size_defaulted:
            log.warning(
                "%d of %d clip(s) of %s have no pixel_size_um: measured at the default "
                "%g µm/px (e.g. %s)",
                len(self.pixel_size_defaulted), len(self.clip_ids), self.root,
                DEFAULT_PIXEL_SIZE_UM, ", ".join(self.pixel_size_defaulted[:3]),
            )  # fmt: skip
        # Measured before augmentation: rotation and resampling would blur a head this small.
        self.morphometry: np.ndarray | None = None
        if morphometry:
            self.morphometry = np.stack(
                [
                    clip_morphometry(self._read_frames(i), pixel_size_um=float(size))
                    for i, size in enumerate(self.pixel_sizes)
                ]
            ).reshape(len(self.clip_ids), len(MORPHOMETRY_FEATURES))

    def pixel_size_summary(self) -> dict[str, object]:
        """The range of the clips' pixel sizes and how many were defaulted (for the model
        file: :func:`modeling.ml.morphometry.pixel_size_summary`)."""
        return pixel_size_summary(self.pixel_sizes, n_defaulted=len(self.pixel_size_defaulted))

    def frame_path(self, clip_id: str) -> Path:
        return self.root / "frames" / f"{clip_id}.npy"

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentations of ``epoch`` (see the module docstring)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.clip_ids)

    def _read_frames(self, index: int) -> np.ndarray:
        """The first ``frames`` frames of clip ``index`` as stored, (T, H, W) uint8."""
        path = self.frame_path(self.clip_ids[index])
        array = np.load(path)
        if array.ndim != 3 or len(array) < self.frames:
            raise ValueError(
                f"{path} must hold (T, H, W) frames with T >= {self.frames}, "
                f"got shape {array.shape}"
            )
        return np.ascontiguousarray(array[: self.frames])

    def load_frames(self, index: int) -> torch.Tensor:
        """The first ``frames`` frames of clip ``index``, (T, 1, H, W) float in [0, 1]."""
        return torch.from_numpy(self._read_frames(index)).float().div_(255).unsqueeze(1)

    def __getitem__(self, index: int) -> ClipItem:
        frames = self.load_frames(index)
        if self.augment is not None:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch, index))
            frames = self.augment(frames, generator=generator)
        item = ClipItem(
            frames=frames,
            kinematics=torch.from_numpy(self.kinematics[index]),
            target=torch.from_numpy(self.targets[index]),
            clip_id=self.clip_ids[index],
        )
        if self.morphometry is not None:
            item["morphometry"] = torch.from_numpy(self.morphometry[index])
        return item


def _pixel_sizes(rows: pd.DataFrame, root: Path) -> tuple[np.ndarray, list[str]]:
    """Each clip's pixel size (N,) float64 from the ``pixel_size_um`` column, the default
    where it has none; and the ids of the clips that got the default."""
    if "pixel_size_um" not in rows.columns:
        return np.full(len(rows), DEFAULT_PIXEL_SIZE_UM), [str(c) for c in rows.index]
    values = pd.to_numeric(rows["pixel_size_um"], errors="coerce").to_numpy(dtype=np.float64)
    given = rows["pixel_size_um"].notna().to_numpy()
    bad = [
        str(c)
        for c, v, g in zip(rows.index, values, given, strict=True)
        if g and not (np.isfinite(v) and v > 0)
    ]
    if bad:
        raise ValueError(
            f"{root / CLIPS_FILE}: pixel_size_um must be a positive number of µm (or empty "
            f"for unknown), not {rows.loc[bad[0], 'pixel_size_um']!r} (clip {bad[0]}"
            f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''})"
        )
    defaulted = [str(c) for c, g in zip(rows.index, given, strict=True) if not g]
    return np.where(given, values, DEFAULT_PIXEL_SIZE_UM), defaulted


# --------------------------------------------------------------------------------------------
# Samplers


class EpochSampler(Sampler[int]):
    """Indices for one epoch, reproducible from (seed, epoch).

    Without weights: a permutation of all items. With weights: ``num_samples`` draws with
    replacement, item i with probability proportional to ``weights[i]``.
    """

    def __init__(
        self,
        n_items: int,
        *,
        seed: int,
        weights: np.ndarray | None = None,
        num_samples: int | None = None,
    ) -> None:
        self.n_items = n_items
        self.seed = seed
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.num_samples = n_items if num_samples is None else num_samples
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
        if self.weights is None:
            order = torch.randperm(self.n_items, generator=generator)
        else:
            order = torch.multinomial(
                self.weights, self.num_samples, replacement=True, generator=generator
            )
        return iter(order.tolist())


def fair_sampler(modes: Sequence[int] | np.ndarray, *, seed: int) -> EpochSampler:
    """Class-balanced ("fair") sampling by grade-mode class: every class present is drawn
    equally often in expectation; an epoch draws as many clips as there are."""
    modes = np.asarray(modes)
    if modes.size == 0:
        raise ValueError("fair sampling needs at least one clip")
    _, inverse, counts = np.unique(modes, return_inverse=True, return_counts=True)
    return EpochSampler(len(modes), seed=seed, weights=1.0 / counts[inverse])


def shuffle_sampler(n_items: int, *, seed: int) -> EpochSampler:
    """Every clip once per epoch in a seeded random order."""
    return EpochSampler(n_items, seed=seed)
