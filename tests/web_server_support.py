"""The production web server for tests: gunicorn with config/gunicorn.py on a free port.

Not Django's live server, which answers MEDIA_URL itself (without the media view) and is not
the server that deployments run.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

from tests.conftest import ROOT, _test_database_url


@contextlib.contextmanager
def gunicorn_running(**env_extra: str) -> Iterator[tuple[str, int]]:
    """gunicorn as shipped, one process, on the test database; (host, port) once a page answers
    (the first request also imports every view module). `env_extra`: more environment."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "DATABASE_URL": _test_database_url(), "WEB_CONCURRENCY": "1", **env_extra}
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py", "config.wsgi",
         "-b", f"127.0.0.1:{port}", "--timeout", "30"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=30).close()
                break
            time.sleep(0.3)
        yield "127.0.0.1", port
    finally:
        server.terminate()
        server.wait(timeout=20)
