"""gunicorn's own error answers (400 for a malformed request, 414 for a request line over the
limit, 431 for too many or too large headers) carry the application's security headers.

gunicorn writes those answers itself, before any application code runs, and has no setting or
hook for their headers. ``install`` replaces the one function it writes them with
(``gunicorn.util.write_error``, called from ``Worker.handle_error``) by one that adds the
headers, and leaves it alone (with a warning) when that function is not the one it knows, so
that an upgrade of gunicorn never breaks its error answers. nginx adds the same headers in
the docker deployment in any case (docker/nginx.conf.template, ``add_header ... always``).
"""

from __future__ import annotations

import html
import inspect
import logging
from typing import Any

from config.body_timeout import SECURITY_HEADERS

log = logging.getLogger(__name__)

_EXPECTED_PARAMETERS = ["sock", "status_int", "reason", "mesg"]


def _write_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    from gunicorn import util

    body = (
        f"<!DOCTYPE html><html><head><title>{html.escape(reason)}</title></head>"
        f"<body><h1>{html.escape(reason)}</h1><p>{html.escape(mesg)}</p></body></html>\n"
    ).encode("latin-1", errors="replace")
    headers = [
        f"HTTP/1.1 {int(status_int)} {reason}",
        "Content-Type: text/html; charset=latin-1",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in SECURITY_HEADERS),
    ]
    head = "\r\n".join(headers).encode("latin-1", errors="replace") + b"\r\n\r\n"
    util.write_nonblock(sock, head + body)


def install() -> bool:
    """Make gunicorn's error answers carry the headers; False (and a warning) if this
    gunicorn writes them differently."""
    from gunicorn import util

    original = getattr(util, "write_error", None)
    if original is _write_error:
        return True
    if original is None or list(inspect.signature(original).parameters) != _EXPECTED_PARAMETERS:
        log.warning("gunicorn's error answers keep their own headers: unknown write_error")
        return False
    util.write_error = _write_error
    return True
