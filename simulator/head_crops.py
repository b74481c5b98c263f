"""Labelled head crops drawn by the synthetic generator: the heads of :mod:`simulator.synthetic`
(shape, vacuoles, midpiece and tail) on a noisy background, one still cell per crop, the head
at the crop's centre in a random orientation. For the head encoder's tests and benchmarks
(``pretrain_head`` / ``probe_head`` read the directory this writes).

Labels, from the generator's truth: ``shape`` (normal, tapered, pear, round, amorphous),
``vacuole`` (yes when the head has any), ``normal`` (normal or abnormal: morphology >= 0.6).
The morphology latent is drawn uniformly in [0, 1] so that every shape is common.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from simulator.synthetic import SyntheticConfig, cell_sample, cell_shapes, shapes_stamp


def head_crop(
    *, morphology: float, config: SyntheticConfig, rng: np.random.Generator, size: int = 40
) -> tuple[np.ndarray, dict[str, str]]:
    """One (size, size) uint8 crop of a still cell whose head shows ``morphology``, and its
    labels."""
    cell = cell_sample(motility=0.05, morphology=morphology, config=config, rng=rng)
    canvas = np.full((size, size), round(config.background_level), np.int16)
    if config.noise_sd > 0:
        canvas += np.round(rng.normal(0, config.noise_sd, (size, size))).astype(np.int16)
    # Pixel centres lie at integers: the crop's centre pixel, as a tracked crop has it.
    centre = np.array([size // 2, size // 2], dtype=float) + rng.uniform(-0.5, 0.5, 2)
    shapes = cell_shapes(
        cell, centre=centre, angle=float(rng.uniform(0, 2 * np.pi)), phase=0.0,
        px_per_um=config.px_per_um,
    )  # fmt: skip
    shapes_stamp(canvas, shapes, blur=config.blur)
    image = np.clip(canvas, 0, 255).astype(np.uint8)
    labels = {
        "shape": cell.head_shape,
        "vacuole": "yes" if cell.n_vacuoles else "no",
        "normal": "normal" if morphology >= 0.6 else "abnormal",
    }
    return image, labels


def write_head_dir(
    out_dir: Path,
    *,
    n: int,
    seed: int = 0,
    config: SyntheticConfig | None = None,
    size: int = 40,
    png: bool = False,
) -> Path:
    """``n`` labelled crops in ``out_dir``: ``labels.csv`` (image, shape, vacuole, normal) and
    either ``heads.npy`` (N, size, size) uint8 referenced as ``heads.npy:INDEX`` or one PNG
    file per head under ``heads/``."""
    import cv2

    config = config or SyntheticConfig()
    rng = np.random.default_rng([seed, 18])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images, rows = [], []
    for i in range(n):
        image, labels = head_crop(
            morphology=float(rng.uniform(0, 1)), config=config, rng=rng, size=size
        )
        if png:
            (out_dir / "heads").mkdir(exist_ok=True)
            name = f"heads/{i:05d}.png"
            cv2.imwrite(str(out_dir / name), image)
        else:
            name = f"heads.npy:{i}"
        images.append(image)
        rows.append({"image": name, **labels})
    if not png:
        np.save(out_dir / "heads.npy", np.stack(images))
    pd.DataFrame(rows).to_csv(out_dir / "labels.csv", index=False)
    return out_dir
