"""Fix and retry: a failed video gets new or moved targets and is ingested again without a new
upload; every attempt stays in its history; clips of earlier attempts are never touched."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from django.db import connection

from annotation.errors import ConflictError, ServiceError
from annotation.ingest import services
from annotation.models import Clip, Video, VideoAttempt
from tests.annotation.ingest.formats import heads_frames, write_video

HEADS = [(60.0, 50.0), (200.0, 120.0)]
FLAT = services.Target(x=400.0, y=170.0)  # nothing there in frame 0: the target is lost


def _video(make_user, tmp_path: Path) -> Video:
    frames = heads_frames(width=480, height=200, heads=HEADS, n_frames=20)
    source = write_video(frames, tmp_path / "field.mp4", "mpeg4")
    with source.open("rb") as handle:
        return services.video_create(
            fileobj=handle, original_name="field.mp4", patient_code="P1", pixel_size_um=0.5,
            uploaded_by=make_user("curator"), enqueue=False,
        )  # fmt: skip


@pytest.mark.django_db
def test_a_failed_video_gets_a_moved_target_and_is_ingested_again_keeping_its_history(
    make_user, tmp_path: Path
) -> None:
    video = _video(make_user, tmp_path)
    curator = make_user("curator")
    services.video_ingest_start(
        video_id=video.pk, targets=[FLAT], requested_by=curator, enqueue=False
    )
    video = services.video_ingest(video_id=video.pk)
    assert video.status == "failed" and "(400, 170)" in video.error
    moved = services.Target(x=HEADS[0][0] + 0.354, y=HEADS[0][1])
    services.video_ingest_start(
        video_id=video.pk, targets=[moved], requested_by=curator, enqueue=False
    )
    video = services.video_ingest(video_id=video.pk)
    assert video.status == "ready", video.error
    first, second = VideoAttempt.objects.filter(video=video).order_by("number")
    assert (first.status, second.status) == ("failed", "ready")
    assert "(400, 170)" in first.error and first.targets[0]["x"] == FLAT.x
    assert first.finished_at and first.requested_by == curator
    assert second.targets[0]["x"] == moved.x and second.clip_ids == [f"v{video.pk}-t0"]
    clip = Clip.objects.get(video=video)
    assert clip.start_x == moved.x and clip.target_index == 0


@pytest.mark.django_db
def test_a_ready_video_gets_more_targets_and_its_earlier_clips_stay_as_they_are(
    make_user, tmp_path: Path, settings
) -> None:
    video = _video(make_user, tmp_path)
    curator = make_user("curator")
    first = services.Target(*HEADS[0])
    services.video_ingest_start(
        video_id=video.pk, targets=[first], requested_by=curator, enqueue=False
    )
    services.video_ingest(video_id=video.pk)
    kept = Clip.objects.get(video=video)
    kept_file = Path(settings.MEDIA_ROOT) / kept.frames_file.name
    before = kept_file.read_bytes()
    # The second attempt fails: the clip of the first one is untouched, files included, and
    # the video stays ready with it (partly failed).
    services.video_ingest_start(
        video_id=video.pk, targets=[FLAT], requested_by=curator, enqueue=False
    )
    assert services.video_ingest(video_id=video.pk).status == "ready"
    services.video_ingest_start(
        video_id=video.pk, targets=[services.Target(*HEADS[1])], requested_by=curator, enqueue=False
    )
    video = services.video_ingest(video_id=video.pk)
    assert video.status == "ready", video.error
    clips = list(Clip.objects.filter(video=video).order_by("target_index"))
    assert [c.external_id for c in clips] == [f"v{video.pk}-t0", f"v{video.pk}-t1"]
    assert clips[0].pk == kept.pk and clips[0].frames_file == kept.frames_file
    assert kept_file.read_bytes() == before
    assert [t["x"] for t in video.targets] == [HEADS[0][0], HEADS[1][0]]
    assert list(video.attempts.values_list("status", flat=True)) == ["ready", "failed", "ready"]


@pytest.mark.django_db
def test_targets_outside_the_frame_or_too_many_are_refused_with_the_reason(
    make_user, tmp_path: Path
) -> None:
    video = _video(make_user, tmp_path)
    services.video_first_frame_make(video_id=video.pk)
    with pytest.raises(ServiceError, match="outside the 480x200 frame"):
        services.video_ingest_start(
            video_id=video.pk, targets=[services.Target(480.0, 10.0)], requested_by=None
        )
    with pytest.raises(ServiceError, match="at most 50 targets"):
        services.video_ingest_start(
            video_id=video.pk, targets=[services.Target(1.0, 1.0)] * 51, requested_by=None
        )
    with pytest.raises(ServiceError, match="at least one target"):
        services.video_ingest_start(video_id=video.pk, targets=[], requested_by=None)
    video.refresh_from_db()
    assert video.status == "needs_targets" and not video.attempts.exists()


@pytest.mark.django_db(transaction=True)
def test_two_retries_at_the_same_moment_queue_one_attempt(make_user, tmp_path: Path) -> None:
    video = _video(make_user, tmp_path)
    services.video_fail(video_id=video.pk, error="an earlier failure")
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def retry() -> None:
        try:
            barrier.wait()
            services.video_ingest_start(
                video_id=video.pk, targets=[services.Target(*HEADS[0])], requested_by=None,
                enqueue=False,
            )  # fmt: skip
            outcomes.append("queued")
        except ConflictError:
            outcomes.append("conflict")
        finally:
            connection.close()

    threads = [threading.Thread(target=retry) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict", "queued"]
    assert VideoAttempt.objects.filter(video=video).count() == 1


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_one_step_upload_that_fails_gets_its_first_frame_and_is_retried_through_the_api(
    celery_worker_process, make_user, tmp_path: Path
) -> None:
    import json

    from rest_framework.test import APIClient

    from tests.conftest import wait_for

    frames = heads_frames(width=480, height=200, heads=HEADS, n_frames=20)
    source = write_video(frames, tmp_path / "field.avi", "mjpeg")
    api = APIClient()
    api.force_authenticate(make_user("curator"))
    with source.open("rb") as handle:
        body = {"file": handle, "patient_code": "P1", "pixel_size_um": "0.5"}
        body["targets"] = json.dumps([{"x": FLAT.x, "y": FLAT.y}])
        video_id = api.post("/api/videos/", body, format="multipart").json()["id"]
    wait_for(
        lambda: Video.objects.get(pk=video_id).first_frame_made_at is not None,
        timeout=90,
        what="the failure, then the first frame for the retry",
    )
    detail = api.get(f"/api/videos/{video_id}/").json()
    assert detail["status"] == "failed" and "(400, 170)" in detail["error"]
    head = detail["candidates"][0]
    retried = api.post(
        f"/api/videos/{video_id}/ingest/",
        {"targets": [{"x": head["x"], "y": head["y"]}]},
        format="json",
    )
    assert retried.status_code == 202, retried.content
    wait_for(lambda: Video.objects.get(pk=video_id).status in ("ready", "failed"), timeout=90)
    detail = api.get(f"/api/videos/{video_id}/").json()
    assert detail["status"] == "ready", detail["error"]
    assert [a["status"] for a in detail["attempts"]] == ["failed", "ready"]
    assert "(400, 170)" in detail["attempts"][0]["error"]
    assert detail["clip_ids"] == [f"v{video_id}-t0"]


THREE = [(60.0, 50.0), (200.0, 120.0), (330.0, 60.0)]


def _three_heads_one_vanishing(make_user, tmp_path: Path, *, vanishes_at: int) -> Video:
    """Three heads; the third one vanishes at frame ``vanishes_at`` (out of focus)."""
    frames = heads_frames(width=480, height=200, heads=THREE, n_frames=20)
    without = heads_frames(width=480, height=200, heads=THREE[:2], n_frames=20)
    frames = np.concatenate([frames[:vanishes_at], without[vanishes_at:]])
    source = write_video(frames, tmp_path / "three.mp4", "mpeg4")
    with source.open("rb") as handle:
        return services.video_create(
            fileobj=handle, original_name="three.mp4", patient_code="P1", pixel_size_um=0.5,
            uploaded_by=make_user("curator"), enqueue=False,
        )  # fmt: skip


@pytest.mark.django_db
def test_one_lost_target_of_three_leaves_two_clips_and_is_reported_then_retried_alone(
    make_user, tmp_path: Path
) -> None:
    from rest_framework.test import APIClient

    video = _three_heads_one_vanishing(make_user, tmp_path, vanishes_at=3)
    curator = make_user("curator")
    services.video_ingest_start(
        video_id=video.pk, targets=[services.Target(*h) for h in THREE], requested_by=curator,
        enqueue=False,
    )  # fmt: skip
    video = services.video_ingest(video_id=video.pk)
    # The video is ready with the two clips it has; the third target's loss is on record.
    assert video.status == "ready"
    assert sorted(video.clips.values_list("target_index", flat=True)) == [0, 1]
    assert "partly failed: 1 of 3 targets lost" in video.error and "(330, 60)" in video.error
    attempt = VideoAttempt.objects.get(video=video)
    assert attempt.status == "partly_failed"
    assert [r["result"] for r in attempt.target_results] == ["clip", "clip", "lost"]
    assert attempt.target_results[2]["lost_at"] == 3
    assert attempt.clip_ids == [f"v{video.pk}-t0", f"v{video.pk}-t1"]
    api = APIClient()
    api.force_authenticate(curator)
    detail = api.get(f"/api/videos/{video.pk}/").json()
    assert detail["partly_failed"] is True and detail["status"] == "ready"
    assert [r["result"] for r in detail["target_results"]] == ["clip", "clip", "lost"]
    assert "lost at frame 3" in detail["target_results"][2]["error"]
    kept = {c.pk: c.frames_file.name for c in video.clips.all()}
    # The video's page says so, lists every target's result, and offers the retry.
    from django.test import Client
    from django.urls import reverse

    services.video_first_frame_make(video_id=video.pk)
    page = Client()
    page.force_login(curator)
    html = page.get(reverse("video-detail", args=[video.pk])).content.decode()
    assert "Ready, partly failed" in html and "Move the lost targets and retry" in html
    assert html.count('class="target-clip"') == 2 and html.count('class="target-lost"') == 1
    assert "lost at frame 3" in html and '"index": 2' in html  # the lost one, drawn in red

    # The curator moves the lost target onto a head that stays: only it is tracked again.
    moved = services.Target(x=THREE[0][0] + 0.25, y=THREE[0][1] + 0.5)
    retry = services.video_ingest_start(
        video_id=video.pk, targets=[moved], requested_by=curator, enqueue=False
    )
    assert retry.targets == [{"x": moved.x, "y": moved.y, "external_id": "", "index": 2}]
    video = services.video_ingest(video_id=video.pk)
    assert video.status == "ready" and video.error == ""
    clips = {c.target_index: c for c in video.clips.all()}
    assert sorted(clips) == [0, 1, 2] and clips[2].start_x == moved.x
    assert {c.pk: c.frames_file.name for c in clips.values() if c.target_index < 2} == kept
    assert list(video.attempts.values_list("status", flat=True)) == ["partly_failed", "ready"]
    detail = api.get(f"/api/videos/{video.pk}/").json()
    assert detail["partly_failed"] is False
    assert [r["result"] for r in detail["target_results"]] == ["clip", "clip", "clip"]


@pytest.mark.django_db
def test_a_retry_that_loses_every_target_again_leaves_the_video_ready_with_its_clips(
    make_user, tmp_path: Path
) -> None:
    video = _three_heads_one_vanishing(make_user, tmp_path, vanishes_at=3)
    curator = make_user("curator")
    services.video_ingest_start(
        video_id=video.pk, targets=[services.Target(*h) for h in THREE], requested_by=curator,
        enqueue=False,
    )  # fmt: skip
    video = services.video_ingest(video_id=video.pk)
    kept = {c.pk: c.frames_file.name for c in video.clips.all()}
    assert len(kept) == 2
    # The curator moves the lost target onto empty background: the retry loses it again.
    services.video_ingest_start(
        video_id=video.pk, targets=[FLAT], requested_by=curator, enqueue=False
    )
    video = services.video_ingest(video_id=video.pk)
    assert video.status == "ready", video.error
    assert video.error.startswith("partly failed: this retry gave no clip")
    assert {c.pk: c.frames_file.name for c in video.clips.all()} == kept
    assert list(video.attempts.values_list("status", flat=True)) == ["partly_failed", "failed"]
    from annotation.ingest.selectors import video_partly_failed, video_target_results

    assert video_partly_failed(video)
    rows = video_target_results(video)
    assert [r["result"] for r in rows] == ["clip", "clip", "lost"]
    assert "(400, 170)" in rows[2]["error"]
    # It can be moved and retried once more.
    moved = services.Target(x=THREE[0][0] + 0.25, y=THREE[0][1] + 0.5)
    services.video_ingest_start(
        video_id=video.pk, targets=[moved], requested_by=curator, enqueue=False
    )
    video = services.video_ingest(video_id=video.pk)
    assert video.status == "ready" and video.error == ""
    assert video.clips.count() == 3


@pytest.mark.django_db
def test_a_target_that_swims_out_late_keeps_a_shorter_clip_that_dataset_builds_leave_out(
    make_user, tmp_path: Path
) -> None:
    from datasets.selection import filters_normalised, selection_read
    from simulator.synthetic import SyntheticConfig, render_target_frames

    config = SyntheticConfig(
        width=640, height=480, n_frames=16, fps=15.0, failure_mode="leaves_frame_late"
    )
    rendered = render_target_frames(motility=0.8, morphology=0.5, config=config, seed=4)
    source = write_video(rendered.frames, tmp_path / "late.mp4", "mpeg4")
    with source.open("rb") as handle:
        video = services.video_create(
            fileobj=handle, original_name="late.mp4", patient_code="P1", pixel_size_um=0.5,
            uploaded_by=None, enqueue=False,
            targets=[services.Target(float(rendered.track[0, 0]), float(rendered.track[0, 1]))],
        )  # fmt: skip
    video = services.video_ingest(video_id=video.pk)
    assert video.status == "ready", video.error
    clip = Clip.objects.get(video=video)
    attempt = VideoAttempt.objects.get(video=video)
    (result,) = attempt.target_results
    assert attempt.status == "ready" and result["result"] == "short_clip"
    assert result["loss"] == "left_frame" and "keeps the" in result["error"]
    assert 8 <= clip.n_frames < 16 and clip.n_frames == result["lost_at"]
    assert len(clip.track) == clip.n_frames
    assert np.load(Path(clip.frames_file.path)).shape[0] == clip.n_frames
    # Every kept frame is before the head reached the edge: the track lies inside the image.
    track = np.array(clip.track)
    assert (track >= 0).all() and (track[:, 0] < 640).all() and (track[:, 1] < 480).all()
    # Graded like any clip, but training reads 16 frames: a build leaves it out, and says so.
    Clip.objects.filter(pk=clip.pk).update(votes_a=2, votes_total=2)
    chosen = selection_read(filters_normalised())
    assert chosen.clips == [] and chosen.left_out["clips_short"] == 1


def test_new_targets_take_the_places_of_lost_ones_and_a_lost_one_left_over_is_dropped() -> None:
    a, b, c, d = ({"x": float(i), "y": 1.0, "external_id": ""} for i in range(4))
    new = [{"x": 9.0, "y": 9.0, "external_id": ""}]
    # Targets 1 and 3 were lost; 0 and 2 have clips: the new one takes 1's place, 3 goes.
    placed, indices = services._targets_placed([a, b, c, d], {0, 2}, new)
    assert placed == [a, new[0], c] and indices == [1]
    # With 3 kept too, the lost one in the middle that gets no new target is marked dropped.
    placed, indices = services._targets_placed([a, b, c, d], {0, 2, 3}, [])
    assert placed == [a, {**b, "dropped": True}, c, d] and indices == []
    # More new targets than lost places: the rest are added at the end.
    placed, indices = services._targets_placed([a, b], {0}, [new[0], d])
    assert placed == [a, new[0], d] and indices == [1, 2]
