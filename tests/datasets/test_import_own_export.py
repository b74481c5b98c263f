"""Importing an export of this same platform is recognised and refused: its votes are here
already, and importing them would count each again under new pseudonymous raters."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from annotation.models import Clip, Rating
from datasets.models import DatasetVersion

pytestmark = pytest.mark.django_db


@pytest.fixture
def own_export(synthetic_small: Path, settings, tmp_path: Path) -> Path:
    settings.EXPORT_ROOT = tmp_path / "exports"
    call_command("import_dataset", str(synthetic_small), "--no-progress")
    call_command("build_dataset", "v1", "--no-progress")
    out = tmp_path / "export"
    call_command("export_dataset", "v1", "--out", str(out))
    return out


def _keep_first_half_of_the_ratings(folder: Path) -> None:
    with (folder / "ratings.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    with (folder / "ratings.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows[: len(rows) // 2])


def test_importing_an_export_of_this_platform_adds_no_rating_and_says_why(own_export) -> None:
    before = (Rating.objects.count(), Clip.objects.count())
    with pytest.raises(CommandError) as refused:
        call_command("import_dataset", str(own_export), "--no-progress")
    message = str(refused.value)
    assert "is an export of this platform" in message
    assert "content hash of dataset version 'v1'" in message
    assert "--other-platform" in message
    assert (Rating.objects.count(), Clip.objects.count()) == before


def test_an_edited_export_without_its_manifest_is_still_recognised_by_its_pseudonyms(
    own_export,
) -> None:
    (own_export / "MANIFEST.sha256").unlink()
    _keep_first_half_of_the_ratings(own_export)
    before = Rating.objects.count()
    with pytest.raises(CommandError, match=r"rater ids of ratings.csv are pseudonyms of .*'v1'"):
        call_command("import_dataset", str(own_export), "--no-progress")
    (own_export / "ratings.csv").write_text("clip_id,rater_id,grade\n")
    with pytest.raises(CommandError, match=r"patient ids of clips.csv are pseudonyms of .*'v1'"):
        call_command("import_dataset", str(own_export), "--no-progress")
    assert Rating.objects.count() == before


def test_other_platform_imports_it_anyway(own_export) -> None:
    before = Rating.objects.count()
    call_command("import_dataset", str(own_export), "--no-progress", "--other-platform")
    assert Rating.objects.count() == before + DatasetVersion.objects.get(name="v1").n_ratings


def test_another_platforms_data_set_is_imported_as_before(synthetic_small: Path) -> None:
    call_command("import_dataset", str(synthetic_small), "--no-progress")
    assert Rating.objects.count() > 0
