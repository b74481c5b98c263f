"""The web server's settings, in one place: `gunicorn -c config/gunicorn.py config.wsgi`.

The Docker image, the compose file and benchmarks/grading_load.py all start gunicorn with this
file. `2 x cores + 1` processes, each with 8 threads (gunicorn's gthread worker), and a
process takes a new connection only while it has a thread free for it
(`worker_connections = threads`): a slow client then holds one thread, never a whole process,
and a busy process leaves new connections to the others.

Why not sync workers (one request per process)? They were faster for grading under load (40
experts, benchmarks/grading_load.py on the 2-core machine: 5 sync workers p95 44 ms against
56-59 ms for 3-4 processes x 4 threads, since threads of one process take turns on the
interpreter lock), but a sync worker is held for the whole of a request: ten clients that send
headers and then trickle their body stopped the site (issue 16). With threads, 30 such
clients leave normal requests answering (tests/security/test_slow_body.py);
`MERSV_WEB_THREADS=1` gives sync workers back where nginx (docker/nginx.conf.template, which buffers
every body) is the only client.

Slow clients, bounded:
- a body must arrive within `MERSV_BODY_TIMEOUT_S` (10 s) per read and
  `MERSV_BODY_TIMEOUT_S + length / MERSV_BODY_MIN_RATE_KB_S` (64 KB/s) in all, else 408
  (config/body_timeout.py, installed in each worker by `post_worker_init`);
- a connection that sends nothing is handed back to the poller after 5 s (gthread) and closed
  (`keepalive = 0`: one request per connection; nginx's upstream connections are so too);
- `timeout`: a worker silent this long is killed and replaced (a sync worker: a request
  longer than this); `graceful_timeout`: how long a stopping worker may finish its requests;
- request line, header count and header size limits (gunicorn answers 414 or 431 beyond,
  with the security headers: config/gunicorn_errors.py).
Slow *headers* are not bounded here: gunicorn reads them on a worker thread without a
timeout; nginx's `client_header_timeout` bounds them in the docker deployment.

Environment: WEB_CONCURRENCY (processes; gunicorn's own variable), MERSV_WEB_THREADS (threads
per process, 8), MERSV_WEB_BIND, MERSV_BODY_TIMEOUT_S, MERSV_BODY_MIN_RATE_KB_S.
"""

from __future__ import annotations

import os
from typing import Any


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
threads = _int("MERSV_WEB_THREADS", 8)
worker_class = "gthread" if threads > 1 else "sync"
worker_connections = threads  # no connection waits in a process whose threads are all busy
preload_app = True  # import Django once, before the fork: faster start, shared memory
# No runtime control socket (gunicornc): nothing a local process could resize or stop the
# server through, and two servers on one machine would share its default path.
control_socket_disable = True

timeout = 30
graceful_timeout = 30
keepalive = 0
limit_request_line = 4094  # bytes of method, path and query (414 beyond)
limit_request_fields = 64  # header lines (400 beyond)
limit_request_field_size = 8190  # bytes of one header line (400 beyond)

body_timeout_s = _int("MERSV_BODY_TIMEOUT_S", 10)
body_min_rate_kb_s = _int("MERSV_BODY_MIN_RATE_KB_S", 64)


def post_worker_init(worker: Any) -> None:
    """Every worker's application reads request bodies under the limits above, and gunicorn's
    own 400, 414 and 431 answers carry the security headers (config/gunicorn_errors.py)."""
    from config.body_timeout import BodyTimeout
    from config.gunicorn_errors import install

    install()

    worker.wsgi = BodyTimeout(
        worker.wsgi, timeout_s=body_timeout_s, min_rate_bytes_s=body_min_rate_kb_s * 1024
    )
