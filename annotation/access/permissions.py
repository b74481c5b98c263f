"""DRF permission classes by role. Object-level rules: see each view's get_queryset."""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from annotation.access.roles import CURATOR, EXPERT, TRAINEE, user_has_role, user_role


class _RolePermission(BasePermission):
    roles: tuple[str, ...] = ()
    message = "your role does not allow this"

    def has_permission(self, request, view) -> bool:
        return user_has_role(request.user, *self.roles)


class IsCurator(_RolePermission):
    roles = (CURATOR,)
    message = "only curators and admins may do this"


class IsExpert(BasePermission):
    """Experts only, admins not included: every grade counts in the panel's distribution, so
    only accounts in the expert role may give one."""

    message = "only experts may grade clips"

    def has_permission(self, request, view) -> bool:
        return user_role(request.user) == EXPERT


class IsTrainee(_RolePermission):
    roles = (TRAINEE,)
    message = "only trainees may do this"
