"""Reads of ingestion, shaped for the video page and the API."""

from __future__ import annotations

from typing import Any

from annotation.models import Video, VideoAttempt


def video_target_results(video: Video) -> list[dict[str, Any]]:
    """Per target of the video (its index in ``video.targets``), what became of it.

    ``result`` is "clip", "short_clip" (cut short by a loss near the end), "lost" (no clip:
    ``error`` says why, for the curator to move it and retry), "dropped" (lost, and replaced
    by no new target on a retry), or "queued" (not tracked yet). Two queries, whatever the
    number of targets (the clips and the finished attempts).
    """
    clips = {c.target_index: c for c in video.clips.all()}
    # The newest word on each target: the latest finished attempt that tracked it.
    said: dict[int, dict[str, Any]] = {}
    failures: dict[int, str] = {}
    attempts = video.attempts.exclude(
        status__in=[VideoAttempt.Status.QUEUED, VideoAttempt.Status.RUNNING]
    ).order_by("number")
    for attempt in attempts:
        for result in attempt.target_results:
            said[int(result["index"])] = result
        if attempt.status == VideoAttempt.Status.FAILED:
            for target in attempt.targets:
                if "index" in target:  # attempts before per-target results lack it
                    said.pop(int(target["index"]), None)
                    failures[int(target["index"])] = attempt.error
    busy = video.status in (Video.Status.PENDING, Video.Status.PROCESSING)
    rows = []
    for index, target in enumerate(video.targets):
        row: dict[str, Any] = {"index": index, "x": target["x"], "y": target["y"]}
        clip = clips.get(index)
        if clip is not None:
            short = said.get(index, {}).get("result") == "short_clip"
            row |= {
                "result": "short_clip" if short else "clip",
                "clip_id": clip.external_id,
                "n_frames": clip.n_frames,
                "error": said.get(index, {}).get("error", "") if short else "",
            }
        elif target.get("dropped"):
            row |= {"result": "dropped", "clip_id": "", "n_frames": 0, "error": ""}
        elif busy:
            row |= {"result": "queued", "clip_id": "", "n_frames": 0, "error": ""}
        else:
            error = said.get(index, {}).get("error") or failures.get(index) or video.error
            row |= {"result": "lost", "clip_id": "", "n_frames": 0, "error": error}
        rows.append(row)
    return rows


def video_partly_failed(video: Video) -> bool:
    """A ready video some of whose targets were lost: its clips are in use, and the lost
    targets can be moved and retried."""
    return video.status == Video.Status.READY and any(
        row["result"] == "lost" for row in video_target_results(video)
    )
