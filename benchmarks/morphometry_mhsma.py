"""Head morphometry on real heads (MHSMA) and on the generator's heads, the new method beside
the old one (``main``'s ``modeling/ml/morphometry.py`` before the scale-aware segmentation).

Real heads: MHSMA's train split (1,000 unstained human heads, 64 x 64 px) fits, its valid
split (240) gives the figures; the test split is not in shared/. Per method:

- found: the share of images where a head is found at the images' native size;
- per label (head, vacuole, acrosome; 0 normal, 1 abnormal): accuracy, balanced accuracy
  and ROC AUC on valid of a logistic regression (scikit-learn, C = 1, chosen before any run)
  on the project's standardised morphometry (``standardised_inputs``: the features
  standardised on train, and the abnormality), beside the majority class of train and the
  dataset paper's test accuracies (head 77.0, vacuole 91.3, acrosome 76.7).

MHSMA's pixel size is derived from its heads' length (``mhsma_labels.pixel_size_um``: 4.6 µm
over 27 px = 0.17 µm/px). The old method ran at a fixed 9 x 6 px head (``old``, how the issue
measured it) and, for fairness, with its search window scaled to 27 px heads (``old scaled``).

Generator: heads the simulator draws (``render_target_frames``), at its default configuration
and at a shifted one fixed before any run (0.3 µm/px, 5.0 x 3.3 µm heads, noise SD 6, blur 0.9
px, background 130); per method: the share of frames with a head, the median relative error of
the area against the drawn outline, and the correlation of ``spots`` with the drawn number of
vacuoles. Plus the median time per image and the ratio new / old.

    .venv/bin/python benchmarks/morphometry_mhsma.py [--source ../shared/data/mhsma] [--cells 36]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score  # noqa: E402

from benchmarks import mhsma_labels  # noqa: E402
from modeling.ml import morphometry  # noqa: E402
from simulator.synthetic import SyntheticConfig, render_target_frames  # noqa: E402

PAPER_TEST_ACCURACY = {"head": 77.0, "vacuole": 91.3, "acrosome": 76.7}


def shifted(config: SyntheticConfig) -> SyntheticConfig:
    """The shifted configuration of the generator, fixed before any run: another pixel size,
    larger heads, more noise and blur, a darker field."""
    return replace(
        config,
        pixel_size_um=0.3,
        head_length_um=5.0,
        head_width_um=3.3,
        noise_sd=6.0,
        blur=0.9,
        background_level=130.0,
    )


# A frame's features: dict or None (no head).
Measure = Callable[[np.ndarray], "dict[str, float] | None"]


def old_module() -> ModuleType:
    """``main``'s morphometry module, imported from a temporary copy."""
    source = subprocess.run(
        ["git", "show", "main:modeling/ml/morphometry.py"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="morphometry-old-")) / "morphometry_old.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("morphometry_old", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measure_all(measure: Measure, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(features (N, K) with NO_HEAD where none was found, found (N,) bool, median seconds
    per image)."""
    rows, found, times = [], [], []
    for image in images:
        start = time.perf_counter()
        m = measure(image)
        times.append(time.perf_counter() - start)
        found.append(m is not None)
        m = m if m is not None else morphometry.NO_HEAD
        rows.append([m[name] for name in morphometry.MORPHOMETRY_FEATURES])
    return np.array(rows), np.array(found), float(np.median(times))


def inputs(values: np.ndarray, shift: tuple[float, ...], scale: tuple[float, ...]) -> np.ndarray:
    return morphometry.standardised_inputs(
        torch.from_numpy(values),
        torch.tensor(shift, dtype=torch.float64),
        torch.tensor(scale, dtype=torch.float64),
    ).numpy()


def label_figures(
    train: np.ndarray, y_train: np.ndarray, valid: np.ndarray, y_valid: np.ndarray
) -> dict[str, float]:
    shift, scale = morphometry.morphometry_standardisation(train)
    x_train, x_valid = inputs(train, shift, scale), inputs(valid, shift, scale)
    model = LogisticRegression(C=1.0, max_iter=2000).fit(x_train, y_train)
    predicted = model.predict(x_valid)
    majority = int(np.bincount(y_train).argmax())
    return {
        "accuracy": 100 * accuracy_score(y_valid, predicted),
        "balanced": 100 * balanced_accuracy_score(y_valid, predicted),
        "auc": roc_auc_score(y_valid, model.predict_proba(x_valid)[:, 1]),
        "majority": 100 * float(np.mean(y_valid == majority)),
    }


def mhsma(source: Path, methods: dict[str, Measure]) -> None:
    train_x, train_y = mhsma_labels.load_split(source, "train")
    valid_x, valid_y = mhsma_labels.load_split(source, "valid")
    print(f"MHSMA: {len(train_x)} train, {len(valid_x)} valid images, {train_x.shape[1:]} px")
    print(f"pixel size {mhsma_labels.pixel_size_um():.4f} µm/px (4.6 µm head over 27 px)\n")
    header = f"{'method':12s} {'found train':>11s} {'found valid':>11s} {'ms/image':>9s}"
    print(header)
    measured, times = {}, {}
    for name, measure in methods.items():
        train, found_train, seconds = measure_all(measure, train_x)
        valid, found_valid, _ = measure_all(measure, valid_x)
        measured[name], times[name] = (train, valid), seconds
        print(
            f"{name:12s} {100 * found_train.mean():10.1f}% {100 * found_valid.mean():10.1f}% "
            f"{1000 * seconds:9.2f}"
        )
    first = next(iter(times))
    for name in list(times)[1:]:
        print(f"time per image {first} / {name}: {times[first] / times[name]:.2f}x")
    print()
    print(
        f"{'label':9s} {'method':12s} {'accuracy':>8s} {'balanced':>8s} {'AUC':>6s} "
        f"{'majority':>8s} {'paper':>6s}"
    )
    for label in PAPER_TEST_ACCURACY:
        for name, (train, valid) in measured.items():
            f = label_figures(train, train_y[label], valid, valid_y[label])
            print(
                f"{label:9s} {name:12s} {f['accuracy']:8.1f} {f['balanced']:8.1f} "
                f"{f['auc']:6.3f} {f['majority']:8.1f} {PAPER_TEST_ACCURACY[label]:6.1f}"
            )


def generator_crops(config: SyntheticConfig, n_cells: int, seed: int) -> list[tuple]:
    """(crops (T, S, S) uint8, drawn head area µm², n_vacuoles) of ``n_cells`` rendered
    targets, crops centred on the tracked head, 30.5 µm across."""
    half = round(15 * 0.5 / config.pixel_size_um * 2)  # px
    cells = []
    for i in range(n_cells):
        morphology = (0.95, 0.5, 0.1)[i % 3]
        rendered = render_target_frames(
            motility=0.1, morphology=morphology, config=config, seed=seed + i
        )
        crops = []
        for frame, (x, y) in zip(rendered.frames[:6], rendered.track, strict=False):
            padded = np.pad(frame, half, mode="reflect")
            x0, y0 = round(x), round(y)
            crops.append(padded[y0 : y0 + 2 * half + 1, x0 : x0 + 2 * half + 1])
        outline = rendered.cell.head_outline_um
        ox, oy = outline[:, 0], outline[:, 1]
        area = 0.5 * abs(float(np.dot(ox, np.roll(oy, 1)) - np.dot(oy, np.roll(ox, 1))))
        cells.append((np.stack(crops), area, rendered.cell.n_vacuoles))
    return cells


def generator(n_cells: int, methods: Callable[[float], dict[str, tuple[Measure, float]]]) -> None:
    print("\nGenerator heads (simulator.synthetic), per configuration and method")
    print(
        f"{'config':8s} {'method':12s} {'found':>6s} {'area err':>8s} "
        f"{'spots~vac r':>11s} {'ms/frame':>9s}"
    )
    base = SyntheticConfig(width=320, height=240, n_frames=8)
    for config_name, config in (("default", base), ("shifted", shifted(base))):
        cells = generator_crops(config, n_cells, seed=100)
        for name, (measure, area_unit) in methods(config.pixel_size_um).items():
            found, errors, spots, vacuoles, times = [], [], [], [], []
            spot_index = morphometry.MORPHOMETRY_FEATURES.index("spots")
            for crops, drawn_area, n_vacuoles in cells:
                rows = []
                for crop in crops:
                    start = time.perf_counter()
                    m = measure(crop)
                    times.append(time.perf_counter() - start)
                    found.append(m is not None)
                    if m is not None:
                        rows.append([m[k] for k in morphometry.MORPHOMETRY_FEATURES])
                if rows:
                    clip = np.median(np.array(rows), axis=0)
                    errors.append(clip[0] * area_unit / drawn_area - 1)
                    spots.append(clip[spot_index])
                    vacuoles.append(n_vacuoles)
            r = float(np.corrcoef(spots, vacuoles)[0, 1]) if np.std(spots) > 0 else float("nan")
            print(
                f"{config_name:8s} {name:12s} {100 * np.mean(found):5.1f}% "
                f"{100 * np.median(errors):+7.1f}% {r:11.3f} {1000 * np.median(times):9.2f}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=mhsma_labels.DEFAULT_SOURCE)
    parser.add_argument("--cells", type=int, default=36, help="generator cells per config")
    args = parser.parse_args(argv)
    old = old_module()
    pixel = mhsma_labels.pixel_size_um()
    factor = mhsma_labels.HEAD_LENGTH_PX / 9.2

    def new(image: np.ndarray) -> dict[str, float] | None:
        return morphometry.frame_morphometry(image, pixel_size_um=pixel)

    def old_fixed(image: np.ndarray) -> dict[str, float] | None:
        return old.frame_morphometry(image)

    def old_scaled(image: np.ndarray) -> dict[str, float] | None:
        return old.frame_morphometry(image, search_scale=factor)

    if args.source.is_dir():
        mhsma(args.source, {"new": new, "old": old_fixed, "old scaled": old_scaled})
    else:
        print(f"{args.source} is absent: the MHSMA figures are skipped")

    def generator_methods(pixel_size_um: float) -> dict[str, tuple[Measure, float]]:
        scale = 0.5 / pixel_size_um  # the old method's search scale for a 4.6 µm head

        def new_at(image: np.ndarray) -> dict[str, float] | None:
            return morphometry.frame_morphometry(image, pixel_size_um=pixel_size_um)

        def old_at(image: np.ndarray) -> dict[str, float] | None:
            return old.frame_morphometry(image, search_scale=scale)

        # The old method's area is in px²: to µm² with the pixel size.
        return {"new": (new_at, 1.0), "old scaled": (old_at, pixel_size_um**2)}

    generator(args.cells, generator_methods)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
