"""Ingest one uploaded video: track each target sperm, crop it, measure it, write the files.

Plain Python, no Django: the Celery task calls ``process_video`` and stores what it returns.

For each target (its head centre in frame 0, clicked by a person or read from clips.csv) the
first ``n_frames`` of the video give

- ``clip_{i}.npy``: the (n_frames, crop_size, crop_size) uint8 grey crops the model reads,
- ``clip_{i}.mp4``: the same crops as H.264 for the grading page,
- ``clip_{i}.png``: the same crops stacked top to bottom (exact frame stepping on a canvas),

and the WHO kinematics of the track; ``preview.mp4`` is the full field of those frames,
scaled down to at most ``preview_max_width`` px wide (the page draws the tracks on top of it,
at the scale ``video.videoWidth / info.width``).

The work streams frame by frame: decode, track every target, crop, shrink for the preview,
and encode the preview and every clip (libx264 in this process). Frames are tracked and
encoded in the file's own levels (limited-range luma for most video); only the crops kept as
.npy and .png are stretched to full-range grey.

Files appear in ``out_dir`` all together or not at all: everything is written into a hidden
staging folder beside it and renamed at the end, so an IngestError (or any other failure)
leaves no partial output and an ``out_dir`` from an earlier run untouched.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from annotation.ingest.kinematics import Kinematics, kinematics
from annotation.ingest.scale import HEAD_LENGTH_UM, HEAD_WIDTH_UM, TrackingScale, tracking_scale
from annotation.ingest.tracking import CROP_FILL, HeadTracker, crop_centred
from annotation.ingest.video_io import (
    H264Output,
    H264Writer,
    IngestError,
    VideoInfo,
    stretch_to_full_range,
    video_frames_luma,
    write_filmstrip_png,
)

PREVIEW_NAME = "preview.mp4"
# The preview only shows where the tracks run: the fastest x264 preset, and a quality factor
# that drops the sensor noise, which would otherwise cost most of the bits and of the time.
PREVIEW_CRF = 23
PREVIEW_PRESET = "ultrafast"
# The clips' MP4s are for playing; experts step through the lossless filmstrip PNG, so the
# clips favour speed too.
CLIP_CRF = 18
CLIP_PRESET = "ultrafast"

Box = tuple[int, int, int, int]  # x, y, width, height

# The fewest frames of a clip a model can use (the video backbones sample 8 frames of it).
MIN_CLIP_FRAMES = 8


@dataclass(frozen=True)
class IngestConfig:
    """How clips are cut. The defaults are the paper's (16 frames = 1 s, 150 px crops) and
    the tracker's tuned ones (see `annotation.ingest.tracking`).

    ``crop_size``, ``template_size`` and ``search_radius`` left at None are derived from the
    video's pixel size and the expected head size in µm (`annotation.ingest.scale`): 150, 13
    and 24 px at 0.5 µm/px with the default 4.6 x 3.0 µm head.

    A clip has ``n_frames`` frames, or fewer when its target was lost near the end: a target
    lost at frame k >= ``min_frames`` keeps the k frames before (a shorter clip, its
    ``cut_short`` saying why); one lost earlier gets no clip and the error that says why
    (``VideoOutput.lost``), while the other targets' clips are kept. ``min_frames`` is the
    fewest frames a model can use: the video backbones sample 8 frames of a clip
    (`modeling.ml.backbones`, a test ties the two). Training reads the first ``n_frames`` of
    every clip, so dataset builds leave the shorter clips out (`datasets.selection`).
    """

    n_frames: int = 16
    min_frames: int = MIN_CLIP_FRAMES
    crop_size: int | None = None
    template_size: int | None = None
    search_radius: int | None = None
    preview_max_width: int = 640
    smoothing_window: int = 5
    head_length_um: float = HEAD_LENGTH_UM
    head_width_um: float = HEAD_WIDTH_UM

    def scale(self, pixel_size_um: float) -> TrackingScale:
        """The head-dependent sizes at this pixel size (`annotation.ingest.scale`)."""
        return tracking_scale(
            pixel_size_um, head_length_um=self.head_length_um, head_width_um=self.head_width_um
        )

    def crop_size_at(self, pixel_size_um: float) -> int:
        """The side of the crops cut at this pixel size: ``crop_size``, or the derived one."""
        if self.crop_size is not None:
            return self.crop_size
        return self.scale(pixel_size_um).crop_size


@dataclass(frozen=True)
class TargetLost:
    """Why target ``target`` (its index in the targets given) was lost at frame ``lost_at``:
    the tracker's loss ``code`` and the sentence a curator reads."""

    target: int
    code: str
    lost_at: int
    message: str


@dataclass(frozen=True)
class ClipOutput:
    """One tracked target: its track, kinematics and the files written for it."""

    track: np.ndarray  # (T, 2) float64, head centre (x, y) in px of the full frame
    kinematics: Kinematics
    frames_npy: Path  # (T, crop_size, crop_size) uint8
    crop_mp4: Path
    filmstrip_png: Path
    match_scores: list[float]  # per frame, TM_CCOEFF_NORMED; frame 0 is 1
    target: int = 0  # its index in the targets given
    # Set when the target was lost near the end: T = cut_short.lost_at < n_frames.
    cut_short: TargetLost | None = None

    @property
    def n_frames(self) -> int:
        return len(self.track)


@dataclass(frozen=True)
class VideoOutput:
    """What ``process_video`` made of one video: a clip per target kept (``clips[k].target``
    is its index in the targets given, in order) and why each other target was lost."""

    info: VideoInfo
    sha256: str  # of the source file's bytes
    preview_mp4: Path
    clips: list[ClipOutput]
    lost: list[TargetLost] = field(default_factory=list)
    # Wall time per stage (decode, track, encode, hash), for logs and the benchmark. The
    # encoder works in its own process meanwhile: "encode" counts only the waits for it.
    stage_seconds: dict[str, float] = field(default_factory=dict)


def clip_file_names(index: int) -> tuple[str, str, str]:
    """Names of the .npy, .mp4 and .png files of target ``index`` inside ``out_dir``."""
    return f"clip_{index}.npy", f"clip_{index}.mp4", f"clip_{index}.png"


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class _Stopwatch:
    """Adds the wall time of ``with stopwatch("stage"):`` blocks up per stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.seconds[stage] = self.seconds.get(stage, 0.0) + elapsed


def _point_text(point: tuple[float, float]) -> str:
    return f"({point[0]:g}, {point[1]:g})"


def _check_targets(targets: Sequence[tuple[float, float]], info: VideoInfo) -> None:
    for x, y in targets:
        # NaN fails every comparison, so it is reported as outside too.
        if not (0 <= x < info.width and 0 <= y < info.height):
            raise IngestError(
                f"target point {_point_text((x, y))} lies outside the "
                f"{info.width}x{info.height} frame"
            )


def _target_lost(
    index: int, target: tuple[float, float], tracker: HeadTracker, *, kept: bool
) -> TargetLost:
    """The loss of ``tracker``'s target as a curator reads it; ``kept``: its frames before the
    loss make a shorter clip."""
    lost_at = tracker.lost_at or 0
    code = tracker.loss.code if tracker.loss is not None else "no_head"
    if lost_at == 0:
        message = (
            f"there is no sperm head to follow at {_point_text(target)} in frame 0 "
            "(the image is flat there): click the centre of the head"
        )
        return TargetLost(index, code, 0, message)
    reason = tracker.loss.message if tracker.loss is not None else "it could not be followed"
    message = (
        f"the target at {_point_text(target)} was lost at frame {lost_at} "
        f"(match score {tracker.scores[-1]:.2f}): {reason}. "
    )
    if kept:
        message += f"Its clip keeps the {lost_at} frames before"
    else:
        message += (
            "Choose a sperm that stays in view and does not cross others during the first "
            "frames, or move the target"
        )
    return TargetLost(index, code, lost_at, message)


def lost_targets_error(lost: Sequence[TargetLost]) -> IngestError:
    """The error of a video none of whose targets gave a clip."""
    if len(lost) == 1:
        return IngestError(lost[0].message)
    return IngestError(
        f"all {len(lost)} targets were lost: "
        + "; ".join(f"target {t.target + 1}: {t.message}" for t in lost)
    )


def _preview_size(width: int, height: int, max_width: int) -> tuple[int, int]:
    """(width, height) of the preview: at most ``max_width`` wide, both even (yuv420p)."""
    if width <= max_width:
        return width + width % 2, height + height % 2
    new_width = max(2, max_width - max_width % 2)
    return new_width, max(2, 2 * round(height * new_width / width / 2))


def _shrink(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``frame`` scaled down to ``size`` (width, height)."""
    # Halving with a Gaussian first, then a short bilinear step: as smooth as INTER_AREA at a
    # fraction of its cost for ratios that are not whole numbers.
    while frame.shape[1] >= 2 * size[0]:
        frame = cv2.pyrDown(frame)
    if frame.shape[1] <= size[0] and frame.shape[0] <= size[1]:
        return frame  # small already: padded to even sizes when placed
    return cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)


def _layout(preview: tuple[int, int], crop_size: int, n_crops: int) -> tuple[int, int, list[Box]]:
    """Where the preview and the crops go in the frames sent to the encoder: the preview at the
    top left, the crops in rows below it. Returns the frame's width, height and the boxes."""
    side = crop_size + crop_size % 2  # even for yuv420p
    width = max(preview[0], side)
    per_row = width // side
    boxes: list[Box] = [(0, 0, *preview)]
    for index in range(n_crops):
        row, column = divmod(index, per_row)
        boxes.append((column * side, preview[1] + row * side, side, side))
    rows = math.ceil(n_crops / per_row)
    return width, preview[1] + rows * side, boxes


def _place(canvas: np.ndarray, piece: np.ndarray, box: Box) -> None:
    """Copy ``piece`` into ``box`` of ``canvas``, repeating its last row and column to fill
    a box one pixel larger (odd sizes made even)."""
    x, y, width, height = box
    rows, columns = piece.shape
    canvas[y : y + rows, x : x + columns] = piece
    canvas[y + rows : y + height, x : x + columns] = piece[-1]
    canvas[y : y + height, x + columns : x + width] = canvas[y : y + height, x + columns - 1, None]


@contextmanager
def _staging_folder(out_dir: Path) -> Iterator[Path]:
    """A hidden folder beside ``out_dir`` that becomes ``out_dir`` when the block succeeds."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.with_name(f".{out_dir.name}.{secrets.token_hex(6)}.staging")
    staging.mkdir()
    try:
        yield staging
        if out_dir.exists():
            # Move the earlier run aside first: a rename cannot replace a non-empty folder.
            retired = staging.with_suffix(".retired")
            out_dir.rename(retired)
            staging.rename(out_dir)
            shutil.rmtree(retired)
        else:
            staging.rename(out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def process_video(
    path: Path,
    targets: Sequence[tuple[float, float]],
    *,
    out_dir: Path,
    pixel_size_um: float,
    config: IngestConfig = IngestConfig(),  # frozen: one shared default is safe
    fps: float | None = None,
) -> VideoOutput:
    """Track ``targets`` (head centres (x, y) in frame 0, px) through the video at ``path``.

    ``pixel_size_um`` is the microscope's µm per pixel; ``fps`` overrides the frame rate the
    file declares (clips.csv states one). Decodes only the first ``config.n_frames`` frames.
    Raises IngestError, leaving nothing in ``out_dir``, when the file is not a video, is too
    short, declares no frame rate and none is given, a target lies outside the frame, or
    every target is lost too early for a clip. Otherwise the targets lost too early are in
    ``lost``, with no files, and the others have their clips (see ``IngestConfig``).
    """
    path, out_dir = Path(path), Path(out_dir)
    if not (pixel_size_um > 0 and math.isfinite(pixel_size_um)):
        raise IngestError(f"the pixel size must be a positive number of µm, not {pixel_size_um}")
    if config.min_frames < 1:
        raise ValueError(f"min_frames must be at least 1, not {config.min_frames}")
    # Clips of fewer than n_frames frames exist only for n_frames above min_frames.
    min_frames = min(config.min_frames, config.n_frames)
    stopwatch = _Stopwatch()

    with ExitStack() as stack:
        with stopwatch("decode"):
            # Tracked and encoded as decoded (limited-range luma, mostly); only the crops kept
            # as .npy and .png are stretched to full-range grey, not every full frame.
            info, frames, limited = stack.enter_context(video_frames_luma(path, config.n_frames))
            first = next(frames)
        frame_rate = fps if fps is not None else info.fps
        if not (frame_rate > 0 and math.isfinite(frame_rate)):
            raise IngestError("the video does not declare its frame rate: give it with the upload")
        _check_targets(targets, info)
        with stopwatch("track"):
            trackers = [
                HeadTracker(
                    first,
                    target,
                    template_size=config.template_size,
                    search_radius=config.search_radius,
                    pixel_size_um=pixel_size_um,
                    fps=frame_rate,
                    head_length_um=config.head_length_um,
                    head_width_um=config.head_width_um,
                )
                for target in targets
            ]
        lost = [
            _target_lost(i, t, tr, kept=False)
            for i, (t, tr) in enumerate(zip(targets, trackers, strict=True))
            if tr.lost
        ]
        # The targets followed past frame 0, by their index in ``targets``.
        followed = [i for i, tracker in enumerate(trackers) if not tracker.lost]
        if not followed:
            raise lost_targets_error(lost)

        staging = stack.enter_context(_staging_folder(out_dir))
        preview_size = _preview_size(info.width, info.height, config.preview_max_width)
        crop_size = config.crop_size_at(pixel_size_um)
        width, height, boxes = _layout(preview_size, crop_size, len(followed))
        videos = [H264Output(staging / PREVIEW_NAME, boxes[0], PREVIEW_CRF, PREVIEW_PRESET)]
        videos += [
            H264Output(staging / clip_file_names(i)[1], box, CLIP_CRF, CLIP_PRESET)
            for i, box in zip(followed, boxes[1:], strict=True)
        ]
        # The MP4s of targets lost too early for a clip, removed once the encoder has renamed
        # them into the staging folder (this runs after the writer's exit, before the rename
        # of the staging folder: nothing of theirs reaches out_dir).
        dropped: list[Path] = []

        def drop_files() -> None:
            for dropped_path in dropped:
                dropped_path.unlink(missing_ok=True)

        stack.callback(drop_files)
        writer = stack.enter_context(H264Writer(videos, width=width, height=height, fps=frame_rate))
        canvas = np.zeros((height, width), dtype=np.uint8)
        crops: list[list[np.ndarray]] = [[] for _ in followed]
        # Per output of the writer (the preview first), whether it still takes frames.
        active = [True] * (1 + len(followed))
        cut_short: dict[int, TargetLost] = {}

        # The fill past the frame's edge in the frame's own levels: it becomes CROP_FILL when
        # the crops are stretched to full range (limited-range luma spans 16-235).
        crop_fill = round(16 + CROP_FILL * 219 / 255) if limited else CROP_FILL
        frame: np.ndarray | None = first
        while frame is not None:
            with stopwatch("track"):
                for slot, index in enumerate(followed):
                    if not active[slot + 1]:
                        continue
                    tracker, clip_crops = trackers[index], crops[slot]
                    # Frame 0 is where each tracker started: nothing to update.
                    if clip_crops and not tracker.update(frame):
                        # Lost: its crops so far make a shorter clip when they are enough.
                        active[slot + 1] = False
                        keep = len(clip_crops) >= min_frames
                        loss = _target_lost(index, targets[index], tracker, kept=keep)
                        if keep:
                            cut_short[index] = loss
                        else:
                            lost.append(loss)
                            dropped.append(staging / clip_file_names(index)[1])
                        continue
                    crop = crop_centred(frame, tracker.centres[-1], crop_size, fill=crop_fill)
                    clip_crops.append(crop)
            if len(dropped) == len(followed):  # every target lost, none with a clip
                raise lost_targets_error(sorted(lost, key=lambda t: t.target))
            with stopwatch("encode"):
                # The encoder takes the frame's own levels; the files kept are grey.
                _place(canvas, _shrink(frame, preview_size), boxes[0])
                for slot, box in enumerate(boxes[1:]):
                    if active[slot + 1]:
                        _place(canvas, crops[slot][-1], box)
                        if limited:
                            crops[slot][-1] = stretch_to_full_range(crops[slot][-1])
                writer.write(canvas, limited_range=limited, active=active)
            with stopwatch("decode"):
                frame = next(frames, None)

        kept = [
            (slot, i)
            for slot, i in enumerate(followed)
            if staging / clip_file_names(i)[1] not in dropped
        ]
        tracks = {}
        for slot, index in kept:
            track = trackers[index].result()
            frames_kept = len(crops[slot])  # the frames before a loss
            tracks[index] = (track.centres[:frames_kept], track.scores[:frames_kept])
        measures = {
            index: kinematics(
                centres,
                fps=frame_rate,
                pixel_size_um=pixel_size_um,
                smoothing_window=config.smoothing_window,
            )
            for index, (centres, _) in tracks.items()
        }
        with stopwatch("encode"):
            for slot, index in kept:
                npy_name, _, png_name = clip_file_names(index)
                np.save(staging / npy_name, np.stack(crops[slot]))
                write_filmstrip_png(np.stack(crops[slot]), staging / png_name)
        with stopwatch("hash"):
            sha256 = file_sha256(path)
        with stopwatch("encode"):
            # Waits for the encoder, then renames the staging folder to out_dir.
            stack.close()

    clips = []
    for _, index in kept:
        npy_name, mp4_name, png_name = clip_file_names(index)
        centres, scores = tracks[index]
        clips.append(
            ClipOutput(
                track=centres,
                kinematics=measures[index],
                frames_npy=out_dir / npy_name,
                crop_mp4=out_dir / mp4_name,
                filmstrip_png=out_dir / png_name,
                match_scores=[float(s) for s in scores],
                target=index,
                cut_short=cut_short.get(index),
            )
        )
    return VideoOutput(
        info=replace(info, frame_count=max(info.frame_count, config.n_frames)),
        sha256=sha256,
        preview_mp4=out_dir / PREVIEW_NAME,
        clips=clips,
        lost=sorted(lost, key=lambda t: t.target),
        stage_seconds=stopwatch.seconds,
    )
