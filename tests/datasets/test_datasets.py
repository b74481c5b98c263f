"""Frozen dataset versions: build, immutability, byte-identical exports, round trip, pages."""

from __future__ import annotations

import filecmp
import io
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client
from rest_framework.test import APIClient

from annotation.access.accounts import user_create
from annotation.ingest.services import clip_vote_counts_recount
from annotation.models import Clip, Rating, RatingChange
from datasets.export import verify_export
from datasets.models import DatasetClip, DatasetVersion, FrozenError
from datasets.services import export_dir_for
from tests.conftest import PASSWORD, wait_for


@pytest.fixture
def rated(db, synthetic_small: Path) -> Path:
    call_command("import_dataset", str(synthetic_small), "--no-progress")
    return synthetic_small


@pytest.fixture
def export_root(settings, tmp_path: Path) -> Path:
    settings.EXPORT_ROOT = tmp_path / "exports"
    return settings.EXPORT_ROOT


def _build(name: str = "v1", **options: object) -> DatasetVersion:
    call_command(
        "build_dataset", name, "--no-progress", *[f"--{k}={v}" for k, v in options.items()]
    )
    return DatasetVersion.objects.get(name=name)


def _add_votes(n: int) -> None:
    """n more expert votes, spread over the clips, through new experts."""
    clips = list(Clip.objects.order_by("external_id"))
    experts = [user_create(username=f"late{i}", role="expert", password=None) for i in range(n)]
    rows = [Rating(clip=clips[i % len(clips)], rater=e, grade="E") for i, e in enumerate(experts)]
    Rating.objects.bulk_create(rows)
    RatingChange.objects.bulk_create([RatingChange(rating=r, grade=r.grade) for r in rows])
    clip_vote_counts_recount()


def _same_files(a: Path, b: Path) -> list[str]:
    files_a = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    return [f for f in files_a if not filecmp.cmp(a / f, b / f, shallow=False)]


def test_a_built_version_is_frozen_with_folds_and_a_verified_export(rated, export_root) -> None:
    version = _build(folds=3, seed=5)
    assert version.status == "ready" and version.frozen
    assert version.n_clips == 6 and version.n_ratings == Rating.objects.count()
    folder = export_dir_for(version)
    assert verify_export(folder) == []
    import hashlib

    assert hashlib.sha256((folder / "MANIFEST.sha256").read_bytes()).hexdigest() == (
        version.content_hash
    )
    dist = pd.read_csv(folder / "distributions.csv")
    assert list(dist.columns) == [
        *("clip_id", "p_A", "p_B", "p_C", "p_D", "p_E"),
        *("n", "mean", "std", "mode"),
    ]
    assert np.allclose(dist[["p_A", "p_B", "p_C", "p_D", "p_E"]].sum(axis=1), 1.0)
    for name in ("clips.csv", "ratings.csv", "splits.csv", "inner_splits.csv", "README.md"):
        assert (folder / name).is_file()
    assert len(list((folder / "frames").glob("*.npy"))) == 6
    assert len(list((folder / "crops").glob("*.mp4"))) == 6
    assert len(list((folder / "parquet").glob("*.parquet"))) == 5


def test_folds_are_patient_disjoint(rated, export_root) -> None:
    version = _build()
    folds_per_patient = {}
    for d in DatasetClip.objects.filter(version=version):
        folds_per_patient.setdefault(d.patient_pseudonym, set()).add(d.fold)
    assert all(len(f) == 1 for f in folds_per_patient.values())
    assert {d.fold for d in DatasetClip.objects.filter(version=version)} == {0, 1, 2}


def test_exporting_twice_gives_byte_identical_files(rated, export_root, tmp_path: Path) -> None:
    version = _build()
    call_command("export_dataset", "v1", "--out", str(tmp_path / "one"))
    call_command("export_dataset", "v1", "--out", str(tmp_path / "two"))
    assert _same_files(tmp_path / "one", tmp_path / "two") == []
    assert _same_files(tmp_path / "one", export_dir_for(version)) == []


def test_later_votes_change_neither_the_version_nor_its_export(
    rated, export_root, tmp_path: Path
) -> None:
    version = _build()
    frozen = list(DatasetClip.objects.filter(version=version).values_list("clip_external_id", "p"))
    _add_votes(100)
    assert Rating.objects.count() == version.n_ratings + 100
    call_command("export_dataset", "v1", "--out", str(tmp_path / "after"))
    version.refresh_from_db()
    after = list(DatasetClip.objects.filter(version=version).values_list("clip_external_id", "p"))
    assert after == frozen
    assert _same_files(tmp_path / "after", export_dir_for(version)) == []
    # A new version sees the new votes; the diff names the changed clips.
    _build("v2")
    client = APIClient()
    client.force_authenticate(user_create(username="cur", role="curator", password=None))
    diff = client.get("/api/datasets/v1/diff/v2/").json()
    assert len(diff["changed"]) == 6 and all(c["emd"] > 0 for c in diff["changed"])


def test_a_frozen_version_refuses_every_change(rated, export_root) -> None:
    version = _build()
    version.description = "edited"
    with pytest.raises(FrozenError):
        version.save()
    with pytest.raises(FrozenError):
        DatasetVersion.objects.filter(pk=version.pk).update(seed=9)
    with pytest.raises(FrozenError):
        DatasetClip.objects.filter(version=version).update(fold=0)
    with pytest.raises(FrozenError):
        version.delete()
    clip = DatasetClip.objects.filter(version=version).first()
    clip.fold = 2
    with pytest.raises(FrozenError):
        clip.save()
    # Even raw SQL is refused by the database's triggers.
    from django.db import DatabaseError

    sql = "UPDATE datasets_datasetclip SET fold = 0 WHERE version_id = %s"
    with pytest.raises(DatabaseError, match="frozen"), transaction.atomic():
        connection.cursor().execute(sql, [version.pk])
    version.refresh_from_db()
    assert version.description == "" and version.seed == 0


def test_the_api_and_the_admin_cannot_edit_a_frozen_version(rated, export_root) -> None:
    version = _build()
    api = APIClient()
    api.force_authenticate(user_create(username="cur", role="curator", password=None))
    for method in ("put", "patch", "delete"):
        response = getattr(api, method)("/api/datasets/v1/", {"seed": 3, "frozen": False})
        assert response.status_code == 405
    admin = Client()
    user_create(username="boss", role="admin", password=PASSWORD)
    admin.login(username="boss", password=PASSWORD)
    url = f"/admin/datasets/datasetversion/{version.pk}/change/"
    assert admin.get(url).status_code == 200  # view only
    response = admin.post(url, {"name": "renamed", "seed": 4})
    assert response.status_code == 403
    response = admin.post(f"/admin/datasets/datasetversion/{version.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    version.refresh_from_db()
    assert version.name == "v1" and version.frozen


def test_exports_hold_no_patient_codes_or_rater_names(rated, export_root) -> None:
    version = _build()
    folder = export_dir_for(version)
    text = "".join((folder / n).read_text() for n in ("clips.csv", "ratings.csv", "README.md"))
    for code in pd.read_csv(rated / "clips.csv").patient_id:
        assert code not in text
    for name in set(pd.read_csv(rated / "ratings.csv").rater_id):
        assert name not in text
    for path in (folder / "videos").iterdir():
        assert path.name.startswith("v") and len(path.stem) == 11


@pytest.mark.django_db(transaction=True)
def test_importing_an_export_recreates_the_same_distributions(
    synthetic_small: Path, export_root, tmp_path: Path
) -> None:
    call_command("import_dataset", str(synthetic_small), "--no-progress")
    version = _build()
    call_command("export_dataset", "v1", "--out", str(tmp_path / "export"))
    before = pd.read_csv(tmp_path / "export" / "distributions.csv").set_index("clip_id")
    call_command("flush", "--noinput")
    call_command("import_dataset", str(tmp_path / "export"), "--no-progress")
    after = {c.external_id: c.vote_counts for c in Clip.objects.all()}
    assert set(after) == set(before.index)
    for clip_id, counts in after.items():
        p = np.asarray(counts) / sum(counts)
        assert np.allclose(p, before.loc[clip_id, ["p_A", "p_B", "p_C", "p_D", "p_E"]].to_numpy())
    assert version.n_ratings == Rating.objects.count()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_curator_builds_a_version_through_the_worker_and_downloads_it(
    celery_worker_process, synthetic_small: Path, settings
) -> None:
    # The worker reads media and exports under MERSV_VAR_DIR: import there.
    call_command("import_dataset", str(synthetic_small), "--no-progress")
    client = Client()
    user_create(username="cur", role="curator", password=PASSWORD)
    client.login(username="cur", password=PASSWORD)
    form = {"name": "web-v1", "licence": "CC-BY-4.0", "min_votes": 1, "n_folds": 3, "seed": 0}
    response = client.post("/datasets/", {**form, "exclude_cannot_judge_majority": "on"})
    assert response.status_code == 302
    wait_for(
        lambda: DatasetVersion.objects.get(name="web-v1").status in ("ready", "failed"),
        timeout=120,
        what="the worker to build the version",
    )
    version = DatasetVersion.objects.get(name="web-v1")
    assert version.status == "ready", version.error
    page = client.get("/datasets/web-v1/")
    assert page.status_code == 200 and version.content_hash.encode() in page.content
    assert b'id="fold-balance"' in page.content
    download = client.get("/datasets/web-v1/download/")
    assert download.status_code == 200 and download.streaming
    with tarfile.open(fileobj=io.BytesIO(b"".join(download.streaming_content))) as archive:
        names = archive.getnames()
    assert "mersv-web-v1/MANIFEST.sha256" in names and "mersv-web-v1/distributions.csv" in names


@pytest.mark.django_db
def test_only_curators_and_admins_reach_dataset_versions(make_user) -> None:
    for role in ("expert", "trainee"):
        client = Client()
        client.login(username=make_user(role).username, password=PASSWORD)
        assert client.get("/datasets/").status_code == 403
        assert client.get("/api/datasets/").status_code == 403
        assert client.post("/api/datasets/", {"name": "x"}).status_code == 403
