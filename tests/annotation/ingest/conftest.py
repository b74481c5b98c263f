"""Fixtures of the ingestion tests: synthetic microscope frames with a known head path."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from tests.annotation.ingest.videos import head_path, render_frames


@pytest.fixture
def synthetic_frames() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """Factory: ``synthetic_frames(kind, n_frames=16, width=160, height=120, **render)`` ->
    (frames (T, H, W) uint8, true centres (T, 2)); ``render`` goes to ``render_frames``."""

    def make(
        kind: str,
        n_frames: int = 16,
        *,
        width: int = 160,
        height: int = 120,
        start: tuple[float, float] = (40.3, 50.6),
        **render: object,
    ) -> tuple[np.ndarray, np.ndarray]:
        path = head_path(kind, n_frames, start=start)
        return render_frames(path, width=width, height=height, **render), path  # type: ignore[arg-type]

    return make
