"""The 403 and 404 pages: the site's layout, what happened, and a way back.

API routes keep answering JSON (DRF's `{"detail": ...}`): a PermissionDenied or Http404 raised
inside a DRF view never gets here, and the rest under /api/ (an unknown API address, a refusal
by a middleware) is answered in the same shape.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme

from annotation.access.audit import permission_denied_record
from frontend.navigation import admin_link_shown

API_PREFIX = "/api/"


def _is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PREFIX)


def _back_url(request: HttpRequest) -> str | None:
    """The previous page, when the browser says it was one of ours (and not this one)."""
    referer = request.META.get("HTTP_REFERER", "")
    if not referer or referer == request.build_absolute_uri():
        return None
    safe = url_has_allowed_host_and_scheme(
        referer, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return referer if safe else None


def _error_page(
    request: HttpRequest, template: str, status: int, **context: object
) -> HttpResponse:
    context.update(back_url=_back_url(request), admin_link=admin_link_shown(request))
    return render(request, template, context, status=status)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler403: records who was refused what (audit event and one log line), then says so."""
    reason = str(exception) or "you may not open this page"
    permission_denied_record(request, reason)
    if _is_api(request):
        return JsonResponse({"detail": reason}, status=403)
    return _error_page(request, "403.html", 403, reason=reason.rstrip("."))


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler404. The exception's text is not shown: it can name a model or a query."""
    if _is_api(request):
        return JsonResponse({"detail": "Not found."}, status=404)
    return _error_page(request, "404.html", 404)
