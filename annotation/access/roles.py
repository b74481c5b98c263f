"""The four roles: expert, curator, trainee, admin. A role is a Django group.

Permissions by role (object-level rules live in the services and API permission classes):
- expert: grades clips from their queue, changes their own grades, sees their own ratings.
- curator: uploads videos, sees every clip, vote and statistic, builds dataset versions.
- trainee: grades practice clips; their grades never enter expert distributions.
- admin: everything, including the Django admin and accounts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.exceptions import PermissionDenied

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User
    from django.http import HttpRequest
    from rest_framework.request import Request

EXPERT = "expert"
CURATOR = "curator"
TRAINEE = "trainee"
ADMIN = "admin"
ROLES: tuple[str, ...] = (EXPERT, CURATOR, TRAINEE, ADMIN)
# A user in several role groups has the first of these (the most privileged).
ROLE_PRECEDENCE: tuple[str, ...] = (ADMIN, CURATOR, EXPERT, TRAINEE)

# Model permissions each group carries ("app_label.codename").
ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    EXPERT: ("annotation.view_clip", "annotation.add_rating", "annotation.change_rating"),
    CURATOR: (
        "annotation.view_patient",
        "annotation.view_video",
        "annotation.add_video",
        "annotation.view_clip",
        "annotation.view_rating",
    ),
    TRAINEE: ("annotation.view_clip",),
    ADMIN: (),  # admins are superusers
}


class UnknownRoleError(ValueError):
    pass


def role_check(role: str) -> str:
    if role not in ROLES:
        raise UnknownRoleError(f"unknown role {role!r}; choose one of: {', '.join(ROLES)}")
    return role


def role_groups_ensure() -> None:
    """Create the role groups and give them their permissions (idempotent)."""
    from django.contrib.auth.models import Group, Permission

    for role, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        wanted = []
        for dotted in perms:
            app_label, codename = dotted.split(".")
            perm = Permission.objects.filter(
                content_type__app_label=app_label, codename=codename
            ).first()
            if perm is not None:
                wanted.append(perm)
        group.permissions.set(wanted)


def user_role(user: User | AnonymousUser | None) -> str | None:
    """The user's role, or None for anonymous users and users without one.

    Superusers are admins. A user in several role groups gets the most privileged one.
    """
    if user is None or not user.is_authenticated:
        return None
    cached: object = getattr(user, "_mersv_role", False)
    if cached is None or isinstance(cached, str):
        return cached
    if user.is_superuser:
        names: set[str] = set()
    else:
        names = {g.name for g in user.groups.all()}
    return user_role_remember(user, names)


def user_role_remember(user: User, group_names: set[str]) -> str | None:
    """Decide the user's role from their group names and keep it on the user object, so that
    every later check of this request asks the database nothing (`user_role` reads it)."""
    role: str | None = ADMIN
    if not user.is_superuser:
        role = next((r for r in ROLE_PRECEDENCE if r in group_names), None)
    # One query per request, not per check; the cache is no field of the model.
    user._mersv_role = role  # type: ignore[attr-defined]
    return role


def user_has_role(user: User | AnonymousUser | None, *roles: str) -> bool:
    role = user_role(user)
    return role is not None and (role in roles or role == ADMIN)


def signed_in(request: HttpRequest | Request) -> User:
    """The user of a request to a view that only signed-in users reach: its permission class or
    decorator has turned anonymous requests away before the view runs."""
    user = request.user
    if not user.is_authenticated:
        raise PermissionDenied("sign in first")
    return user
