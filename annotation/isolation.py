"""Decode untrusted videos in a child process with memory, CPU and wall-time limits.

FFmpeg parses whatever a user uploads; a crafted file may crash it (a segfault would take the
Celery worker down), loop forever or allocate without bound. ``process_video_isolated`` and
``probe_video_isolated`` run ``annotation.pipeline`` in a fresh ``python -m
annotation.isolation`` process under RLIMIT_AS and RLIMIT_CPU, kill its whole process group
past the wall-time limit, and turn every way it can die into an ``IngestError`` that says what
happened. Plain Python, no Django: the caller passes the limits.

The child answers in JSON, never pickle: a decoder exploited by the file could otherwise hand
the worker a pickle that runs code when loaded.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from annotation.kinematics import Kinematics
from annotation.pipeline import ClipOutput, IngestConfig, VideoOutput
from annotation.video_io import IngestError, VideoInfo

# Exit code of a child that answered (with a result or an error) in its result file.
_ANSWERED = 0


@dataclass(frozen=True)
class DecodeLimits:
    """Limits of one decoding child: address space (MB), CPU seconds, wall seconds."""

    mem_mb: int = 2048
    cpu_s: int = 120
    wall_s: int = 180


_DEFAULT_CONFIG = IngestConfig()  # frozen: one shared default is safe


def _json_output(output: VideoOutput) -> dict:
    return {
        "info": asdict(output.info),
        "sha256": output.sha256,
        "preview_mp4": str(output.preview_mp4),
        "stage_seconds": output.stage_seconds,
        "clips": [
            {
                "track": np.asarray(c.track, dtype=float).tolist(),
                "kinematics": asdict(c.kinematics),
                "frames_npy": str(c.frames_npy),
                "crop_mp4": str(c.crop_mp4),
                "filmstrip_png": str(c.filmstrip_png),
                "match_scores": [float(s) for s in c.match_scores],
            }
            for c in output.clips
        ],
    }


def _output_from_json(data: dict, out_dir: Path) -> VideoOutput:
    def inside(name: str) -> Path:
        # The child is not trusted: every path it names must lie in the folder we gave it.
        path = Path(name)
        if path.parent != out_dir:
            raise IngestError("the decoding process answered with a file outside its folder")
        return path

    return VideoOutput(
        info=VideoInfo(**data["info"]),
        sha256=str(data["sha256"]),
        preview_mp4=inside(data["preview_mp4"]),
        clips=[
            ClipOutput(
                track=np.asarray(c["track"], dtype=np.float64).reshape(-1, 2),
                kinematics=Kinematics(**c["kinematics"]),
                frames_npy=inside(c["frames_npy"]),
                crop_mp4=inside(c["crop_mp4"]),
                filmstrip_png=inside(c["filmstrip_png"]),
                match_scores=[float(s) for s in c["match_scores"]],
            )
            for c in data["clips"]
        ],
        stage_seconds={str(k): float(v) for k, v in data["stage_seconds"].items()},
    )


def _failure_message(returncode: int, limits: DecodeLimits, stderr_tail: str) -> str:
    if returncode < 0:
        number = -returncode
        if number == signal.SIGXCPU:
            return f"decoding used more than {limits.cpu_s} s of CPU time; the file may be damaged"
        return f"the decoder crashed (signal {number}) while reading this file"
    detail = f": {stderr_tail}" if stderr_tail else ""
    return f"the decoder stopped (exit status {returncode}) while reading this file{detail}"


def _remove_staging(out_dir: Path) -> None:
    """Remove the hidden folders a killed child leaves beside ``out_dir`` (pipeline staging)."""
    for leftover in out_dir.parent.glob(f".{out_dir.name}.*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _run_child(request: dict, limits: DecodeLimits, *, out_dir: Path | None) -> dict:
    """Run one request in a child; its JSON answer, or IngestError saying how it died."""
    with tempfile.TemporaryDirectory(prefix="mersv-decode-") as work:
        request_path, result_path = Path(work) / "request.json", Path(work) / "result.json"
        request_path.write_text(json.dumps({**request, "limits": asdict(limits)}))
        env = dict(os.environ)
        # One thread each: less address space reserved per thread, and the worker's cores
        # stay shared between the ingestions it runs side by side.
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", OPENCV_FFMPEG_THREADS="1")
        project_root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [project_root, env.get("PYTHONPATH")]))
        with (Path(work) / "stderr.txt").open("w+b") as stderr:
            # Its own session: on timeout the whole group goes, ffmpeg encoder included.
            child = subprocess.Popen(
                [sys.executable, "-m", "annotation.isolation", str(request_path), str(result_path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=env,
                start_new_session=True,
            )
            try:
                returncode = child.wait(timeout=limits.wall_s)
            except subprocess.TimeoutExpired:
                returncode = None
            finally:  # also when the caller is interrupted (a task's soft time limit)
                if child.poll() is None:
                    os.killpg(child.pid, signal.SIGKILL)
                    child.wait()
                else:
                    # Anything the child left behind in its group (an encoder) goes too.
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(child.pid, signal.SIGKILL)
            stderr.seek(0)
            stderr_tail = stderr.read()[-4000:].decode(errors="replace").strip()
        if returncode is None or returncode != _ANSWERED or not result_path.exists():
            if out_dir is not None:
                _remove_staging(out_dir)
            if returncode is None:
                raise IngestError(f"decoding took longer than {limits.wall_s} s")
            last_line = stderr_tail.splitlines()[-1] if stderr_tail else ""
            raise IngestError(_failure_message(returncode, limits, last_line))
        return json.loads(result_path.read_text())


def _answer(answer: dict) -> VideoOutput | VideoInfo | dict:
    if "error" in answer:
        raise IngestError(str(answer["error"]))
    if "unexpected" in answer:
        raise RuntimeError(f"decoding failed unexpectedly: {answer['unexpected']}")
    return answer


def process_video_isolated(
    path: Path,
    targets: Sequence[tuple[float, float]],
    *,
    out_dir: Path,
    pixel_size_um: float,
    config: IngestConfig = _DEFAULT_CONFIG,
    fps: float | None = None,
    limits: DecodeLimits = DecodeLimits(),
) -> VideoOutput:
    """``annotation.pipeline.process_video`` in a child process under ``limits``.

    Raises IngestError as process_video does, and also when the child crashes, runs out of
    memory or CPU time, or takes longer than ``limits.wall_s``; out_dir is then left as it was.
    RuntimeError for an unexpected error inside the child (a bug, not the file).
    """
    out_dir = Path(out_dir)
    request = {
        "op": "process",
        "path": str(path),
        "targets": [[float(x), float(y)] for x, y in targets],
        "out_dir": str(out_dir),
        "pixel_size_um": float(pixel_size_um),
        "config": asdict(config),
        "fps": fps,
    }
    answer = _answer(_run_child(request, limits, out_dir=out_dir))
    return _output_from_json(answer, out_dir)  # type: ignore[arg-type]


def probe_video_isolated(path: Path, *, limits: DecodeLimits = DecodeLimits()) -> VideoInfo:
    """``annotation.video_io.probe_video`` in a child process under ``limits``."""
    answer = _answer(_run_child({"op": "probe", "path": str(path)}, limits, out_dir=None))
    return VideoInfo(**answer["info"])  # type: ignore[index]


def _limit_self(limits: dict) -> None:
    mem = int(limits["mem_mb"]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    cpu = int(limits["cpu_s"])
    # SIGXCPU at the soft limit (reported as such); SIGKILL shortly after if it is ignored.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash must not litter core files


def _child_main(request_path: Path, result_path: Path) -> None:
    request = json.loads(request_path.read_text())
    _limit_self(request["limits"])
    import cv2

    from annotation.pipeline import process_video
    from annotation.video_io import probe_video

    try:
        if request["op"] == "probe":
            answer: dict = {"info": asdict(probe_video(Path(request["path"])))}
        else:
            output = process_video(
                Path(request["path"]),
                [(x, y) for x, y in request["targets"]],
                out_dir=Path(request["out_dir"]),
                pixel_size_um=request["pixel_size_um"],
                config=IngestConfig(**request["config"]),
                fps=request["fps"],
            )
            answer = _json_output(output)
    except IngestError as exc:
        answer = {"error": str(exc)}
    except MemoryError:
        mb = request["limits"]["mem_mb"]
        answer = {"error": f"decoding needed more than {mb} MB of memory; the file may be damaged"}
    except cv2.error as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "no reason given"
        answer = {"error": f"the decoder could not read this file ({reason})"}
    except Exception as exc:  # reported to the parent, which logs and records it
        answer = {"unexpected": f"{type(exc).__name__}: {exc}"}
    temporary = result_path.with_suffix(".partial")
    temporary.write_text(json.dumps(answer))
    os.replace(temporary, result_path)  # the parent sees a whole answer or none


if __name__ == "__main__":
    _child_main(Path(sys.argv[1]), Path(sys.argv[2]))
