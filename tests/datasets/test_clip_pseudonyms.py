"""Exports name clips by per-version pseudonyms, so two versions' exports cannot be joined
clip by clip; inside a version every table and file agrees, diffs between versions still
compare the same clips (through the frozen rows), and training finds its clips again."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from django.core.management import call_command

from annotation.models import Clip
from datasets.models import DatasetVersion
from datasets.selectors import version_clip_pks_by_export_id, version_diff
from datasets.services import dataset_version_export, export_dir_for

pytestmark = pytest.mark.django_db
TABLES = ("clips", "ratings", "distributions", "splits", "inner_splits")


@pytest.fixture
def two_versions(synthetic_small: Path, settings, tmp_path: Path) -> list[DatasetVersion]:
    settings.EXPORT_ROOT = tmp_path / "exports"
    call_command("import_dataset", str(synthetic_small), "--no-progress")
    for name in ("v1", "v2"):
        call_command("build_dataset", name, "--no-progress")
    return [DatasetVersion.objects.get(name=n) for n in ("v1", "v2")]


def _export_ids(version: DatasetVersion) -> dict[str, set[str]]:
    folder = export_dir_for(version)
    ids = {t: set(pd.read_csv(folder / f"{t}.csv", dtype=str)["clip_id"]) for t in TABLES}
    ids["crops"] = {p.stem for p in (folder / "crops").iterdir()}
    ids["frames"] = {p.stem for p in (folder / "frames").iterdir()}
    return ids


def test_two_versions_name_the_same_clips_differently_and_never_by_the_platforms_ids(
    two_versions,
) -> None:
    platform_ids = set(Clip.objects.values_list("external_id", flat=True))
    v1, v2 = (_export_ids(v) for v in two_versions)
    for ids in (v1, v2):
        assert all(found == ids["clips"] for found in ids.values())  # one id per clip throughout
        assert len(ids["clips"]) == len(platform_ids)
        assert not ids["clips"] & platform_ids
    assert not v1["clips"] & v2["clips"]
    text = "".join((export_dir_for(two_versions[0]) / f"{t}.csv").read_text() for t in TABLES)
    text += (export_dir_for(two_versions[0]) / "README.md").read_text()
    assert not [c for c in platform_ids if c in text]
    assert "per-version pseudonyms" in (export_dir_for(two_versions[0]) / "README.md").read_text()


def test_the_diff_of_two_versions_still_compares_the_same_clips(two_versions) -> None:
    diff = version_diff(*two_versions)
    assert (diff.added, diff.removed, diff.changed) == ([], [], [])
    assert diff.unchanged == Clip.objects.count()


def test_an_export_id_leads_back_to_its_clip_and_a_rebuild_keeps_the_hash(
    two_versions, tmp_path: Path
) -> None:
    version = two_versions[0]
    by_export_id = version_clip_pks_by_export_id(version)
    assert set(by_export_id) == _export_ids(version)["clips"]
    assert sorted(by_export_id.values()) == sorted(Clip.objects.values_list("pk", flat=True))
    result = dataset_version_export(version=version, out_dir=tmp_path / "again")
    assert result.content_hash == version.content_hash


def test_a_version_built_with_platform_clip_ids_keeps_them(two_versions) -> None:
    call_command("build_dataset", "v3", "--no-progress", "--platform-clip-ids")
    version = DatasetVersion.objects.get(name="v3")
    assert not version.pseudonymous_clip_ids
    platform_ids = set(Clip.objects.values_list("external_id", flat=True))
    assert _export_ids(version)["clips"] == platform_ids
    assert "per-version pseudonyms" not in (export_dir_for(version) / "README.md").read_text()
