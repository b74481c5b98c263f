"""The web server's settings, in one place: `gunicorn -c config/gunicorn.py config.wsgi`.

The Docker image, the compose file and benchmarks/grading_load.py all start gunicorn with this
file. Sync workers (one request per process at a time, `2 x cores + 1` processes): a grading
step is CPU work in Python, and threads of one process take turns on the interpreter lock, so
two requests that land in one process wait on each other. Measured with 40 experts grading at
once on the 2-core development machine (benchmarks/grading_load.py, --think-ms 3000,
--conn-max-age 60, run one after another in one session): 5 sync workers p95 44 ms and
8 sync workers 42-44 ms, against 56-59 ms for 3 workers x 4 threads and 57-59 ms for 4 x 4.
A sync worker is held for the whole of a request, so slow clients must not reach it directly:
put the TLS reverse proxy README's deployment section asks for in front (it buffers uploads
and downloads).

Environment: WEB_CONCURRENCY (processes; gunicorn's own variable), MERSV_WEB_THREADS (threads
per process, 1 by default; above 1 gunicorn uses its threaded worker), MERSV_WEB_BIND.
"""

from __future__ import annotations

import os


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a whole number") from None
    if value < 1:
        raise SystemExit(f"{name}={raw!r} must be at least 1")
    return value


bind = os.environ.get("MERSV_WEB_BIND", "0.0.0.0:8000")
workers = _int("WEB_CONCURRENCY", 2 * (os.cpu_count() or 1) + 1)
threads = _int("MERSV_WEB_THREADS", 1)
preload_app = True  # import Django once, before the fork: faster start, shared memory
