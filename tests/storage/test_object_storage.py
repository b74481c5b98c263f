"""Media, exports and checkpoints through a real S3 API (moto's server), with a worker on
"another host": its own var folder, no access to this process's media folder."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from annotation.models import Clip, Video
from datasets.models import DatasetVersion
from modeling.models import EpochRecord, ExperimentGrid, TrainingRun
from tests.conftest import wait_for
from tests.modeling.conftest import TINY_CONFIG
from tests.storage.conftest import BUCKET

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def _fetch(url: str) -> bytes:
    assert url.startswith("http://127.0.0.1:"), url  # the presigned URL of the moto server
    with urllib.request.urlopen(url, timeout=30) as answer:  # noqa: S310 (loopback only)
        return answer.read()


def _files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_an_uploaded_video_goes_to_the_bucket_and_a_worker_on_another_host_ingests_it(
    s3_worker: Path, object_storage, make_user, synthetic_small: Path, settings
) -> None:
    row = pd.read_csv(synthetic_small / "clips.csv").iloc[0]
    curator = make_user("curator")
    api = APIClient()
    api.force_authenticate(curator)
    source = synthetic_small / row.video
    with source.open("rb") as handle:
        response = api.post(
            "/api/videos/",
            {
                "file": handle, "patient_code": "P-s3", "pixel_size_um": "0.5",
                "targets": json.dumps([{"x": row.x, "y": row.y, "external_id": "s3-1"}]),
            },
            format="multipart",
        )  # fmt: skip
    assert response.status_code == 201, response.content
    video = Video.objects.get(pk=response.json()["id"])
    # The file is an object of the bucket, not a file of this host's media folder.
    assert f"media/{video.file.name}" in object_storage.keys("media/videos/")
    assert _files_under(Path(settings.MEDIA_ROOT)) == []
    wait_for(
        lambda: Video.objects.get(pk=video.pk).status in ("ready", "failed"),
        timeout=120,
        what="the S3 worker to ingest the video",
    )
    video.refresh_from_db()
    assert video.status == "ready", video.error
    assert video.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    clip = Clip.objects.get(external_id="s3-1")
    stored = set(object_storage.keys("media/"))
    for name in (clip.frames_file.name, clip.crop_file.name, clip.filmstrip_file.name):
        assert f"media/{name}" in stored
    assert f"media/{video.preview.name}" in stored
    # The worker decoded its own cached copy, named by the content hash it verified, and
    # kept no clip folder of its own once the files were in the bucket.
    cached = _files_under(s3_worker / "cache" / "files")
    assert any(p.name.startswith(video.sha256) for p in cached)
    assert not any("clips" in p.parts for p in _files_under(s3_worker / "media"))
    # Pages link media through the app (role checked), which redirects to a presigned URL.
    assert clip.crop_file.url == f"/media/{clip.crop_file.name}"
    pages = Client()
    pages.force_login(curator)
    media = pages.get(f"/media/{clip.filmstrip_file.name}")
    assert media.status_code == 302
    assert _fetch(media["Location"])[:8] == b"\x89PNG\r\n\x1a\n"
    assert pages.get("/media/clips/no-such-file.png").status_code == 404
    # The source video stays for curators, in the bucket as on disk.
    expert = Client()
    expert.force_login(make_user("expert"))
    assert expert.get(f"/media/{video.file.name}").status_code == 403
    assert expert.get(f"/media/{clip.crop_file.name}").status_code == 302


def test_an_altered_object_is_refused_when_a_worker_materialises_it(
    object_storage, tmp_path: Path
) -> None:
    from django.core.files.base import ContentFile

    from annotation.storage import MEDIA, CacheVerifyError, cache, storage_for

    storage = storage_for(MEDIA)
    name = storage.save("videos/altered-test.mp4", ContentFile(b"\x00\x00\x00\x18ftypisom" * 10))
    with pytest.raises(CacheVerifyError, match="hashes to"):
        cache().materialise(storage, name, sha256="0" * 64)
    assert cache().entries() == []  # nothing half-kept
    right = hashlib.sha256(b"\x00\x00\x00\x18ftypisom" * 10).hexdigest()
    path = cache().materialise(storage, name, sha256=right)
    assert path.read_bytes() == b"\x00\x00\x00\x18ftypisom" * 10


def test_a_version_is_built_exported_and_trained_through_the_bucket_and_resumes_elsewhere(
    s3_worker: Path, object_storage, make_user, synthetic_small: Path, settings, tmp_path: Path
) -> None:
    from datasets import services as dataset_services
    from modeling import services as modeling_services

    # Imported here (web host): the media go to the bucket.
    call_command("import_dataset", str(synthetic_small), "--no-progress")
    assert _files_under(Path(settings.MEDIA_ROOT) / "clips") == []
    curator = make_user("curator")
    # Built by the worker: it fetches the media from the bucket and writes the export there.
    version = dataset_services.dataset_version_create(name="s3-v1", created_by=curator)
    wait_for(
        lambda: DatasetVersion.objects.get(pk=version.pk).status in ("ready", "failed"),
        timeout=180,
        what="the S3 worker to build the version",
    )
    version.refresh_from_db()
    assert version.status == "ready", version.error
    exported = set(object_storage.keys(f"exports/{version.name}/"))
    assert f"exports/{version.name}/MANIFEST.sha256" in exported
    assert f"exports/{version.name}/splits.csv" in exported
    assert len(version.archive_sha256) == 64 and version.archive_bytes > 0

    # The download is a presigned URL to the archive, whose bytes are the frozen ones.
    api = APIClient()
    api.force_authenticate(curator)
    answer = api.get(f"/api/datasets/{version.name}/download/")
    assert answer.status_code == 302, answer.content[:300]
    archive = _fetch(answer["Location"])
    assert hashlib.sha256(archive).hexdigest() == version.archive_sha256
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        manifest = tar.extractfile(f"mersv-{version.name}/MANIFEST.sha256").read()
    assert hashlib.sha256(manifest).hexdigest() == version.content_hash

    # Rebuilt on another host (this process, another cache) from the bucket: byte-identical.
    settings.CACHE_ROOT = tmp_path / "third-host-cache"
    out = tmp_path / "rebuilt"
    call_command("export_dataset", version.name, "--out", str(out))
    from datasets.export import stream_tar

    assert b"".join(stream_tar(out, root=f"mersv-{version.name}")) == archive

    # Training in the worker: the checkpoints go to the bucket; cancelled after its first
    # checkpoint, the run resumes here (another host, an empty runs folder) from the bucket.
    run = modeling_services.training_run_start(
        version=version,
        config={**TINY_CONFIG, "epochs": 400, "early_stopping_patience": None},
        created_by=curator,
    )
    folder = Path(run.checkpoint_dir).name
    wait_for(
        lambda: any(k.endswith("last.pt") for k in object_storage.keys(f"runs/{folder}/")),
        timeout=180,
        what="a checkpoint of the worker in the bucket",
    )
    modeling_services.training_run_cancel(run=run, by=curator)
    wait_for(
        lambda: TrainingRun.objects.get(pk=run.pk).status == "cancelled",
        timeout=120,
        what="the worker to stop the run",
    )
    trained = {
        (r.fold, r.epoch): (r.train_loss, r.seconds) for r in EpochRecord.objects.filter(run=run)
    }
    assert trained
    # Fewer epochs from here on: the resumed fold stops soon after where the worker was.
    last_epoch = max(epoch for _, epoch in trained)
    run.refresh_from_db()
    TrainingRun.objects.filter(pk=run.pk).update(config={**run.config, "epochs": last_epoch + 1})
    settings.TRAINING_RUNS_ROOT = tmp_path / "resume-host-runs"
    modeling_services.training_run_resume(run=run, enqueue=False)
    modeling_services.training_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    again = {
        (r.fold, r.epoch): (r.train_loss, r.seconds) for r in EpochRecord.objects.filter(run=run)
    }
    # The epochs the worker had trained were not trained again (same losses and times).
    assert {k: again[k] for k in trained} == trained
    resumed_fold = next(f for f, e in trained if e == last_epoch)
    assert again[(resumed_fold, last_epoch + 1)] is not None
    assert (tmp_path / "resume-host-runs" / folder / f"fold_{resumed_fold}" / "last.pt").is_file()
    stored = object_storage.keys(f"runs/{folder}/")
    assert sum(k.endswith("model.pt") for k in stored) == run.n_folds


def test_a_grid_report_a_worker_on_another_host_wrote_is_served_by_the_web_side(
    s3_worker: Path, object_storage, make_user, synthetic_small: Path, settings
) -> None:
    from datasets import services as dataset_services
    from modeling import services as modeling_services

    call_command("import_dataset", str(synthetic_small), "--no-progress")
    curator = make_user("curator")
    version = dataset_services.dataset_version_create(name="s3-grid", created_by=curator)
    wait_for(
        lambda: DatasetVersion.objects.get(pk=version.pk).status in ("ready", "failed"),
        timeout=180,
        what="the S3 worker to build the version",
    )
    version.refresh_from_db()
    assert version.status == "ready", version.error
    grid = modeling_services.experiment_grid_start(
        version=version, backbones=["resnet"], losses=["ce"], epochs=1,
        base_config={"batch_size": 4, "optimizer": "adam"}, created_by=curator,
    )  # fmt: skip
    wait_for(
        lambda: ExperimentGrid.objects.get(pk=grid.pk).status not in ("pending", "running"),
        timeout=300,
        what="the S3 worker to train the grid",
    )
    grid.refresh_from_db()
    assert grid.status == "succeeded", grid.error
    # The report is in the bucket, and on neither host's disk.
    stored = set(object_storage.keys(f"runs/grids/{grid.pk}/"))
    assert {f"runs/grids/{grid.pk}/report.md", f"runs/grids/{grid.pk}/report.html"} <= stored
    assert any(k.endswith(".svg") for k in stored)
    assert not _files_under(s3_worker / "runs" / "grids")
    assert not _files_under(Path(settings.TRAINING_RUNS_ROOT) / "grids")
    # This process (the web host) serves every file of it to curators, streamed from the bucket.
    pages = Client()
    pages.force_login(curator)
    url = f"/training/grids/{grid.pk}/report/"
    markdown = pages.get(url + "report.md")
    assert markdown.status_code == 200
    assert (
        markdown.content
        == object_storage.client()
        .get_object(Bucket=BUCKET, Key=f"{object_storage.prefix}/runs/grids/{grid.pk}/report.md")[
            "Body"
        ]
        .read()
    )
    assert "| ResNet + CE |" in markdown.content.decode()
    html = pages.get(url + "report.html").content.decode()
    for key in stored:
        name = key.rsplit("/", 1)[1]
        if name.endswith(".svg"):
            assert f'src="{name}"' in html  # report.html's figures, beside it
            figure = pages.get(url + name)
            assert figure.status_code == 200 and figure.content.lstrip().startswith(b"<svg")
    page = pages.get(f"/training/grids/{grid.pk}/").content.decode()
    assert f'href="{url}report.html"' in page
    assert pages.get(url + "nothing.svg").status_code == 404
    expert = Client()
    expert.force_login(make_user("expert"))
    assert expert.get(url + "report.md").status_code == 403


def test_pretrained_weights_are_files_of_the_bucket_that_each_host_caches(
    object_storage, settings, tmp_path: Path
) -> None:
    from django.core.files.base import ContentFile

    from annotation.storage import RUNS, storage_for
    from modeling import services as modeling_services

    settings.WEIGHTS_DIR = tmp_path / "no-local-weights"  # not read with object storage
    with pytest.raises(modeling_services.TrainingError, match="copies weights files to runs/"):
        modeling_services.pretrained_check("encoder.pt")
    runs = storage_for(RUNS)
    runs.save("weights/encoder.pt", ContentFile(b"first weights"))
    assert "runs/weights/encoder.pt" in object_storage.keys("runs/weights/")
    modeling_services.training_config_check({"pretrained": "encoder.pt"})  # no download here
    assert not (tmp_path / "web-cache" / "weights").exists()
    path = modeling_services.pretrained_path("encoder.pt")
    assert path.is_relative_to(tmp_path / "web-cache" / "weights")
    assert path.read_bytes() == b"first weights"
    assert modeling_services.pretrained_path("encoder.pt") == path  # cached
    with pytest.raises(modeling_services.TrainingError) as missing:
        modeling_services.pretrained_check("other.pt")
    assert str(missing.value).endswith("the weights there: encoder.pt")
    # Replaced in the bucket (another size): the hosts fetch the new file.
    runs.save("weights/encoder.pt", ContentFile(b"second, longer weights"))
    again = modeling_services.pretrained_path("encoder.pt")
    assert again != path and again.read_bytes() == b"second, longer weights"
    runs.delete("weights/encoder.pt")
