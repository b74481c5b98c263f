"""Read uploaded microscope videos and write the files the grading page plays.

Plain numpy/OpenCV, no Django. Reading goes through OpenCV's FFmpeg backend (any container
and codec FFmpeg knows: MP4, AVI, ...); writing H.264 goes through the ffmpeg binary shipped
with the ``imageio-ffmpeg`` package, so every machine encodes with the same build.

``IngestError`` is the one error a user can cause (a file that is not a video, a point off
the frame, a video too short); its message says what was wrong, for people.
"""

from __future__ import annotations

import math
import os
import secrets
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import IO

import cv2
import imageio_ffmpeg
import numpy as np

# Default constant-quality factor of x264 (lower is better; 18 looks lossless on these images)
# and speed preset ("veryfast": small files, little time).
H264_CRF = 18
H264_PRESET = "veryfast"


class IngestError(Exception):
    """A video or a target point we cannot use; the message is written for the uploader."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds. ``fps`` is 0 when the file declares no frame rate."""

    fps: float
    width: int
    height: int
    frame_count: int


def sniff_video_container(head: bytes) -> str | None:
    """The container ("MP4" or "AVI") the first 12 bytes of a file open, else None.

    The content decides, not the name: an HTML page or an SVG renamed to .mp4 is no video.
    """
    if len(head) >= 12 and head[4:8] == b"ftyp":  # ISO base media: box size, then 'ftyp'
        return "MP4"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    return None


@contextmanager
def _capture(path: Path) -> Iterator[cv2.VideoCapture]:
    """An open FFmpeg capture of ``path``; IngestError when it is not a video at all."""
    if not path.is_file():
        raise IngestError(f"there is no file at {path}")
    # Only the FFmpeg backend: OpenCV's others would read e.g. a lone image as a 1-frame video.
    # One decoding thread: a worker runs several ingestions side by side.
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    try:
        if not capture.isOpened():
            raise IngestError("the file is not a readable video (no video stream)")
        yield capture
    finally:
        capture.release()


def _read_gray(capture: cv2.VideoCapture) -> np.ndarray | None:
    ok, frame = capture.read()
    if not ok or frame is None:
        return None
    return frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


def _declared_fps(capture: cv2.VideoCapture) -> float:
    fps = float(capture.get(cv2.CAP_PROP_FPS))
    # Containers without a rate report 0, NaN or absurd values (e.g. 90000, the time base).
    return fps if math.isfinite(fps) and 0 < fps <= 1000 else 0.0


def _no_frames_error(declared_frames: int) -> IngestError:
    if declared_frames == 0:
        return IngestError("the video has no frames")
    return IngestError("the file is not a readable video (no frame could be decoded)")


def probe_video(path: Path | str) -> VideoInfo:
    """Frame rate, size and frame count of the video at ``path``.

    Decodes the first frame (a file whose first frame cannot be decoded is not a usable video).
    ``frame_count`` is what the container declares; when it declares nothing, the frames are
    counted by reading them all. Raises IngestError for missing, unreadable or empty files.
    """
    with _capture(Path(path)) as capture:
        frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        first = _read_gray(capture)
        if first is None:
            raise _no_frames_error(frame_count)
        if frame_count <= 0:
            frame_count = 1
            while capture.grab():
                frame_count += 1
        height, width = first.shape
        return VideoInfo(
            fps=_declared_fps(capture), width=width, height=height, frame_count=frame_count
        )


@contextmanager
def video_frames_gray(path: Path | str, n: int) -> Iterator[tuple[VideoInfo, Iterator[np.ndarray]]]:
    """Open the video at ``path`` for its first ``n`` frames, read one at a time as grey
    (H, W) uint8: ``with video_frames_gray(path, 16) as (info, frames): ...``.

    Frame 0 is decoded on opening (``info`` takes its size from it); ``info.frame_count`` is
    what the container declares (0 when nothing). Raises IngestError on opening when the file
    is not a video, and from the iterator when the video ends before ``n`` frames or a frame
    changes size.
    """
    with _capture(Path(path)) as capture:
        declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        first = _read_gray(capture)
        if first is None:
            raise _no_frames_error(declared)
        height, width = first.shape
        info = VideoInfo(_declared_fps(capture), width, height, frame_count=max(declared, 0))

        def frames() -> Iterator[np.ndarray]:
            yield first
            for index in range(1, n):
                frame = _read_gray(capture)
                if frame is None:
                    frames_read = f"{index} frame" + ("s" if index > 1 else "")
                    raise IngestError(f"the video has {frames_read} but {n} are needed")
                if frame.shape != first.shape:
                    raise IngestError(f"frame {index} of the video has a different size")
                yield frame

        yield info, frames()


def read_video_gray(path: Path | str, n: int) -> tuple[VideoInfo, np.ndarray]:
    """The video's info and its first ``n`` frames as grey (n, H, W) uint8, in one opening.

    ``info.frame_count`` is as in ``probe_video`` but never below ``n``. Raises IngestError
    when the file is not a video or has fewer than ``n`` frames.
    """
    with video_frames_gray(path, n) as (info, frames):
        stack = np.stack(list(frames))
    return replace(info, frame_count=max(info.frame_count, n)), stack


def read_frames_gray(path: Path | str, n: int) -> np.ndarray:
    """The first ``n`` frames of the video at ``path`` as grey (n, H, W) uint8.

    Raises IngestError when the file is not a video or has fewer than ``n`` frames.
    """
    return read_video_gray(path, n)[1]


@contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A temporary path next to ``path`` that replaces it on success and vanishes on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its files are private (0600) and the web server must read these.
    temporary = path.with_name(f".{path.stem}.{secrets.token_hex(6)}{path.suffix}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def pad_to_even(frames: np.ndarray) -> np.ndarray:
    """``frames`` padded (edge pixels repeated) to even height and width, as yuv420p needs."""
    pad_bottom, pad_right = frames.shape[1] % 2, frames.shape[2] % 2
    if not (pad_bottom or pad_right):
        return frames
    padding = [(0, 0), (0, pad_bottom), (0, pad_right)] + [(0, 0)] * (frames.ndim - 3)
    return np.pad(frames, padding, mode="edge")


@dataclass(frozen=True)
class H264Output:
    """One MP4 cut out of shared frames: the box (x, y, width, height; even sizes) it shows,
    and its quality (x264 constant-quality factor and speed preset)."""

    path: Path
    box: tuple[int, int, int, int]
    crf: int = H264_CRF
    preset: str = H264_PRESET


class H264Writer:
    """Streams frames (H, W) grey or (H, W, 3) BGR uint8 into one ffmpeg process that writes a
    box of every frame into each of several H.264 MP4s (starting ffmpeg costs more than
    encoding a small clip, so one process serves them all).

    Use as a context manager: ``with H264Writer(outputs, width=..., height=..., fps=...) as
    writer: writer.write(frame)``. Each file plays in every browser (yuv420p, index at the
    front for streaming) and is byte-identical for identical frames: one encoding thread, no
    version or date metadata. The files replace their paths when the block ends without an
    exception and all were written; otherwise ffmpeg is stopped and nothing is left behind.
    The encoder runs in its own process, so it works while the caller decodes the next frame.
    """

    def __init__(
        self,
        outputs: Sequence[H264Output],
        *,
        width: int,
        height: int,
        fps: float,
        colour: bool = False,
    ) -> None:
        if not outputs:
            raise ValueError("at least one output is needed")
        for output in outputs:
            x, y, w, h = output.box
            if w % 2 or h % 2 or w < 2 or h < 2 or x < 0 or y < 0:
                raise ValueError(f"box {output.box} must have even, positive sizes")
            if x + w > width or y + h > height:
                raise ValueError(f"box {output.box} does not lie in the {width}x{height} frame")
        self.outputs = list(outputs)
        self.shape = (height, width, 3) if colour else (height, width)
        self.fps = fps
        self._stack = ExitStack()
        self._process: subprocess.Popen[bytes] | None = None
        self._errors: IO[bytes] | None = None

    def _command(self, temporaries: Sequence[Path]) -> list[str]:
        rate = Fraction(self.fps).limit_denominator(1001)
        height, width = self.shape[:2]
        command = [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-hide_banner",
            "-loglevel", "error",
            "-filter_complex_threads", "1",  # tiny filters: threads would cost more than they save
            "-f", "rawvideo",
            "-pix_fmt", "bgr24" if len(self.shape) == 3 else "gray",
            "-s", f"{width}x{height}",
            "-framerate", f"{rate.numerator}/{rate.denominator}",
            "-i", "pipe:0",
            "-fflags", "+bitexact",
        ]  # fmt: skip
        # Every output reads its own copy of the input, cropped to its box.
        count = len(self.outputs)
        branches = "".join(f"[b{i}]" for i in range(count))
        graph = [f"[0:v]split={count}{branches}"] + [
            f"[b{i}]crop={w}:{h}:{x}:{y}[o{i}]"
            for i, (x, y, w, h) in enumerate(o.box for o in self.outputs)
        ]
        command += ["-filter_complex", ";".join(graph)]
        for index, (output, temporary) in enumerate(zip(self.outputs, temporaries, strict=True)):
            command += [
                "-map", f"[o{index}]",
                "-an",
                "-c:v", "libx264",
                "-preset", output.preset,
                "-crf", str(output.crf),
                "-pix_fmt", "yuv420p",
                "-threads", "1",
                "-flags:v", "+bitexact",
                "-fflags", "+bitexact",
                "-map_metadata", "-1",
                "-movflags", "+faststart",
                "-f", "mp4",
                "-y", str(temporary),
            ]  # fmt: skip
        return command

    def __enter__(self) -> H264Writer:
        with ExitStack() as stack:
            temporaries = [stack.enter_context(_replacing(Path(o.path))) for o in self.outputs]
            # A file, not a pipe, for ffmpeg's messages: a full pipe nobody reads would block it.
            self._errors = stack.enter_context(tempfile.TemporaryFile())
            self._process = subprocess.Popen(
                self._command(temporaries), stdin=subprocess.PIPE, stderr=self._errors
            )
            self._stack = stack.pop_all()
        return self

    def write(self, frame: np.ndarray) -> None:
        """Send the next frame; its shape must be the writer's."""
        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        if frame.shape != self.shape:
            raise ValueError(f"frame shape {frame.shape} is not the writer's {self.shape}")
        assert self._process is not None and self._process.stdin is not None
        try:
            self._process.stdin.write(frame.data)
        except BrokenPipeError:
            self._process.wait()
            raise self._failure() from None

    def _failure(self) -> RuntimeError:
        assert self._errors is not None
        self._errors.seek(0)
        message = self._errors.read().decode(errors="replace").strip()
        names = ", ".join(Path(o.path).name for o in self.outputs)
        return RuntimeError(f"ffmpeg could not encode {names}: {message}")

    def __exit__(self, kind: object, error: BaseException | None, trace: object) -> None:
        process = self._process
        assert process is not None and process.stdin is not None
        if error is not None:
            process.kill()  # the files are thrown away: no need to finish them
        with suppress(BrokenPipeError):  # ffmpeg stopped already: its exit status says why
            process.stdin.close()
        failure = self._failure() if process.wait() != 0 and error is None else error
        # Renames the temporary files over their paths on success, deletes them otherwise.
        self._stack.__exit__(type(failure) if failure else None, failure, None)
        if failure is not None and failure is not error:
            raise failure


def _video_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames, dtype=np.uint8)
    if frames.ndim not in (3, 4) or len(frames) == 0 or (frames.ndim == 4 and frames.shape[3] != 3):
        raise ValueError(f"frames must be (T, H, W) or (T, H, W, 3), T >= 1, not {frames.shape}")
    return frames


def encode_h264_mp4s(frames: np.ndarray, outputs: Sequence[H264Output], *, fps: float) -> None:
    """Encode boxes of ``frames`` (T, H, W) grey or (T, H, W, 3) BGR uint8 as H.264 MP4s with
    one ffmpeg process; see ``H264Writer``."""
    frames = _video_frames(frames)
    height, width = frames.shape[1:3]
    with H264Writer(
        outputs, width=width, height=height, fps=fps, colour=frames.ndim == 4
    ) as writer:
        for frame in frames:
            writer.write(frame)


def encode_h264_mp4(
    frames: np.ndarray,
    path: Path | str,
    *,
    fps: float,
    crf: int = H264_CRF,
    preset: str = H264_PRESET,
) -> None:
    """Write ``frames`` (T, H, W) grey or (T, H, W, 3) BGR uint8 as an H.264 MP4 at ``fps``.

    Odd sizes are padded by one repeated row or column (yuv420p needs even ones); otherwise as
    ``encode_h264_mp4s``: plays in browsers, byte-identical for identical frames, and replaces
    ``path`` only when complete.
    """
    frames = pad_to_even(_video_frames(frames))
    box = (0, 0, frames.shape[2], frames.shape[1])
    encode_h264_mp4s(frames, [H264Output(Path(path), box, crf, preset)], fps=fps)


def write_filmstrip_png(frames: np.ndarray, path: Path | str) -> None:
    """Write ``frames`` (T, S, S) uint8 as one PNG of T frames stacked top to bottom.

    Frame k is the rows ``k * S .. (k + 1) * S - 1``: the grading page draws it onto a canvas,
    which steps frame by frame exactly where a video element cannot.
    """
    frames = np.asarray(frames, dtype=np.uint8)
    if frames.ndim != 3 or len(frames) == 0:
        raise ValueError(f"frames must be (T, S, S) with T >= 1, not {frames.shape}")
    ok, encoded = cv2.imencode(".png", frames.reshape(-1, frames.shape[2]))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {Path(path).name} as PNG")
    path = Path(path)
    with _replacing(path) as temporary:
        temporary.write_bytes(encoded.tobytes())
