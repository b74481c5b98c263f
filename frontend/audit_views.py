"""The audit log page (curators and admins)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from annotation.access.audit import ACTIONS
from annotation.access.roles import CURATOR
from annotation.models import AuditEvent
from frontend.views import role_required

AUDIT_PAGE_SIZE = 50


@require_GET
@role_required(CURATOR)
def audit_log(request: HttpRequest) -> HttpResponse:
    events = AuditEvent.objects.all()
    action = request.GET.get("action", "")
    username = request.GET.get("user", "").strip()
    if action in ACTIONS:
        events = events.filter(action=action)
    if username:
        events = events.filter(username=username)
    page = Paginator(events, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    usernames = get_user_model().objects.order_by("username").values_list("username", flat=True)
    context = {
        "page": page,
        "actions": ACTIONS,
        "action": action,
        "username": username,
        "usernames": list(usernames),
    }
    return render(request, "frontend/audit_log.html", context)
