"""Decode untrusted videos in a child process with memory, CPU and wall-time limits.

FFmpeg parses whatever a user uploads; a crafted file may crash it (a segfault would take the
Celery worker down), loop forever or allocate without bound. ``process_video_isolated`` and
``probe_video_isolated`` run ``annotation.ingest.pipeline`` in a child process under RLIMIT_AS and
RLIMIT_CPU, kill its whole process group past the wall-time limit, and turn every way it can
die into an ``IngestError`` that says what happened. Plain Python, no Django: the caller
passes the limits.

Starting a Python interpreter and importing OpenCV, PyAV and numpy costs about a third of a
CPU-second, several times the work of ingesting a 16-frame clip. So each calling process
(each thread of it) keeps one *decode server*: ``python -m annotation.ingest.isolation --serve``,
which imports those modules once and then forks a fresh child for every request. The server
itself never opens a user's file; each child does, alone, in its own session under the
limits, and exits. A child that crashes or is killed leaves the server as it was; a server
that dies (or a request interrupted half-way) is replaced by a new one for the next request.

The child answers in JSON, never pickle: a decoder exploited by the file could otherwise hand
the worker a pickle that runs code when loaded. And it holds nothing worth stealing
(``annotation.ingest.sandbox``): the server starts with an empty environment, in its own
network namespace where the machine allows one, and each child, before it opens the file,
limits its file sizes and open files, refuses itself sockets and (Landlock) confines itself
to reading the installation and its one video and to writing in its own scratch folder. That
folder lies beside the requested output folder; the trusted caller checks the answer and
moves the output into place. A layer this machine lacks is logged once as a warning, and
``manage.py check --deploy`` reports it (``annotation.ingest.sandbox_check``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from annotation.ingest import sandbox
from annotation.ingest.candidates import Candidate
from annotation.ingest.kinematics import Kinematics
from annotation.ingest.pipeline import ClipOutput, IngestConfig, TargetLost, VideoOutput
from annotation.ingest.preview import FirstFrame
from annotation.ingest.video_io import IngestError, VideoInfo

# Seconds a decode server may take to start (import, warm up) or to fork a child.
SERVER_START_S = 60.0
# Exit code of a child that answered (with a result or an error) in its result file.
_ANSWERED = 0
# The name of the folder, inside the child's scratch folder, that it writes its output in.
_PRODUCED = "out"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecodeLimits:
    """Limits of one decoding child: address space (MB), CPU seconds, wall seconds, the
    largest file it may write (MB) and how many files it may hold open."""

    mem_mb: int = 2048
    cpu_s: int = 120
    wall_s: float = 180
    file_mb: int = 1024
    open_files: int = 256


_DEFAULT_CONFIG = IngestConfig()  # frozen: one shared default is safe


def _json_output(output: VideoOutput) -> dict[str, Any]:
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
                "target": c.target,
                "cut_short": None if c.cut_short is None else asdict(c.cut_short),
            }
            for c in output.clips
        ],
        "lost": [asdict(t) for t in output.lost],
    }


def _target_index(value: object, n_targets: int) -> int:
    target = int(value)  # type: ignore[call-overload]
    if not 0 <= target < n_targets:
        raise IngestError("the decoding process answered for a target it was not given")
    return target


def _target_lost_from_json(data: dict[str, Any], n_targets: int) -> TargetLost:
    return TargetLost(
        target=_target_index(data["target"], n_targets),
        code=str(data["code"]),
        lost_at=int(data["lost_at"]),
        message=str(data["message"]),
    )


def _output_from_json(
    data: dict[str, Any], out_dir: Path, *, n_targets: int, produced_in: Path | None = None
) -> VideoOutput:
    """The child's answer as a VideoOutput in ``out_dir``; the child wrote its files in
    ``produced_in`` (``out_dir`` itself when None), and each path it names must lie there."""
    folder = out_dir if produced_in is None else produced_in

    def inside(name: str) -> Path:
        # The child is not trusted: every path it names must lie in the folder we gave it.
        path = Path(name)
        if path.parent != folder:
            raise IngestError("the decoding process answered with a file outside its folder")
        return out_dir / path.name

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
                target=_target_index(c["target"], n_targets),
                cut_short=None
                if c["cut_short"] is None
                else _target_lost_from_json(c["cut_short"], n_targets),
            )
            for c in data["clips"]
        ],
        lost=[_target_lost_from_json(t, n_targets) for t in data["lost"]],
        stage_seconds={str(k): float(v) for k, v in data["stage_seconds"].items()},
    )


def _failure_message(returncode: int, limits: DecodeLimits, stderr_tail: str) -> str:
    if returncode < 0:
        number = -returncode
        if number == signal.SIGXCPU:
            return f"decoding used more than {limits.cpu_s} s of CPU time; the file may be damaged"
        if number == signal.SIGXFSZ:
            return f"decoding wrote a file over {limits.file_mb} MB; the file may be damaged"
        return f"the decoder crashed (signal {number}) while reading this file"
    detail = f": {stderr_tail}" if stderr_tail else ""
    return f"the decoder stopped (exit status {returncode}) while reading this file{detail}"


def _remove_staging(out_dir: Path) -> None:
    """Remove the hidden folders a killed child leaves beside ``out_dir`` (pipeline staging)."""
    for leftover in out_dir.parent.glob(f".{out_dir.name}.*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _report_sandbox() -> None:
    """Log once per process which sandbox layers decoding gets, and warn about each gap."""
    global _sandbox_reported
    if _sandbox_reported:
        return
    _sandbox_reported = True
    status = sandbox.sandbox_status()
    log.info("decode sandbox: %s", "; ".join(status.layers()))
    for gap in status.missing().values():
        log.warning("decode sandbox incomplete: %s", gap)


_sandbox_reported = False


class _ServerGone(Exception):
    """The decode server stopped (or never answered); ``returncode`` says how, if known."""

    def __init__(self, returncode: int | None, stderr_tail: str) -> None:
        super().__init__(f"decode server stopped ({returncode})")
        self.returncode = returncode
        self.stderr_tail = stderr_tail


class _DecodeServer:
    """One ``python -m annotation.ingest.isolation --serve`` process and the line protocol to it:
    a request line (paths of the request, result and stderr files) in; the forked child's
    pid, then its wait status and CPU time, out."""

    def __init__(self) -> None:
        self.executable = sys.executable
        self.owner = os.getpid()
        # Its messages, read when it dies; open as long as the server runs.
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115
        self._closed = False
        self.ready = False  # True once it said so, after importing and warming up
        _report_sandbox()
        self.process = subprocess.Popen(
            [
                *sandbox.network_namespace_prefix(),
                self.executable,
                "-m",
                "annotation.ingest.isolation",
                "--serve",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._errors,
            env=sandbox.decode_environment(),  # nothing of the caller's: no secrets
            start_new_session=True,  # killed as a group, apart from the caller's
        )
        self._selector = selectors.DefaultSelector()
        assert self.process.stdout is not None
        self._selector.register(self.process.stdout, selectors.EVENT_READ)
        self._pending = b""
        self.cpu_seconds = 0.0  # of the children it forked, summed

    def usable(self) -> bool:
        return (
            not self._closed
            and self.owner == os.getpid()
            and self.executable == sys.executable
            and self.process.poll() is None
        )

    def _line(self, timeout: float) -> dict[str, Any] | None:
        """The next answer line, or None when none came within ``timeout`` seconds; raises
        _ServerGone when the server closed its end."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0 or not self._selector.select(left):
                return None
            chunk = os.read(self.process.stdout.fileno(), 4096)
            if not chunk:
                raise self._gone()
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return json.loads(line)

    def _gone(self) -> _ServerGone:
        returncode = self.process.wait()
        self._errors.seek(0)
        tail = self._errors.read()[-4000:].decode(errors="replace").strip()
        return _ServerGone(returncode, tail.splitlines()[-1] if tail else "")

    def wait_ready(self) -> None:
        """Wait until the server has imported and warmed up; _ServerGone (and the server
        stopped) when it dies first or takes longer than SERVER_START_S."""
        try:
            if self._line(SERVER_START_S) is None:
                raise _ServerGone(None, f"the decoding process did not start in {SERVER_START_S} s")
        except _ServerGone:
            self.close()
            raise
        self.ready = True

    def run(self, job: dict[str, str], wall_s: float) -> int | None:
        """Run ``job`` in a fresh child; its exit code (negative: the signal that ended it),
        or None when it ran past ``wall_s`` and was killed."""
        assert self.process.stdin is not None
        deadline = time.monotonic() + wall_s
        try:
            self.process.stdin.write(json.dumps(job).encode() + b"\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            raise self._gone() from None
        if not self.ready:  # it may still be importing its modules
            self.wait_ready()
            deadline = time.monotonic() + wall_s
        started = self._line(SERVER_START_S)  # a fork: at once, unless the machine is swamped
        if started is None:
            self.close()
            raise _ServerGone(None, "the decoding process did not answer")
        pid = int(started["pid"])
        try:
            finished = self._line(max(deadline - time.monotonic(), 0.0))
        except BaseException:
            # The caller was interrupted (a task's time limit): the child goes, and so does
            # the server, whose next answer line would belong to this request.
            _kill_group(pid)
            self.close()
            raise
        _kill_group(pid)  # what the child left running in its session (nothing, normally)
        if finished is None:
            # The server reaps the killed child and reports it; without that report the
            # protocol is out of step, and the server goes.
            with contextlib.suppress(_ServerGone):
                if self._line(10.0) is not None:
                    return None
            self.close()
            return None
        self.cpu_seconds += float(finished["cpu_s"])
        return os.waitstatus_to_exitcode(int(finished["status"]))

    def close(self) -> None:
        """Stop the server (and any child of its group) and wait for it; again: nothing."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            assert self.process.stdin is not None
            self.process.stdin.close()
        _kill_group(self.process.pid)
        self.process.wait()
        self._selector.close()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._errors.close()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


_servers = threading.local()


def _server() -> _DecodeServer:
    """This thread's decode server, started (again) when there is none or it stopped."""
    server: _DecodeServer | None = getattr(_servers, "server", None)
    if server is not None and not server.usable():
        if server.owner == os.getpid():
            server.close()
        server = None  # a forked copy of the caller's: the parent's server is not ours
    if server is None:
        server = _servers.server = _DecodeServer()
    return server


def start_decode_server() -> None:
    """Start this thread's decode server now (it starts on first use otherwise) and wait
    until it is ready; raises IngestError when it does not start."""
    server = _server()
    if server.ready:
        return
    try:
        server.wait_ready()
    except _ServerGone as gone:
        raise IngestError(gone.stderr_tail or "the decoding process stopped on start") from None


def stop_decode_server() -> float:
    """Stop this thread's decode server, if any; the CPU seconds its children used."""
    server: _DecodeServer | None = getattr(_servers, "server", None)
    _servers.server = None
    if server is None or server.owner != os.getpid():
        return 0.0
    server.close()
    return server.cpu_seconds


def _install(produced: Path, out_dir: Path) -> None:
    """Move the folder a child wrote into place as ``out_dir`` (an earlier one is replaced)."""
    if out_dir.exists():
        # Move the earlier run aside first: a rename cannot replace a non-empty folder.
        retired = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.retired")
        out_dir.rename(retired)
        produced.rename(out_dir)
        shutil.rmtree(retired)
    else:
        produced.rename(out_dir)


def _run_child(
    request: dict[str, Any],
    limits: DecodeLimits,
    *,
    out_dir: Path | None,
    check: Callable[[dict[str, Any], Path], object] | None = None,
) -> dict[str, Any]:
    """Run one request in a child; its JSON answer, or IngestError saying how it died.

    The child may write only in its scratch folder: a request that makes files names
    ``out_dir`` and gets ``request["out_dir"]`` set to a folder inside the scratch one, which
    becomes ``out_dir`` once ``check(answer, that folder)`` has accepted the answer (it raises
    IngestError otherwise, and nothing moves). The scratch folder lies beside ``out_dir`` (one
    file system: a rename, not a copy), hidden, and goes in any case."""
    scratch_parent = None
    if out_dir is not None:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        scratch_parent = out_dir.parent
    prefix = f".{out_dir.name}." if out_dir is not None else "mersv-decode-"
    with tempfile.TemporaryDirectory(prefix=prefix, dir=scratch_parent) as work:
        request_path, result_path = Path(work) / "request.json", Path(work) / "result.json"
        stderr_path = Path(work) / "stderr.txt"
        produced = Path(work) / _PRODUCED
        if out_dir is not None:
            request = {**request, "out_dir": str(produced)}
        request_path.write_text(json.dumps({**request, "limits": asdict(limits)}))
        job = {"request": str(request_path), "result": str(result_path), "stderr": str(stderr_path)}
        server = _server()
        try:
            returncode = server.run(job, limits.wall_s)
            stderr_tail = ""
            if stderr_path.exists():
                stderr_tail = stderr_path.read_bytes()[-4000:].decode(errors="replace").strip()
        except _ServerGone as gone:  # the next request starts a new server
            server.close()
            if gone.returncode is None:
                raise IngestError(gone.stderr_tail) from None
            returncode, stderr_tail = gone.returncode, gone.stderr_tail
        if returncode is None or returncode != _ANSWERED or not result_path.exists():
            if out_dir is not None:
                _remove_staging(out_dir)
            if returncode is None:
                raise IngestError(f"decoding took longer than {limits.wall_s} s")
            last_line = stderr_tail.splitlines()[-1] if stderr_tail else ""
            raise IngestError(_failure_message(returncode, limits, last_line))
        answer: dict[str, Any] = json.loads(result_path.read_text())
        if check is not None:
            check(answer, produced)
        if out_dir is not None and "error" not in answer and "unexpected" not in answer:
            if not produced.is_dir():
                raise IngestError("the decoding process answered without writing its files")
            _install(produced, out_dir)
        return answer


def _answer(answer: dict[str, Any]) -> dict[str, Any]:
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
    """``annotation.ingest.pipeline.process_video`` in a child process under ``limits``.

    Raises IngestError as process_video does, and also when the child crashes, runs out of
    memory or CPU time, or takes longer than ``limits.wall_s``; out_dir is then left as it was.
    RuntimeError for an unexpected error inside the child (a bug, not the file).
    """
    out_dir = Path(out_dir)
    request = {
        "op": "process",
        "path": str(path),
        "targets": [[float(x), float(y)] for x, y in targets],
        "pixel_size_um": float(pixel_size_um),
        "config": asdict(config),
        "fps": fps,
    }
    outputs: list[VideoOutput] = []

    def check(answer: dict[str, Any], produced: Path) -> None:
        # Each file it names must lie where the child wrote; named where it will be.
        outputs.append(
            _output_from_json(
                _answer(answer), out_dir, n_targets=len(targets), produced_in=produced
            )
        )

    _run_child(request, limits, out_dir=out_dir, check=check)
    return outputs[0]


def first_frame_isolated(
    path: Path, *, out_dir: Path, head_length_px: float, limits: DecodeLimits = DecodeLimits()
) -> FirstFrame:
    """``annotation.ingest.preview.first_frame_preview`` in a child process under ``limits``:
    frame 0's PNGs written into ``out_dir`` and its candidate heads."""
    out_dir = Path(out_dir)
    request = {"op": "first_frame", "path": str(path), "head_length_px": float(head_length_px)}
    made: list[FirstFrame] = []

    def check(answer: dict[str, Any], produced: Path) -> None:
        answer = _answer(answer)
        files = []
        for key in ("frame_png", "overview_png"):
            # The child is not trusted: the files it names must lie in the folder it was given.
            file = Path(answer[key])
            if file.parent != produced:
                raise IngestError("the decoding process answered with a file outside its folder")
            files.append(out_dir / file.name)
        made.append(
            FirstFrame(
                info=VideoInfo(**answer["info"]),
                frame_png=files[0],
                overview_png=files[1],
                candidates=[
                    Candidate(x=float(c["x"]), y=float(c["y"]), score=float(c["score"]))
                    for c in answer["candidates"]
                ],
            )
        )

    _run_child(request, limits, out_dir=out_dir, check=check)
    return made[0]


def probe_video_isolated(path: Path, *, limits: DecodeLimits = DecodeLimits()) -> VideoInfo:
    """``annotation.ingest.video_io.probe_video`` in a child process under ``limits``."""
    answer = _answer(_run_child({"op": "probe", "path": str(path)}, limits, out_dir=None))
    return VideoInfo(**answer["info"])


def _limit_self(limits: dict[str, Any]) -> None:
    mem = int(limits["mem_mb"]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    cpu = int(limits["cpu_s"])
    # SIGXCPU at the soft limit (reported as such); SIGKILL shortly after if it is ignored.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash must not litter core files
    size = int(limits["file_mb"]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    # Python ignores SIGXFSZ (a write past the limit then fails with EFBIG somewhere deep in
    # a library); its default action ends the child, which the parent reports as such.
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    files = int(limits["open_files"])
    resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))


def _probe(request: dict[str, Any]) -> dict[str, Any]:
    from annotation.ingest.video_io import probe_video

    return {"info": asdict(probe_video(Path(request["path"])))}


def _process(request: dict[str, Any]) -> dict[str, Any]:
    from annotation.ingest.pipeline import process_video

    output = process_video(
        Path(request["path"]),
        [(x, y) for x, y in request["targets"]],
        out_dir=Path(request["out_dir"]),
        pixel_size_um=request["pixel_size_um"],
        config=IngestConfig(**request["config"]),
        fps=request["fps"],
    )
    return _json_output(output)


def _first_frame(request: dict[str, Any]) -> dict[str, Any]:
    from annotation.ingest.preview import first_frame_preview

    made = first_frame_preview(
        Path(request["path"]),
        out_dir=Path(request["out_dir"]),
        head_length_px=float(request["head_length_px"]),
    )
    return {
        "info": asdict(made.info),
        "frame_png": str(made.frame_png),
        "overview_png": str(made.overview_png),
        "candidates": [asdict(c) for c in made.candidates],
    }


# What a child can be asked to do: the request's "op", and the function that answers it (in
# the child, confined, after the limits are set). Each reads only request["path"] and writes
# only inside the child's scratch folder.
_OPERATIONS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "probe": _probe,
    "process": _process,
    "first_frame": _first_frame,
}


def _child_main(request_path: Path, result_path: Path) -> None:
    request = json.loads(request_path.read_text())
    _limit_self(request["limits"])
    scratch = request_path.parent
    # From here on the child reads the installation and its one video, writes only in its
    # scratch folder, and opens no socket (annotation.ingest.sandbox).
    sandbox.confine(readable=[Path(request["path"])], writable=scratch)
    tempfile.tempdir = str(scratch)
    import cv2

    try:
        answer = _OPERATIONS[request["op"]](request)
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


def _warm_up() -> None:
    """Ingest one tiny generated video: every module and table decoding, tracking and
    encoding load on first use is then loaded here, once, and not again in each child (under
    its memory limit)."""
    import numpy as np

    from annotation.ingest.pipeline import IngestConfig, process_video
    from annotation.ingest.video_io import encode_h264_mp4, probe_video

    rows, columns = np.mgrid[0:48, 0:64]
    frames = np.stack(
        [
            120 - 80 * np.exp(-((columns - 20 - 2 * t) ** 2 + (rows - 24) ** 2) / 6.0)
            for t in range(4)
        ]
    ).astype(np.uint8)
    with tempfile.TemporaryDirectory(prefix="mersv-decode-server-") as scratch:
        video = Path(scratch) / "warm-up.mp4"
        encode_h264_mp4(frames, video, fps=15)
        probe_video(video)
        config = IngestConfig(n_frames=4, crop_size=16, template_size=5, search_radius=4)
        process_video(
            video, [(20.0, 24.0)], out_dir=Path(scratch) / "out", pixel_size_um=0.5, config=config
        )


def _serve() -> None:
    """The decode server: import what decoding needs, then fork one child per request line."""
    import gc

    import cv2

    cv2.setNumThreads(1)
    _warm_up()
    sandbox.readable_roots()  # worked out once here, not in every child
    sandbox.landlock_abi()
    # What the warm-up left is shared with every child: out of the collector's sight, so that
    # collections in a child do not write to (and so copy) the server's pages.
    gc.freeze()
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    answers.write(b'{"ready": true}\n')
    answers.flush()
    while line := requests.readline():
        job = json.loads(line)
        stderr_fd = os.open(job["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        answers.flush()
        pid = os.fork()
        if pid == 0:  # the child: its own session, no pipes to the caller, then the request
            code = 1
            try:
                os.setsid()
                devnull = os.open(os.devnull, os.O_RDWR)
                os.dup2(devnull, 0)
                os.dup2(devnull, 1)
                os.dup2(stderr_fd, 2)
                _child_main(Path(job["request"]), Path(job["result"]))
                code = _ANSWERED
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(stderr_fd)
        answers.write(json.dumps({"pid": pid}).encode() + b"\n")
        answers.flush()
        _, status, usage = os.wait4(pid, 0)
        cpu = usage.ru_utime + usage.ru_stime
        answers.write(json.dumps({"status": status, "cpu_s": cpu}).encode() + b"\n")
        answers.flush()


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        _serve()
    else:
        _child_main(Path(sys.argv[1]), Path(sys.argv[2]))
