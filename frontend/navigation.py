"""The navigation bar: one table of entries, each shown to exactly the users its page lets in.

Whether a user sees an entry is not written here: the view behind the entry's URL answers,
through the `role_allows` check that `role_required` keeps on it, and the Django admin through
its own `has_permission`. So a link in the bar never answers 403, and a change of a page's
roles moves its link with it. tests/frontend/test_browser_navigation.py opens every link as each
role.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from django.contrib import admin
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from django.urls import get_urlconf, resolve, reverse


@dataclass(frozen=True)
class NavEntry:
    url_name: str
    label: str


# In the order they appear; each role sees the entries its pages allow.
NAV_ENTRIES: tuple[NavEntry, ...] = (
    NavEntry("grade", "Grade"),
    NavEntry("grade-summary", "My session"),
    NavEntry("grade-compare", "Compare"),
    NavEntry("practice", "Practice"),
    NavEntry("practice-progress", "My progress"),
    NavEntry("dashboard", "Dashboard"),
    NavEntry("clip-list", "Clips"),
    NavEntry("video-list", "Videos"),
    NavEntry("video-upload", "Upload"),
    NavEntry("dataset-list", "Datasets"),
    NavEntry("training-run-list", "Training"),
    NavEntry("trainee-list", "Trainees"),
    NavEntry("triage", "Triage"),
    NavEntry("audit-log", "Audit"),
)


@dataclass(frozen=True)
class NavLink:
    url: str
    label: str


@functools.cache
def nav_entry_target(urlconf: str | None, url_name: str) -> tuple[str, Callable[[object], bool]]:
    """The entry's URL and the permission check of the view it leads to."""
    url = reverse(url_name, urlconf=urlconf)
    view = resolve(url, urlconf=urlconf).func
    allows = getattr(view, "role_allows", None)
    if allows is None:
        raise ImproperlyConfigured(
            f"the navigation entry {url_name!r} leads to a view without role_required; "
            "decorate the view, or take the entry out of NAV_ENTRIES"
        )
    return url, allows


def admin_link_shown(request: HttpRequest) -> bool:
    """The Django admin's own test (an active staff account)."""
    user = getattr(request, "user", None)
    return user is not None and user.is_authenticated and admin.site.has_permission(request)


def nav_links(request: HttpRequest) -> list[NavLink]:
    """The links of the user's navigation bar; none for an anonymous user."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return []
    links = []
    for entry in NAV_ENTRIES:
        url, allows = nav_entry_target(get_urlconf(), entry.url_name)
        if allows(user):
            links.append(NavLink(url=url, label=entry.label))
    if admin_link_shown(request):
        links.append(NavLink(url=reverse("admin:index"), label="Admin"))
    return links
