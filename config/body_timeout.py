"""A request body must arrive in time, or the server thread waiting for it is given back.

gunicorn parses the headers and hands the application the socket; Django reads the body from
it when a view (or the CSRF check) asks. A client that sends headers with a Content-Length and
then nothing, or a byte now and then, would hold that worker thread for as long as it likes,
and a few dozen such clients would hold them all (gunicorn has no body timeout of its own).
``BodyTimeout`` wraps the WSGI application (config/gunicorn.py installs it in every worker):

- **idle**: each read from the socket waits at most ``timeout_s`` for the next bytes;
- **total**: the whole body must arrive within ``timeout_s + length / min_rate`` seconds
  (a trickle just under the idle limit cannot stretch it); at that moment a timer shuts the
  socket's reading side, so the blocked read returns at once.

Either way the request ends as ``408 Request Timeout`` with ``Connection: close``, whatever
the application made of its broken body, and the thread serves the next request. Behind the
nginx of docker/ (which buffers each body before it passes the request on) no body is ever
slow here; this guards a gunicorn that faces clients itself.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
_ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | None

# The protections of the application's own answers (frontend.middleware), for answers the
# web server writes without it: nothing in them may load or be framed.
SECURITY_HEADERS = [
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
]
TIMEOUT_BODY = b"The request body did not arrive in time.\n"
TIMEOUT_HEADERS = [
    ("Content-Type", "text/plain; charset=utf-8"),
    ("Content-Length", str(len(TIMEOUT_BODY))),
    ("Connection", "close"),
    *SECURITY_HEADERS,
]


class BodyTimedOut(OSError):
    """The client did not send its body in time (Django reports it as an unreadable body)."""


class _Guard:
    """The idle limit on the socket and the timer of the total limit, for one request's
    body: armed until the body has been read whole (or the request ends)."""

    def __init__(self, sock: socket.socket, *, idle_s: float, total_s: float) -> None:
        self.sock = sock
        self.expired = False  # the body did not arrive in time
        self._lock = threading.Lock()
        self._stopped = False
        self._prior_timeout = sock.gettimeout()
        sock.settimeout(idle_s)
        self._timer = threading.Timer(total_s, self.expire)
        self._timer.daemon = True
        self._timer.start()

    def expire(self) -> None:
        with self._lock:
            if self._stopped:  # the body was read in time: the application is working on it
                return
            self.expired = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RD)  # a blocked read returns now, empty

    def stop(self) -> None:
        """The body is read (or the request is over): no limit applies any more."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._timer.cancel()
        if not self.expired:
            with contextlib.suppress(OSError):
                self.sock.settimeout(self._prior_timeout)


class _GuardedInput:
    """``wsgi.input`` whose reads fail with BodyTimedOut once the guard has expired, and
    which stops the guard once ``length`` bytes (the whole body) have been read."""

    def __init__(self, stream: Any, guard: _Guard, length: int) -> None:
        self._stream = stream
        self._guard = guard
        self._left = length

    def _call(self, method: str, *args: Any) -> Any:
        if self._guard.expired:
            raise BodyTimedOut("the request body did not arrive in time")
        try:
            result = getattr(self._stream, method)(*args)
        except OSError:  # socket.timeout (idle), or the read side shut (total)
            self._guard.expire()
            raise BodyTimedOut("the request body did not arrive in time") from None
        if self._guard.expired:  # the timer won the race with a short read
            raise BodyTimedOut("the request body did not arrive in time")
        read = sum(map(len, result)) if method == "readlines" else len(result)
        self._left -= read
        if self._left <= 0 or (not read and args != (0,)):  # all of it, or its end
            self._guard.stop()
        return result

    def read(self, size: int | None = None) -> bytes:
        return bytes(self._call("read", size) if size is not None else self._call("read"))

    def readline(self, size: int | None = None) -> bytes:
        return bytes(self._call("readline", size) if size is not None else self._call("readline"))

    def readlines(self, hint: int | None = None) -> list[bytes]:
        return list(self._call("readlines", hint) if hint is not None else self._call("readlines"))

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


def _body_length(environ: dict[str, Any]) -> int | None:
    """The body's declared length; 0 for a chunked body; None when there is no body."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > 0:
        return length
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        return 0
    return None


class BodyTimeout:
    """WSGI middleware: a body slower than the limits ends its request as a 408."""

    def __init__(self, app: WSGIApp, *, timeout_s: float, min_rate_bytes_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.min_rate_bytes_s = min_rate_bytes_s

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        sock = environ.get("gunicorn.socket")
        length = _body_length(environ)
        if not isinstance(sock, socket.socket) or length is None:
            return self.app(environ, start_response)
        guard = _Guard(
            sock,
            idle_s=self.timeout_s,
            total_s=self.timeout_s + length / self.min_rate_bytes_s,
        )
        environ["wsgi.input"] = _GuardedInput(environ["wsgi.input"], guard, length)
        answered_408 = False

        def guarded_start_response(
            status: str, headers: list[tuple[str, str]], exc_info: _ExcInfo = None
        ) -> Any:
            nonlocal answered_408
            if guard.expired:
                answered_408 = True
                return start_response("408 Request Timeout", TIMEOUT_HEADERS, exc_info)
            return start_response(status, headers, exc_info)

        try:
            result = self.app(environ, guarded_start_response)
        finally:
            guard.stop()
        if not answered_408:
            return result
        close = getattr(result, "close", None)
        if close is not None:
            close()
        return [TIMEOUT_BODY]
