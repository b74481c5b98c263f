"""Fixtures of the grading tests: clips with real (small) media, made without the ingestion
pipeline, and votes cast through the grading service."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from django.conf import settings

from annotation.ingest.kinematics import KINEMATICS_KEYS
from annotation.models import Clip, Patient, Video

CROP = 150
_ids = itertools.count(1)


def frame_level(frame_index: int) -> int:
    """The grey level filling frame `frame_index` (0-based) of a test filmstrip: every frame
    differs, none is black, so a test can read which frame a canvas shows."""
    return 40 + 25 * frame_index


def media_write(folder: Path, n_frames: int) -> dict[str, str]:
    """A filmstrip PNG (n_frames tiles of 150x150 stacked top to bottom, each with its frame
    number drawn in), the frame array and a stub MP4; returns paths relative to MEDIA_ROOT."""
    frames = np.empty((n_frames, CROP, CROP), np.uint8)
    for i in range(n_frames):
        frames[i] = frame_level(i)
        cv2.putText(frames[i], str(i + 1), (45, 100), cv2.FONT_HERSHEY_SIMPLEX, 2.4, 255, 5)
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / "filmstrip.png"), frames.reshape(n_frames * CROP, CROP))
    np.save(folder / "frames.npy", frames)
    (folder / "crop.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 stub")
    root = Path(settings.MEDIA_ROOT)
    return {
        "filmstrip_file": str((folder / "filmstrip.png").relative_to(root)),
        "frames_file": str((folder / "frames.npy").relative_to(root)),
        "crop_file": str((folder / "crop.mp4").relative_to(root)),
    }


def stub_clip_create(
    *,
    external_id: str,
    patient_code: str,
    n_frames: int,
    status: str = Video.Status.READY,
    retired: bool = False,
    start: tuple[float, float] = (100.0, 120.0),
) -> Clip:
    """A Clip of its own video (no decoding: rows written directly) with real small media under
    MEDIA_ROOT, unit kinematics and no votes. Shared by the test folders' clip factories."""
    patient, _ = Patient.objects.get_or_create(code=patient_code)
    x, y = start
    video = Video.objects.create(
        patient=patient,
        file=f"videos/{external_id}.mp4",
        original_name=f"{external_id}.mp4",
        pixel_size_um=0.5,
        fps=15.0,
        width=640,
        height=480,
        frame_count=n_frames,
        targets=[{"x": x, "y": y, "external_id": external_id}],
        status=status,
    )
    media = media_write(Path(settings.MEDIA_ROOT) / "clips" / external_id, n_frames)
    kinematics = Clip.kinematics_fields(dict.fromkeys(KINEMATICS_KEYS, 1.0))
    return Clip.objects.create(
        video=video,
        external_id=external_id,
        start_x=x,
        start_y=y,
        track=[[x + i, y + i / 2] for i in range(n_frames)],
        match_scores=[1.0] * n_frames,
        n_frames=n_frames,
        crop_size=CROP,
        retired_at="2026-01-01T00:00:00Z" if retired else None,
        **kinematics,
        **media,
    )


@pytest.fixture
def make_clip() -> Callable[..., Clip]:
    """Factory: ``make_clip(n_frames=8, status="ready", retired=False)`` -> a Clip of its own
    READY video, with a real filmstrip under MEDIA_ROOT and no votes."""

    def make(*, n_frames: int = 8, status: str = Video.Status.READY, retired: bool = False) -> Clip:
        tag = f"{next(_ids):03d}-{uuid.uuid4().hex[:6]}"
        return stub_clip_create(
            external_id=f"g{tag}",
            patient_code="P-grading",
            n_frames=n_frames,
            status=status,
            retired=retired,
        )

    return make


@pytest.fixture
def cast_votes(make_user) -> Callable[[Clip, str], list]:
    """``cast_votes(clip, "AAC")``: new experts grade the clip through the grading service."""
    from tests.grading_support import grade_offered

    def cast(clip: Clip, grades: str) -> list:
        return [grade_offered(make_user("expert"), clip, g) for g in grades]

    return cast
