from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import logout
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve
from django.utils import timezone
from django.views import defaults

# Scripts and styles come only from our own static files: a stored payload in any text field
# cannot run even if a template forgot to escape it.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


def _bucket_origin() -> str:
    """With object storage, the bucket's origin: media redirect there and the upload page
    sends parts there, so the policy lets images, videos and fetches reach it (no scripts)."""
    if not settings.STORAGE_URL:
        return ""
    endpoint = settings.S3_ENDPOINT_URL or f"https://s3.{settings.S3_REGION}.amazonaws.com"
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy() -> str:
    origin = _bucket_origin()
    if not origin:
        return CONTENT_SECURITY_POLICY
    return "; ".join(
        f"{d} {origin}" if d.split()[0] in ("img-src", "media-src", "connect-src") else d
        for d in CONTENT_SECURITY_POLICY.split("; ")
    )


class SecurityHeadersMiddleware:
    """Adds CSP and the other security headers on every response. It is the outermost
    middleware, so redirects and static files answered by inner middleware get them too."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", content_security_policy())
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault(
            "Permissions-Policy", "camera=(), microphone=(), geolocation=()"
        )
        return response


# URL names that take a video upload; every other route gets the small general body limit.
UPLOAD_URL_NAMES = frozenset({"video-upload", "api-videos"})


def _refuse(status: int, message: str) -> HttpResponse:
    # The body is left unread; WSGI servers close such a connection (no keep-alive after it).
    return HttpResponse(message + "\n", status=status, content_type="text/plain")


class RequestSizeLimitMiddleware:
    """Refuses oversized bodies from their Content-Length header, before anything reads them.

    Upload routes accept up to MAX_UPLOAD_MB and need a Content-Length (a chunked body could
    be any size); every other route accepts MAX_REQUEST_MB. Goes before CSRF and sessions,
    which would otherwise read the body first.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            is_upload = resolve(request.path_info).url_name in UPLOAD_URL_NAMES
        except Resolver404:
            is_upload = False
        limit_mb = settings.MAX_UPLOAD_MB if is_upload else settings.MAX_REQUEST_MB
        raw_length = request.META.get("CONTENT_LENGTH") or ""
        chunked = "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
        if is_upload and request.method in ("POST", "PUT", "PATCH") and chunked:
            return _refuse(411, "uploads need a Content-Length header; send the file in one piece")
        try:
            length = int(raw_length) if raw_length else 0
        except ValueError:
            return _refuse(400, f"the Content-Length header {raw_length!r} is not a number")
        if length > limit_mb * 1024 * 1024:
            what = "videos" if is_upload else "requests"
            return _refuse(
                413, f"the request is too large: this address accepts {what} up to {limit_mb} MB"
            )
        return self.get_response(request)


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: 503 with a message, not a bare 500, while the database cannot be reached
    (restarting, network trouble), so clients know to retry.

    A handler, not a middleware: the error may come from a middleware (sessions, auth), which
    Django turns into a response before any outer middleware could see it; this runs inside
    the except block, so the exception is at hand.
    """
    error = sys.exc_info()[1]
    if isinstance(error, OperationalError | InterfaceError):
        logging.getLogger(__name__).warning("database unavailable: %s", error)
        response = _refuse(
            503, "the database is unavailable for a moment; please try again in a few seconds"
        )
        response["Retry-After"] = "5"
        return response
    return defaults.server_error(request)


# The session key holding the time (POSIX seconds) of the user's latest request.
LAST_ACTIVITY_KEY = "mersv_last_activity"
# Write the time at most this often: a session save on every request would be wasted work.
_ACTIVITY_RESOLUTION_S = 30


class SessionIdleTimeoutMiddleware:
    """Logs a user out after SESSION_IDLE_S seconds without a request (SESSION_COOKIE_AGE is
    the absolute limit). Sits after AuthenticationMiddleware."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and hasattr(request, "session"):
            now = timezone.now().timestamp()
            last = request.session.get(LAST_ACTIVITY_KEY)
            if isinstance(last, int | float) and now - last > settings.SESSION_IDLE_S:
                logout(request)  # flushes the session; request.user becomes anonymous
            elif not isinstance(last, int | float) or now - last >= _ACTIVITY_RESOLUTION_S:
                request.session[LAST_ACTIVITY_KEY] = now
        return self.get_response(request)
