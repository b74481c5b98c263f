"""Read uploaded microscope videos and write the files the grading page plays.

Plain numpy/OpenCV and PyAV (FFmpeg's libraries, in this process), no Django.

Reading opens MP4 and AVI files only (the container is recognised from the file's first
bytes, never from its name, and FFmpeg is told which demuxer to use, so a playlist or any
other format FFmpeg knows cannot slip through) and decodes only the codecs microscope cameras
and our own tools write (``DECODERS``): every other decoder FFmpeg has is attack surface a
crafted file could pick. Frames
come out grey: for the YUV formats cameras and encoders write, the luma plane is read as it
is (limited-range luma stretched to 0-255 by a table), which saves the colour conversion a
BGR decode pays on every frame; other formats are converted by swscale.

Writing H.264 uses libx264 through PyAV in this process: no encoder process to start per
file, no frames copied through a pipe.

``IngestError`` is the one error a user can cause (a file that is not a video, a point off
the frame, a video too short); its message says what was wrong, for people.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

# Default constant-quality factor of x264 (lower is better; 18 looks lossless on these images)
# and speed preset ("veryfast": small files, little time).
H264_CRF = 18
H264_PRESET = "veryfast"

# The FFmpeg demuxer for each container we accept (see sniff_video_container).
_DEMUXERS = {"MP4": "mov", "AVI": "avi"}
# The decoders a video may need, by FFmpeg's name: H.264 (cameras, our own clips), MPEG-4
# Part 2 (OpenCV's mp4v, the simulator's MP4s, older capture software), Motion JPEG (AVI
# cameras, the simulator's AVIs) and uncompressed frames.
DECODERS = frozenset({"h264", "mpeg4", "mjpeg", "rawvideo"})
# Pixel formats whose first plane is the luma (Y) plane, 8 bits per sample.
_LUMA_FIRST = frozenset(
    f"{prefix}{layout}"
    for prefix in ("yuv", "yuvj")
    for layout in ("420p", "422p", "444p", "440p", "411p", "410p")
) | {"nv12", "nv21", "gray", "yuva420p"}
# Limited-range luma (16-235) to full-range grey (0-255), as a BGR decode and BT.601 grey give.
_LIMITED_TO_FULL = np.clip(np.round((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)
_FULL_TO_LIMITED = np.round(16 + np.arange(256) * 219 / 255).astype(np.uint8)
_FULL_RANGE = 2  # AVColorRange AVCOL_RANGE_JPEG


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


def _ffmpeg_reason(error: Exception) -> str:
    reason = getattr(error, "strerror", None) or str(error)
    return str(reason).strip() or type(error).__name__


@contextmanager
def _video_stream(path: Path) -> Iterator[tuple[av.container.InputContainer, av.VideoStream]]:
    """The open container of ``path`` and its first video stream, decoded on one thread;
    IngestError when it is not an MP4 or AVI video at all."""
    if not path.is_file():
        raise IngestError(f"there is no file at {path}")
    with path.open("rb") as handle:
        container_kind = sniff_video_container(handle.read(12))
    if container_kind is None:
        raise IngestError("the file is not a readable video (neither an MP4 nor an AVI file)")
    try:
        container = av.open(
            str(path),
            "r",
            format=_DEMUXERS[container_kind],
            options={"protocol_whitelist": "file"},
        )
    except MemoryError:
        raise
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as error:
        raise IngestError(f"the file is not a readable video ({_ffmpeg_reason(error)})") from None
    try:
        if not container.streams.video:
            raise IngestError("the file is not a readable video (no video stream)")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise IngestError("the file is not a readable video (no decoder for its codec)")
        codec = stream.codec_context.name
        if codec not in DECODERS:
            accepted = ", ".join(sorted(DECODERS))
            raise IngestError(
                f"the video's codec ({codec}) is not one we decode; convert it to H.264 or "
                f"use one of: {accepted}"
            )
        # One decoding thread: a worker runs several ingestions side by side.
        stream.codec_context.thread_count = 1
        yield container, stream
    finally:
        container.close()


def _luma(frame: av.VideoFrame) -> tuple[np.ndarray, bool]:
    """A decoded frame's grey values (H, W) uint8, and whether they are limited-range luma
    (16-235) rather than full-range grey. The luma plane is a view of the frame's memory."""
    name = frame.format.name
    if name not in _LUMA_FIRST:
        return frame.to_ndarray(format="gray"), False
    plane = frame.planes[0]
    # av's VideoPlane has the buffer protocol; its stub does not declare it.
    luma = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)  # type: ignore[call-overload]
    full = name in ("gray", "yuva420p") or name.startswith("yuvj")
    return luma[:, : plane.width], not (full or frame.color_range == _FULL_RANGE)


def _frames(
    container: av.container.InputContainer, stream: av.VideoStream
) -> Iterator[tuple[np.ndarray, bool]]:
    """Every frame of ``stream`` as ``_luma`` gives it; IngestError when a frame cannot be
    decoded."""
    decoded = container.decode(stream)
    index = 0
    while True:
        try:
            frame = next(decoded)
        except StopIteration:
            return
        except MemoryError:  # PyAV's ENOMEM too: the caller's limit, not the file, decides
            raise
        except (av.FFmpegError, ValueError) as error:
            if index == 0:
                raise IngestError(
                    "the file is not a readable video (no frame could be decoded)"
                ) from None
            raise IngestError(
                f"frame {index} of the video could not be decoded ({_ffmpeg_reason(error)})"
            ) from None
        yield _luma(frame)
        index += 1


def _declared_fps(stream: av.VideoStream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    # Containers without a rate report 0 or absurd values (e.g. 90000, the time base).
    return fps if math.isfinite(fps) and 0 < fps <= 1000 else 0.0


def _no_frames_error(declared_frames: int) -> IngestError:
    if declared_frames == 0:
        return IngestError("the video has no frames")
    return IngestError("the file is not a readable video (no frame could be decoded)")


def _first_frame(
    container: av.container.InputContainer, stream: av.VideoStream
) -> tuple[tuple[np.ndarray, bool], Iterator[tuple[np.ndarray, bool]]]:
    """Frame 0 as ``_luma`` gives it, and the iterator over the frames after it."""
    frames = _frames(container, stream)
    first = next(frames, None)
    if first is None:
        raise _no_frames_error(stream.frames)
    return first, frames


def probe_video(path: Path | str) -> VideoInfo:
    """Frame rate, size and frame count of the video at ``path``.

    Decodes the first frame (a file whose first frame cannot be decoded is not a usable video).
    ``frame_count`` is what the container declares; when it declares nothing, the frames are
    counted by reading the stream's packets. Raises IngestError for missing, unreadable or
    empty files.
    """
    with _video_stream(Path(path)) as (container, stream):
        (first, _), _ = _first_frame(container, stream)
        frame_count = stream.frames
        if frame_count <= 0:
            frame_count = 1  # the first frame, at least, when the packets cannot be counted
            with suppress(av.FFmpegError, ValueError):
                container.seek(0)
                frame_count = max(sum(1 for p in container.demux(stream) if p.size), 1)
        height, width = first.shape
        return VideoInfo(
            fps=_declared_fps(stream), width=width, height=height, frame_count=frame_count
        )


def stretch_to_full_range(luma: np.ndarray) -> np.ndarray:
    """Limited-range luma (16-235) as full-range grey (0-255), a new array."""
    return cv2.LUT(luma, _LIMITED_TO_FULL)


@contextmanager
def video_frames_luma(
    path: Path | str, n: int
) -> Iterator[tuple[VideoInfo, Iterator[np.ndarray], bool]]:
    """Open the video at ``path`` for its first ``n`` frames as they are decoded:
    ``with video_frames_luma(path, 16) as (info, frames, limited): ...``.

    Each frame is (H, W) uint8 in the file's own levels: limited-range luma (``limited``
    True, most video) or full-range grey. ``stretch_to_full_range`` turns limited luma, or any
    part or shrunk copy of it, into grey: what ``video_frames_gray`` gives, without stretching
    the pixels nobody keeps. Matching a template or finding a centroid does not depend on the
    levels, so a tracker can work on the frames as they come, and an H.264 writer takes
    limited luma as it is. A frame may share memory with the decoder: copy what you keep.

    Frame 0 is decoded on opening (``info`` takes its size from it); ``info.frame_count`` is
    what the container declares (0 when nothing). Raises IngestError on opening when the file
    is not a video, and from the iterator when the video ends before ``n`` frames or a frame
    changes size or levels.
    """
    with _video_stream(Path(path)) as (container, stream):
        (first, limited), rest = _first_frame(container, stream)
        height, width = first.shape
        info = VideoInfo(_declared_fps(stream), width, height, frame_count=max(stream.frames, 0))

        def frames() -> Iterator[np.ndarray]:
            yield first
            for index in range(1, n):
                frame, frame_limited = next(rest, (None, limited))
                if frame is None:
                    frames_read = f"{index} frame" + ("s" if index > 1 else "")
                    raise IngestError(f"the video has {frames_read} but {n} are needed")
                if frame.shape != first.shape:
                    raise IngestError(f"frame {index} of the video has a different size")
                if frame_limited != limited:
                    raise IngestError(f"frame {index} of the video changes its pixel format")
                yield frame

        yield info, frames(), limited


@contextmanager
def video_frames_gray(path: Path | str, n: int) -> Iterator[tuple[VideoInfo, Iterator[np.ndarray]]]:
    """Open the video at ``path`` for its first ``n`` frames, read one at a time as grey
    (H, W) uint8: ``with video_frames_gray(path, 16) as (info, frames): ...``.

    As ``video_frames_luma``, with every frame turned to full-range grey (a copy, kept valid).
    """
    with video_frames_luma(path, n) as (info, frames, limited):
        yield info, (stretch_to_full_range(f) if limited else f.copy() for f in frames)


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
    """Writes a box of every frame (H, W) grey or (H, W, 3) BGR uint8 into each of several
    H.264 MP4s: one frame in, one frame out to every file.

    Use as a context manager: ``with H264Writer(outputs, width=..., height=..., fps=...) as
    writer: writer.write(frame)``. Each file plays in every browser (yuv420p, index at the
    front for streaming) and is byte-identical for identical frames: one encoding thread, no
    version or date metadata. The files replace their paths when the block ends without an
    exception and all were written; otherwise nothing is left behind.
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
        self._files: list[tuple[av.container.OutputContainer, av.VideoStream]] = []
        # Per output, a yuv420p frame in one array (Y rows, then U, then V) whose chroma is
        # grey for good: a grey frame goes in by copying its luma, with no colour conversion.
        self._yuv = [np.full((o.box[3] * 3 // 2, o.box[2]), 128, np.uint8) for o in self.outputs]

    def _open(self, output: H264Output, temporary: Path) -> None:
        rate = Fraction(self.fps).limit_denominator(1001)
        container = av.open(str(temporary), "w", format="mp4", options={"movflags": "+faststart"})
        self._stack.callback(container.close)
        # av's stub types a Flags member's .value as Flags; at run time it is the int.
        container.flags |= av.container.Flags.bitexact.value  # type: ignore[operator]
        stream = container.add_stream("libx264", rate=rate)
        _, _, stream.width, stream.height = output.box
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        stream.codec_context.flags |= av.codec.context.Flags.bitexact.value
        stream.options = {"preset": output.preset, "crf": str(output.crf)}
        self._files.append((container, stream))

    def _failure(self, error: Exception) -> RuntimeError:
        names = ", ".join(Path(o.path).name for o in self.outputs)
        return RuntimeError(f"ffmpeg could not encode {names}: {_ffmpeg_reason(error)}")

    def __enter__(self) -> H264Writer:
        with ExitStack() as stack:
            temporaries = [stack.enter_context(_replacing(Path(o.path))) for o in self.outputs]
            # Closed before the temporaries are renamed or removed (last in, first out).
            self._stack = stack.pop_all()
        try:
            for output, temporary in zip(self.outputs, temporaries, strict=True):
                self._open(output, temporary)
        except (av.FFmpegError, ValueError) as error:
            self._stack.__exit__(RuntimeError, None, None)
            raise self._failure(error) from None
        return self

    def write(
        self,
        frame: np.ndarray,
        *,
        limited_range: bool = False,
        active: Sequence[bool] | None = None,
    ) -> None:
        """Encode the next frame; its shape must be the writer's. A grey frame is full-range
        grey, or limited-range luma (16-235) with ``limited_range``, which is what H.264
        stores: it goes in unchanged. ``active`` (one per output) leaves the outputs marked
        False out of this frame: a file that ended early (a clip cut short)."""
        frame = np.asarray(frame, dtype=np.uint8)
        if frame.shape != self.shape:
            raise ValueError(f"frame shape {frame.shape} is not the writer's {self.shape}")
        if frame.ndim == 2 and not limited_range:
            frame = cv2.LUT(frame, _FULL_TO_LIMITED)
        try:
            for number, (output, (container, stream), yuv) in enumerate(
                zip(self.outputs, self._files, self._yuv, strict=True)
            ):
                if active is not None and not active[number]:
                    continue
                x, y, w, h = output.box
                if frame.ndim == 2:
                    yuv[:h] = frame[y : y + h, x : x + w]
                    video_frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
                else:
                    piece = np.ascontiguousarray(frame[y : y + h, x : x + w])
                    video_frame = av.VideoFrame.from_ndarray(piece, format="bgr24")
                for packet in stream.encode(video_frame):
                    container.mux(packet)
        except (av.FFmpegError, ValueError) as error:
            raise self._failure(error) from None

    def __exit__(self, kind: object, error: BaseException | None, trace: object) -> None:
        failure: BaseException | None = error
        if error is None:
            try:
                for container, stream in self._files:
                    for packet in stream.encode(None):  # flush the encoder
                        container.mux(packet)
            except (av.FFmpegError, ValueError) as flush_error:
                failure = self._failure(flush_error)
        # Closes the files (writing their index), then renames the temporary files over their
        # paths on success or deletes them otherwise.
        try:
            self._stack.__exit__(type(failure) if failure else None, failure, None)
        except (av.FFmpegError, ValueError) as close_error:
            failure = failure or self._failure(close_error)
            raise failure from None
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
