"""One concise log line per refused request (403), instead of Django's warning with a traceback.

`denial_log` writes the line (method, path, the account's id, the reason) and marks the
request; `SkipLoggedDenials`, a filter on the `django.request` logger (LOGGING in
config/settings.py), then drops Django's own record of the same 403: for a page that record
carries the PermissionDenied traceback, for the API a second "Forbidden: ..." line.

No model imports here: the logging config loads this module before the apps are ready.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest

log = logging.getLogger(__name__)

# Set on a request whose refusal has been logged.
_LOGGED_ATTR = "_mersv_denial_logged"


def _one_line(text: str) -> str:
    # A path or reason is client-controlled: an encoded newline must not start a forged line.
    return text.encode("unicode_escape").decode("ascii")


def denial_log(request: HttpRequest, reason: str) -> None:
    """Log the refusal of `request` once, at WARNING: `403 GET /clips/ user_id=7 reason=...`.

    The account appears by its numeric id (user names stay out of the logs); anonymous
    requests as `user_id=-`."""
    if getattr(request, _LOGGED_ATTR, False):
        return
    user = getattr(request, "user", None)
    user_id = user.pk if user is not None and user.is_authenticated else "-"
    log.warning(
        "403 %s %s user_id=%s reason=%s",
        request.method,
        _one_line(request.path),
        user_id,
        _one_line(reason or "permission denied"),
    )
    setattr(request, _LOGGED_ATTR, True)


class SkipLoggedDenials(logging.Filter):
    """Drops a `django.request` record of a 403 whose request `denial_log` already logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        already = getattr(request, _LOGGED_ATTR, False)
        return not (getattr(record, "status_code", None) == 403 and already)
