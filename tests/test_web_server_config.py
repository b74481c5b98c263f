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
    for name in ("WEB_CONCURRENCY", "MERSV_WEB_THREADS", "MERSV_WEB_BIND"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(CONFIG))


def test_the_default_is_two_sync_workers_per_core_and_one(monkeypatch: pytest.MonkeyPatch) -> None:
    found = _settings(monkeypatch)
    assert found["workers"] == 2 * (os.cpu_count() or 1) + 1
    assert found["threads"] == 1  # sync workers: no two requests share an interpreter lock
    assert found["preload_app"] is True and found["bind"] == "0.0.0.0:8000"


def test_the_environment_sets_processes_threads_and_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    found = _settings(
        monkeypatch, WEB_CONCURRENCY="3", MERSV_WEB_THREADS="4", MERSV_WEB_BIND="127.0.0.1:9"
    )
    assert (found["workers"], found["threads"], found["bind"]) == (3, 4, "127.0.0.1:9")


@pytest.mark.parametrize("value", ["many", "0", "-2"])
def test_a_bad_worker_count_stops_the_start_with_its_name(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    with pytest.raises(SystemExit, match="WEB_CONCURRENCY"):
        _settings(monkeypatch, WEB_CONCURRENCY=value)


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
    env = {**os.environ, "WEB_CONCURRENCY": "2"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "1", "True", "sync"]
