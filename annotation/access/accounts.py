"""Writes of accounts: a user created in one role, a role changed (both audited)."""

from __future__ import annotations

import re
from contextlib import AbstractContextManager, nullcontext

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, User
from django.contrib.auth.password_validation import validate_password
from django.db import transaction

from annotation.access.audit import audit_actor
from annotation.access.roles import ADMIN, role_check
from annotation.errors import ServiceError

# User names are pseudonymous ids: ASCII letters, digits and . _ -, starting with a letter or a
# digit, at most 64 characters (the exchange format's rater ids, datasets.importer, fit it).
# No spaces, no @ (nothing that reads like an e-mail address or a real name), nothing a shell,
# a file name or a CSV cell would treat specially.
USERNAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
USERNAME_RULE = (
    "1 to 64 characters: letters A-Z a-z, digits, '.', '_' or '-', starting with a letter or "
    "a digit (a pseudonymous id, not a name or an e-mail address)"
)


def username_problem(username: str) -> str | None:
    """Why ``username`` is no valid user name (None if it is)."""
    if USERNAME_PATTERN.fullmatch(username):
        return None
    return f"the user name {username[:70]!r} is not allowed: use {USERNAME_RULE}"


def user_create(
    *,
    username: str,
    role: str,
    password: str | None,
    validate: bool = True,
    by: User | None = None,
) -> User:
    """Create a user in one role. password=None makes an account without a usable password
    (raters imported from a dataset, who log in only once an admin sets one). `by`: as in
    `user_set_role`."""
    role_check(role)
    problem = username_problem(username)
    if problem:
        raise ServiceError(problem)
    user_model = get_user_model()
    if user_model.objects.filter(username=username).exists():
        raise ServiceError(f"a user named {username!r} already exists")
    user = user_model(username=username)
    if password is None:
        user.set_unusable_password()
    else:
        if validate:
            validate_password(password, user=user)
        user.set_password(password)
    if role == ADMIN:
        user.is_staff = True
        user.is_superuser = True
    with transaction.atomic(), _actor_for(by):
        user.save()
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


def user_set_role(*, user: User, role: str, by: User | None = None) -> None:
    """Put the user in one role. `by`: the account making the change, named in the audit log
    (without it, an actor set by the caller with `audit_actor`, if any)."""
    role_check(role)
    with transaction.atomic(), _actor_for(by):
        user.groups.set([Group.objects.get_or_create(name=role)[0]])
        user.is_staff = user.is_superuser = role == ADMIN
        user.save(update_fields=["is_staff", "is_superuser"])


def _actor_for(by: User | None) -> AbstractContextManager[object]:
    return nullcontext() if by is None else audit_actor(via="service", user=by)
