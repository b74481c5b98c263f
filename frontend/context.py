from __future__ import annotations

from django.http import HttpRequest

from annotation.access.roles import user_role
from frontend.navigation import nav_links


def roles(request: HttpRequest) -> dict[str, object]:
    role = user_role(getattr(request, "user", None))
    return {
        "role": role,
        "is_curator": role in ("curator", "admin"),
        "nav_links": nav_links(request),
    }
