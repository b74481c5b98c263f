"""Microscope-like videos in every format the platform accepts, written in the tests: H.264
and MPEG-4 Part 2 in MP4, MJPEG and raw (uncompressed) video in AVI, at any size."""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

FORMATS = ("h264", "mpeg4", "mjpeg", "raw")
SUFFIX = {"h264": ".mp4", "mpeg4": ".mp4", "mjpeg": ".avi", "raw": ".avi"}


def heads_frames(
    *,
    width: int,
    height: int,
    heads: Sequence[tuple[float, float]],
    n_frames: int = 20,
    head_px: tuple[float, float] = (4.5, 3.0),
    step_px: tuple[float, float] = (1.5, 0.8),
    seed: int = 0,
) -> np.ndarray:
    """(n_frames, H, W) uint8: grey noisy field, one phase-contrast head (dark core, bright
    halo; ``head_px`` its half-length and half-width) per start in ``heads``, each moving by
    ``step_px`` a frame, their long axes at different angles."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = np.empty((n_frames, height, width), dtype=np.uint8)
    for t in range(n_frames):
        image = np.full((height, width), 130.0, dtype=np.float32)
        image += rng.normal(0.0, 3.0, size=image.shape).astype(np.float32)
        for k, (x0, y0) in enumerate(heads):
            x, y = x0 + step_px[0] * t, y0 + step_px[1] * t
            angle = 0.7 * k
            along = (xs - x) * math.cos(angle) + (ys - y) * math.sin(angle)
            across = -(xs - x) * math.sin(angle) + (ys - y) * math.cos(angle)
            r2 = (along / head_px[0]) ** 2 + (across / head_px[1]) ** 2
            image += 50.0 * np.exp(-r2 / 3.0) - 100.0 * np.exp(-r2)
        frames[t] = np.clip(image, 0, 255).astype(np.uint8)
    return frames


def write_video(frames: np.ndarray, path: Path, kind: str, fps: float = 15.0) -> Path:
    """Write grey ``frames`` as ``kind`` (one of FORMATS) at ``path``."""
    if kind == "h264":
        from annotation.ingest.video_io import encode_h264_mp4

        encode_h264_mp4(frames, path, fps=fps)
        return path
    if kind == "mpeg4":  # what the generator and many lab cameras write (browsers cannot play it)
        height, width = frames.shape[1:]
        writer = cv2.VideoWriter(
            str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height)
        )
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
        writer.release()
        return path
    codec, pixel_format = {"mjpeg": ("mjpeg", "yuvj420p"), "raw": ("rawvideo", "gray")}[kind]
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.height, stream.width = frames.shape[1:]
        stream.pix_fmt = pixel_format
        for frame in frames:
            picture = av.VideoFrame.from_ndarray(frame, format="gray")
            for packet in stream.encode(picture.reformat(format=pixel_format)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
