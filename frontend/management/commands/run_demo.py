"""python manage.py run_demo: the web server (gunicorn) and two Celery workers, as in production.

One worker takes the default queue (ingestion, dataset builds, exports), the other the
`training` queue at idle CPU and I/O priority (SCHED_IDLE and nice 19, `ionice -c 3` where
the command exists), as `docker/compose.yml` splits them: an upload or a build never waits
behind a training run, and a training run only takes the CPU that nothing else wants. The
workers' output and the web server's own messages go to `var/logs/` (requests stay on the
terminal); the demo logins are printed last, once the web server and the default worker
answer. Ctrl-C stops everything. Used by `make demo` (`make demo PORT=8001`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from frontend.management.commands.seed_demo import demo_logins

READY_TIMEOUT_S = 120


@dataclass(frozen=True)
class DemoWorker:
    """One Celery worker of the demo: its name, queue and command line."""

    name: str
    queue: str
    argv: list[str]
    idle_priority: bool


def demo_workers(*, python: str = sys.executable, suffix: str = "demo") -> list[DemoWorker]:
    """The demo's two workers: the default queue (two processes, so that an ingestion and a
    build run side by side) and the training queue (one process, at idle priority)."""
    common = ["-m", "celery", "-A", "config", "worker", "-l", "INFO",
              "--without-gossip", "--without-mingle"]  # fmt: skip
    ionice = ["ionice", "-c", "3"] if shutil.which("ionice") else []
    training_args = ["-P", "solo", "-Q", "training", "-n", f"training-{suffix}@%h"]
    return [
        DemoWorker(
            name=f"default-{suffix}",
            queue="celery",
            argv=[python, *common, "-Q", "celery", "-c", "2", "-n", f"default-{suffix}@%h"],
            idle_priority=False,
        ),
        DemoWorker(
            name=f"training-{suffix}",
            queue="training",
            argv=[*ionice, python, *common, *training_args],
            idle_priority=True,
        ),
    ]


def lower_priority() -> None:
    """In the child before exec: the idle scheduling class where Linux allows it, and nice 19
    everywhere (a SCHED_IDLE process ignores nice, other systems honour it)."""
    os.nice(19 - os.nice(0))
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or refused
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


Started = list[tuple[DemoWorker, "subprocess.Popen[bytes]", Path]]


def demo_workers_start(
    *,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    suffix: str = "demo",
) -> Started:
    """Start the demo's workers, each writing to `log_dir/<name>.log`."""
    log_dir.mkdir(parents=True, exist_ok=True)
    started = []
    for worker in demo_workers(suffix=suffix):
        path = log_dir / f"{worker.name}.log"
        log: IO[bytes] = path.open("wb")
        proc = subprocess.Popen(
            worker.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            preexec_fn=lower_priority if worker.idle_priority else None,
        )
        log.close()  # the child keeps its own descriptor
        started.append((worker, proc, path))
    return started


def workers_ready(started: Started, *, queues: tuple[str, ...] = ("celery", "training")) -> bool:
    """True once the workers of `queues` logged "ready."; raises when any worker exited."""
    for worker, proc, path in started:
        if proc.poll() is not None:
            raise RuntimeError(f"the {worker.name} worker exited; see {path}")
    return all(
        "ready." in path.read_text(errors="replace") for w, _, path in started if w.queue in queues
    )


def _port_answers(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


class Command(BaseCommand):
    help = "Run gunicorn and the two Celery workers for the demo; Ctrl-C stops them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args: object, **options: object) -> None:
        host, port = str(options["host"]), int(str(options["port"]))
        if _port_answers(host, port):
            self.stderr.write(f"port {port} is in use: run `make demo PORT=<another port>`")
            sys.exit(1)
        log_dir = Path(settings.VAR_DIR) / "logs"
        workers = demo_workers_start(log_dir=log_dir)
        web = subprocess.Popen(  # requests on the terminal, its own messages in web.log
            [sys.executable, "-m", "gunicorn", "config.wsgi", "--preload", "-b", f"{host}:{port}",
             "-w", "2", "--threads", "4", "--access-logfile", "-",
             "--error-logfile", str(log_dir / "web.log")]
        )  # fmt: skip
        procs = [web, *(proc for _, proc, _ in workers)]
        stopping = False

        def stop(*_: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            self._wait_until_up(workers, web, host, port, lambda: stopping)
            if not stopping:
                self._print_logins(host, port, log_dir, workers)
            while not stopping and all(p.poll() is None for p in procs):
                time.sleep(0.5)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()

    def _wait_until_up(
        self,
        workers: Started,
        web: subprocess.Popen[bytes],
        host: str,
        port: int,
        stopping: Callable[[], bool],
    ) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not stopping() and time.monotonic() < deadline:
            if web.poll() is not None:
                raise RuntimeError("the web server exited; see web.log in the demo's logs")
            # Not the training worker: in the idle class it starts only once the CPU is free.
            if workers_ready(workers, queues=("celery",)) and _port_answers(host, port):
                return
            time.sleep(0.3)

    def _print_logins(self, host: str, port: int, log_dir: Path, workers: Started) -> None:
        lines = [
            "",
            self.style.SUCCESS(f"MERSV demo at http://{host}:{port}/"),
            demo_logins(),
            "workers: "
            + ", ".join(f"{w.name} ({w.queue} queue)" for w, _, _ in workers)
            + f"; the training worker runs at idle priority; logs in {log_dir}",
            f"data in {settings.VAR_DIR}; Ctrl-C stops web and workers",
        ]
        self.stdout.write("\n".join(lines))
