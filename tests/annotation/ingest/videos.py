"""Small synthetic microscope videos: one phase-contrast head moving on a known path."""

from __future__ import annotations

import math

import numpy as np


def head_path(kind: str, n_frames: int, *, start: tuple[float, float]) -> np.ndarray:
    """(n_frames, 2) true head centres: "straight", "circle", "zigzag" or "still"."""
    t = np.arange(n_frames, dtype=np.float64)
    x0, y0 = start
    if kind == "straight":
        return np.column_stack([x0 + 3.1 * t, y0 + 1.7 * t])
    if kind == "circle":
        angle = 2 * math.pi * t / n_frames
        return np.column_stack([x0 + 20 * np.sin(angle), y0 + 20 * (1 - np.cos(angle))])
    if kind == "zigzag":
        return np.column_stack([x0 + 2.5 * t, y0 + 4.0 * (t % 2) - 2.0])
    if kind == "still":
        return np.tile([x0, y0], (n_frames, 1))
    raise ValueError(kind)


def render_frames(
    path: np.ndarray,
    *,
    width: int,
    height: int,
    seed: int = 0,
    visible: np.ndarray | None = None,
    turn_deg_per_frame: float = 0.0,
    polarity: float = 1.0,
    head_px: tuple[float, float] = (3.0, 2.0),
) -> np.ndarray:
    """(T, H, W) uint8 frames: grey background, noise, and a head (dark core, bright halo;
    ``polarity`` -1 inverts both; ``head_px`` its half-length and half-width) at each position
    of ``path``, its long axis turning by
    ``turn_deg_per_frame``; ``visible[t] = False`` leaves frame t empty."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = np.empty((len(path), height, width), dtype=np.uint8)
    for t, (x, y) in enumerate(path):
        image = np.full((height, width), 120.0, dtype=np.float32)
        image += rng.normal(0.0, 3.0, size=image.shape).astype(np.float32)
        if visible is None or visible[t]:
            # Elongated core along the head's axis, a halo ring around it.
            angle = math.radians(turn_deg_per_frame * t)
            along = (xs - x) * math.cos(angle) + (ys - y) * math.sin(angle)
            across = -(xs - x) * math.sin(angle) + (ys - y) * math.cos(angle)
            r2 = (along / head_px[0]) ** 2 + (across / head_px[1]) ** 2
            image += polarity * (60.0 * np.exp(-r2 / 3.0) - 110.0 * np.exp(-r2))
        frames[t] = np.clip(image, 0, 255).astype(np.uint8)
    return frames
