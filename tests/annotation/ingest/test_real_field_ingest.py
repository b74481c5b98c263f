"""The real semen field (../shared/data/real-field/S_0001.mp4: MPEG-4 Part 2, heads about
12 x 8 px) through the whole path in the real worker: uploaded without targets, its first
frame and candidate heads made, several heads tagged and tracked, clips and kinematics
stored, and a sample triage over them with a model trained in the worker."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from annotation.models import Clip, Video
from modeling.models import TrainingRun
from tests.conftest import PASSWORD, ROOT, wait_for
from tests.modeling.conftest import TINY_CONFIG, build_version

# Heads about 12 px long in this field (measured by eye on frame 0); 4.5 um / 12 px.
PIXEL_SIZE_UM = 0.375
N_TARGETS = 8
MIN_TRACKED = 5


def real_field_video() -> Path:
    """The shared real field; never copied into the repository. MERSV_SHARED_DATA overrides
    where the shared data lie."""
    shared = Path(os.environ.get("MERSV_SHARED_DATA") or ROOT.parent / "shared" / "data")
    path = shared / "real-field" / "S_0001.mp4"
    if not path.is_file():
        pytest.fail(
            f"the real field video is missing at {path}: put the shared data beside the "
            "checkout (../shared/data/real-field/S_0001.mp4) or set MERSV_SHARED_DATA"
        )
    return path


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_real_field_is_previewed_tagged_tracked_and_triaged(
    celery_worker_process, make_user, synthetic_small: Path
) -> None:
    api = APIClient()
    assert api.login(username=make_user("curator").username, password=PASSWORD)
    with real_field_video().open("rb") as handle:
        response = api.post(
            "/api/videos/",
            {"file": handle, "patient_code": "P-real", "pixel_size_um": str(PIXEL_SIZE_UM)},
            format="multipart",
        )
    assert response.status_code == 201, response.content
    video_id = response.json()["id"]
    wait_for(
        lambda: Video.objects.get(pk=video_id).first_frame_made_at is not None,
        timeout=60,
        what="the worker to make the first frame",
    )
    detail = api.get(f"/api/videos/{video_id}/").json()
    assert (detail["width"], detail["height"]) == (698, 528)
    assert detail["status"] == "needs_targets"
    candidates = detail["candidates"]
    assert len(candidates) >= 20  # a dense field: dozens of heads (benchmarks/candidates.py)
    assert api.get(detail["first_frame_url"]).status_code == 200

    # As a curator would: heads well inside the field (a head swims up to ~4 px a frame here,
    # 16 frames take it 60 px). A lost target fails only itself (a shorter clip when lost at
    # frame 8 or later), its reason on record; the curator moves each lost one onto another
    # head and retries only those, without a new upload, until none is lost.
    inside = [c for c in candidates if 60 <= c["x"] <= 698 - 60 and 60 <= c["y"] <= 528 - 60]
    targets = [{"x": c["x"], "y": c["y"]} for c in inside[:N_TARGETS]]
    spare = iter(inside[N_TARGETS:])
    lost_reasons = []
    for _attempt in range(4):
        started = api.post(f"/api/videos/{video_id}/ingest/", {"targets": targets}, format="json")
        assert started.status_code == 202, started.content
        wait_for(
            lambda: Video.objects.get(pk=video_id).status in ("ready", "failed"),
            timeout=180,
            what="the worker to ingest the tagged heads",
        )
        detail = api.get(f"/api/videos/{video_id}/").json()
        lost = [r for r in detail["target_results"] if r["result"] == "lost"]
        for row in lost:  # a loss names its target and frame: never a silent failure
            assert re.match(r"the target at \([\d.]+, [\d.]+\) was lost at frame \d+", row["error"])
        lost_reasons += [row["error"] for row in lost]
        if not lost:
            break
        # Ready with the clips it has (partly failed), or failed when every head tried in
        # this attempt was lost: the clips of earlier attempts stay either way.
        assert detail["partly_failed"] or detail["status"] == "failed", detail["error"]
        targets = [{"x": c["x"], "y": c["y"]} for _, c in zip(lost, spare, strict=False)]
    video = Video.objects.get(pk=video_id)
    assert video.status == "ready" and not detail["partly_failed"], lost_reasons
    clips = list(Clip.objects.filter(video=video).order_by("target_index"))
    assert len(clips) == N_TARGETS
    for clip, row in zip(clips, detail["target_results"], strict=True):
        assert (clip.start_x, clip.start_y) == (row["x"], row["y"])
        assert len(clip.track) == clip.n_frames and 8 <= clip.n_frames <= 16
        assert clip.vcl >= clip.vsl >= 0
    full = [c for c in clips if c.n_frames == 16]
    assert len(full) >= MIN_TRACKED
    assert len({c.vcl for c in clips}) > 1  # each head its own kinematics

    # Sample triage over the video's heads: a tiny model trained in the worker ranks them.
    version = build_version(synthetic_small, name="real-field-triage")
    options = {**TINY_CONFIG, "early_stopping_patience": 0}
    posted = api.post("/api/training-runs/", {"dataset": version.name, **options}, format="json")
    assert posted.status_code == 201, posted.content
    run = posted.json()
    try:
        wait_for(
            lambda: TrainingRun.objects.get(pk=run["id"]).status not in ("pending", "running"),
            timeout=300,
            what="the worker to train the triage model",
        )
        assert TrainingRun.objects.get(pk=run["id"]).status == "succeeded"
        first = api.get(f"/api/triage/{video_id}/", {"run": run["id"]}).json()
        # Queued for the worker, never run in the view; a shorter clip is never predicted.
        assert first["pending"] == len(full)
        wait_for(
            lambda: api.get(f"/api/triage/{video_id}/", {"run": run["id"]}).json()["pending"] == 0,
            timeout=120,
            what="the worker to predict the real clips",
        )
        triage = api.get(f"/api/triage/{video_id}/", {"run": run["id"]}).json()
        assert triage["error"] == ""
        ranks = [row["rank"] for row in triage["clips"]]
        assert ranks == [*range(1, len(full) + 1), *[None] * (len(clips) - len(full))]
        assert {row["clip_id"] for row in triage["clips"]} == {c.external_id for c in clips}
        goods = [row["p_good"] for row in triage["clips"] if row["rank"] is not None]
        assert goods == sorted(goods, reverse=True)
    finally:
        for folder in TrainingRun.objects.values_list("checkpoint_dir", flat=True):
            shutil.rmtree(folder, ignore_errors=True)
