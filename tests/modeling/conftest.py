"""Fixtures of the modeling tests: a built dataset version and a tiny training config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from django.core.management import call_command

from datasets.models import DatasetVersion

# The cheapest backbone's small preset, two epochs: seconds per run on one core.
TINY_CONFIG: dict[str, Any] = {
    "backbone": "resnet",
    "preset": "small",
    "loss": "emd",
    "optimizer": "adam",
    "lr": 1e-3,
    "epochs": 2,
    "batch_size": 4,
    "early_stopping_patience": None,
}


def build_version(synthetic_dir: Path, name: str = "v1") -> DatasetVersion:
    """Import the synthetic data set and build a 3-fold version of it."""
    call_command("import_dataset", str(synthetic_dir), "--no-progress")
    call_command("build_dataset", name, "--no-progress")
    return DatasetVersion.objects.get(name=name)


@pytest.fixture
def tiny_config() -> dict[str, Any]:
    return dict(TINY_CONFIG)


@pytest.fixture
def local_roots(settings, tmp_path: Path) -> Path:
    """Exports and runs in this test's folder (tests that train in their own process)."""
    settings.EXPORT_ROOT = tmp_path / "exports"
    settings.TRAINING_RUNS_ROOT = tmp_path / "runs"
    return tmp_path


@pytest.fixture
def version(db, synthetic_small: Path, local_roots: Path) -> DatasetVersion:
    return build_version(synthetic_small)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    # The test machines share two cores between several jobs.
    torch.set_num_threads(1)
