"""The web server's settings have one owner, config/gunicorn.py, which every start reads."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config" / "gunicorn.py"


def _settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, object]:
    for name in (
        "WEB_CONCURRENCY",
        "MERSV_WEB_THREADS",
        "MERSV_WEB_BIND",
        "MERSV_BODY_TIMEOUT_S",
        "MERSV_BODY_MIN_RATE_KB_S",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(CONFIG))


def test_the_default_is_two_processes_per_core_and_one_of_eight_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    found = _settings(monkeypatch)
    assert found["workers"] == 2 * (os.cpu_count() or 1) + 1
    # Threads, so that a slow client holds one thread, not a process; a process accepts
    # only what its threads can take at once.
    assert found["threads"] == 8 and found["worker_class"] == "gthread"
    assert found["worker_connections"] == 8 and found["keepalive"] == 0
    assert found["preload_app"] is True and found["bind"] == "0.0.0.0:8000"
    assert (found["timeout"], found["graceful_timeout"]) == (30, 30)
    assert found["limit_request_line"] == 4094 and found["limit_request_fields"] == 64
    assert found["limit_request_field_size"] == 8190
    assert (found["body_timeout_s"], found["body_min_rate_kb_s"]) == (10, 64)


def test_one_thread_gives_sync_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    found = _settings(monkeypatch, MERSV_WEB_THREADS="1")
    assert (found["threads"], found["worker_class"]) == (1, "sync")


def test_the_environment_sets_processes_threads_and_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    found = _settings(
        monkeypatch, WEB_CONCURRENCY="3", MERSV_WEB_THREADS="4", MERSV_WEB_BIND="127.0.0.1:9"
    )
    assert (found["workers"], found["threads"], found["bind"]) == (3, 4, "127.0.0.1:9")


@pytest.mark.parametrize("value", ["many", "0", "-2"])
@pytest.mark.parametrize("name", ["WEB_CONCURRENCY", "MERSV_BODY_TIMEOUT_S"])
def test_a_bad_number_stops_the_start_with_its_name(
    monkeypatch: pytest.MonkeyPatch, value: str, name: str
) -> None:
    with pytest.raises(SystemExit, match=name):
        _settings(monkeypatch, **{name: value})


def test_the_image_and_the_compose_file_start_gunicorn_with_the_config_and_no_own_flags() -> None:
    for path in (ROOT / "docker" / "Dockerfile", ROOT / "docker" / "compose.yml"):
        starts = [line for line in path.read_text().splitlines() if "gunicorn" in line]
        commands = [line for line in starts if not line.lstrip().startswith("#")]
        assert commands, f"{path.name} starts no gunicorn"
        for line in commands:
            assert "config/gunicorn.py" in line, line
            assert not any(flag in line for flag in ('"-w"', " -w ", "--threads", "--workers")), (
                line
            )


def test_gunicorn_itself_reads_the_config(tmp_path: Path) -> None:
    code = (
        "from gunicorn.app.wsgiapp import WSGIApplication\n"
        "import sys\n"
        "sys.argv = ['gunicorn', '-c', 'config/gunicorn.py', 'config.wsgi']\n"
        "app = WSGIApplication()\n"
        "print(app.cfg.workers, app.cfg.threads, app.cfg.preload_app, app.cfg.worker_class_str)\n"
    )
    env = {**os.environ, "WEB_CONCURRENCY": "2", "MERSV_WEB_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "1", "True", "sync"]
