"""Thirty clients that send headers and then trickle (or never send) their body do not stop
the site: the real gunicorn, started with config/gunicorn.py, keeps answering normal requests
about as fast as when idle, and answers each slow client 408 within the body timeout."""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.conftest import ROOT, _test_database_url

BODY_TIMEOUT_S = 4
SLOW_CLIENTS = 30
# The slow bodies go where the application reads them before anything else: the token API
# parses its JSON body for any anonymous client.
SLOW_REQUEST = (
    b"POST /api/token/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 1000\r\n\r\n{"
)


@pytest.fixture
def gunicorn_port(transactional_db) -> Iterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "DATABASE_URL": _test_database_url(),
        # The processes of a 2-core machine, whatever this one has; every other setting is
        # the file's own, the body timeout shortened so the test takes seconds.
        "WEB_CONCURRENCY": "5",
        "MERSV_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        "MERSV_WEB_BIND": f"127.0.0.1:{port}",
    }
    env.pop("MERSV_WEB_THREADS", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py", "config.wsgi"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                for _ in range(50):  # every process warm
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=30).close()
                break
            time.sleep(0.3)
        yield port
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)  # the workers stop at once; gunicorn's master takes a while
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _normal_request_seconds(port: int) -> float:
    start = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=20) as answer:
        assert answer.status == 200 and b"password" in answer.read()
    return time.monotonic() - start


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


@dataclass
class SlowClients:
    """Slow clients in a thread of their own: half send one more byte every half second,
    half nothing; each records when the server answered (what) or closed."""

    port: int
    opened_at: float = 0.0
    answers: dict[int, tuple[float, bytes]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        sockets = [socket.create_connection(("127.0.0.1", self.port)) for _ in range(SLOW_CLIENTS)]
        self.opened_at = time.monotonic()
        for sock in sockets:
            sock.sendall(SLOW_REQUEST)
            sock.setblocking(False)
        selector = selectors.DefaultSelector()
        for index, sock in enumerate(sockets):
            selector.register(sock, selectors.EVENT_READ, index)
        received = {i: b"" for i in range(SLOW_CLIENTS)}
        next_trickle = time.monotonic() + 0.5
        while not self._stop.is_set() and len(self.answers) < SLOW_CLIENTS:
            for key, _ in selector.select(timeout=0.1):
                index, sock = key.data, key.fileobj
                try:
                    chunk = sock.recv(4096)
                except OSError:
                    chunk = b""
                received[index] += chunk
                if not chunk:  # closed by the server
                    self.answers[index] = (time.monotonic() - self.opened_at, received[index])
                    selector.unregister(sock)
            if time.monotonic() >= next_trickle:
                next_trickle += 0.5
                for index in range(0, SLOW_CLIENTS, 2):
                    if index not in self.answers:
                        with contextlib.suppress(OSError):
                            sockets[index].send(b" ")
        for sock in sockets:
            sock.close()

    def stop(self) -> None:
        self._stop.set()


def test_thirty_slow_bodies_leave_normal_requests_answering_and_are_cut_off(
    gunicorn_port: int,
) -> None:
    idle = [_normal_request_seconds(gunicorn_port) for _ in range(40)]

    slow = SlowClients(gunicorn_port)
    thread = threading.Thread(target=slow.run, daemon=True)
    thread.start()
    while not slow.opened_at:
        time.sleep(0.01)
    time.sleep(0.5)  # every slow client has sent its headers and holds a thread
    loaded = []
    while time.monotonic() - slow.opened_at < BODY_TIMEOUT_S - 0.5 or len(loaded) < 20:
        loaded.append(_normal_request_seconds(gunicorn_port))
    held_while_measured = len(slow.answers)
    thread.join(timeout=BODY_TIMEOUT_S + 20)
    slow.stop()

    # Normal requests all answered (200, checked above) about as fast as when idle; the floor
    # keeps a loaded test machine's jitter from failing it.
    idle_p95, loaded_p95 = _p95(idle), _p95(loaded)
    print(f"normal /login/ p95: idle {idle_p95 * 1000:.0f} ms, {SLOW_CLIENTS} slow bodies "
          f"{loaded_p95 * 1000:.0f} ms ({len(loaded)} requests)")  # fmt: skip
    assert held_while_measured == 0, "slow clients were cut off before the measurement ended"
    assert loaded_p95 < max(2 * idle_p95, 0.25), (idle_p95, loaded_p95)

    # Each slow client got 408 and was closed within the body timeout (plus scheduling).
    assert len(slow.answers) == SLOW_CLIENTS, f"{len(slow.answers)} of {SLOW_CLIENTS} answered"
    for seconds, answer in slow.answers.values():
        assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
        assert b"x-content-type-options: nosniff" in answer.lower()
        assert BODY_TIMEOUT_S - 0.5 < seconds < BODY_TIMEOUT_S + 3, seconds


def _raw_answer(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        with contextlib.suppress(TimeoutError):
            while chunk := sock.recv(65536):
                answer += chunk
    return answer


def test_gunicorns_own_error_answers_carry_the_security_headers(gunicorn_port: int) -> None:
    too_long_line = b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    too_many_headers = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(
        f"X-H{i}: {i}\r\n".encode() for i in range(70)
    ) + b"\r\n"  # fmt: skip
    # 414 URI Too Long, 431 Request Header Fields Too Large: written by gunicorn itself.
    for request, status in ((too_long_line, b"414"), (too_many_headers, b"431")):
        answer = _raw_answer(gunicorn_port, request)
        head = answer.split(b"\r\n\r\n", 1)[0].lower()
        assert head.startswith(b"http/1.1 " + status), answer[:200]
        for header in (
            b"x-content-type-options: nosniff",
            b"x-frame-options: deny",
            b"referrer-policy: same-origin",
            b"content-security-policy: default-src 'none'",
        ):
            assert header in head, (status, header, head)


def test_a_body_read_in_time_is_answered_normally_however_long_the_view_then_works() -> None:
    from config.body_timeout import BodyTimeout

    server_side, client_side = socket.socketpair()
    client_side.sendall(b"0123456789")
    stream = server_side.makefile("rb")

    def slow_view(environ, start_response):  # reads its body, then works past the limit
        body = environ["wsgi.input"].read(10)
        time.sleep(1.5)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]

    app = BodyTimeout(slow_view, timeout_s=1, min_rate_bytes_s=1024 * 1024)
    statuses: list[str] = []
    environ = {"CONTENT_LENGTH": "10", "wsgi.input": stream, "gunicorn.socket": server_side}
    answer = app(environ, lambda status, headers, exc_info=None: statuses.append(status))
    assert statuses == ["200 OK"] and list(answer) == [b"0123456789"]

    # The same view whose client sends 4 of its 10 bytes: 408 once the limit has passed.
    server_side, client_side = socket.socketpair()
    client_side.sendall(b"0123")
    environ = {
        "CONTENT_LENGTH": "10",
        "wsgi.input": server_side.makefile("rb"),
        "gunicorn.socket": server_side,
    }
    statuses.clear()

    def reading_view(environ, start_response):
        with contextlib.suppress(OSError):
            environ["wsgi.input"].read(10)
        start_response("400 Bad Request", [])
        return [b""]

    started = time.monotonic()
    answer = BodyTimeout(reading_view, timeout_s=1, min_rate_bytes_s=1024 * 1024)(
        environ, lambda status, headers, exc_info=None: statuses.append(status)
    )
    assert statuses == ["408 Request Timeout"] and b"did not arrive" in b"".join(answer)
    assert 0.9 < time.monotonic() - started < 3
