"""Failed-login throttling per username and per client IP, in the database.

Before a password is checked, `login_attempt_reserve` counts the attempt as a failure under
row locks (select_for_update on both keys, taken in a fixed order so two requests never
deadlock); a successful login gives the slot back. So however many requests race, at most
MAX_FAILURES passwords of one account are checked per window: the rest are refused without a
password check. The counters live in LoginThrottle rows, shared by every web worker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import F, ManyToManyField
from django.db.models.expressions import RawSQL
from django.http import HttpRequest
from django.utils import timezone

from annotation.access.audit import client_ip
from annotation.access.roles import ROLE_PRECEDENCE, user_role_remember
from annotation.models import LoginThrottle


@dataclass(frozen=True)
class Reservation:
    keys: tuple[str, ...]
    locked_for_s: int  # 0: the attempt may go ahead


def _limits() -> dict[str, int]:
    return {"user": settings.LOGIN_MAX_FAILURES, "ip": settings.LOGIN_MAX_FAILURES_PER_IP}


def _keys(username: str, ip: str | None) -> list[str]:
    keys = [f"user:{username.strip().lower()[:150]}"]
    if ip:
        keys.append(f"ip:{ip}")
    return sorted(keys)  # one lock order for everybody


def login_attempt_reserve(*, username: str, ip: str | None) -> Reservation:
    """Count one attempt against every key, or refuse it when a key is at its limit.

    Takes the LoginThrottle row locks of the keys (in sorted order) for one short transaction.
    """
    now = timezone.now()
    window = timedelta(seconds=settings.LOGIN_WINDOW_S)
    keys = _keys(username, ip)
    limits = _limits()
    with transaction.atomic():
        # Insert missing rows first (ON CONFLICT DO NOTHING), so there is a row to lock.
        LoginThrottle.objects.bulk_create(
            [LoginThrottle(key=k, window_start=now) for k in keys], ignore_conflicts=True
        )
        rows = list(LoginThrottle.objects.select_for_update().filter(key__in=keys).order_by("key"))
        locked_for = 0.0
        for row in rows:
            if now - row.window_start >= window:
                row.window_start, row.failures = now, 0
            if row.failures >= limits[row.key.split(":", 1)[0]]:
                locked_for = max(locked_for, (row.window_start + window - now).total_seconds())
        if locked_for > 0:
            return Reservation(keys=(), locked_for_s=max(1, math.ceil(locked_for)))
        for row in rows:
            row.failures += 1
            row.save(update_fields=["window_start", "failures"])
    return Reservation(keys=tuple(keys), locked_for_s=0)


def login_attempt_succeeded(*, reservation: Reservation, username: str) -> None:
    """A right password: forget the account's failures and give the IP its slot back."""
    user_key = _keys(username, None)[0]
    LoginThrottle.objects.filter(key=user_key).update(failures=0)
    others = [k for k in reservation.keys if k != user_key]
    LoginThrottle.objects.filter(key__in=others, failures__gt=0).update(failures=F("failures") - 1)


def locked_message(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    unit = "minute" if minutes == 1 else "minutes"
    return f"Too many failed login attempts; try again in {minutes} {unit}."


class ThrottledModelBackend(ModelBackend):
    """ModelBackend behind the throttle. A refused attempt raises PermissionDenied, which
    makes django.contrib.auth.authenticate stop and report a failed login; the lock time is
    left on the request (`mersv_login_locked_s`) for the login page and the token API."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: object,
    ):
        if username is None:
            username = str(kwargs.get("username", ""))
        if not username or password is None:
            return None
        reservation = login_attempt_reserve(username=username, ip=client_ip(request))
        if reservation.locked_for_s:
            if request is not None:
                # Read back by the login page and the token API; HttpRequest does not declare it.
                request.mersv_login_locked_s = reservation.locked_for_s  # type: ignore[attr-defined]
            raise PermissionDenied(locked_message(reservation.locked_for_s))
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is not None:
            login_attempt_succeeded(reservation=reservation, username=username)
        return user

    def get_user(self, user_id: int) -> User | None:
        """The session's user, with their role read in the same statement: the permission
        checks of the request then ask nothing more (one query per request instead of two)."""
        user_model = get_user_model()
        try:
            user = user_model._default_manager.annotate(mersv_role_rank=_role_rank()).get(
                pk=user_id
            )
        except user_model.DoesNotExist:
            return None
        if not self.user_can_authenticate(user):
            return None
        rank = user.mersv_role_rank
        user_role_remember(user, {ROLE_PRECEDENCE[rank]} if rank is not None else set())
        return user


def _role_rank() -> RawSQL:
    """The position in ROLE_PRECEDENCE of the user's most privileged role group (NULL: none),
    as a subquery on the user row."""
    user_model = get_user_model()
    groups = user_model._meta.get_field("groups")
    # PermissionsMixin.groups: a many-to-many field to Group through a model of its own, both
    # model classes once the apps are loaded (not names).
    assert isinstance(groups, ManyToManyField)
    through_model, group_model = groups.remote_field.through, groups.related_model
    assert isinstance(through_model, type) and isinstance(group_model, type)
    through, group = through_model._meta, group_model._meta
    cases = " ".join("WHEN %s THEN " + str(i) for i in range(len(ROLE_PRECEDENCE)))
    # Table names from the models' metadata; the group names are parameters.
    sql = (
        f"SELECT MIN(CASE g.name {cases} END) FROM {group.db_table} g "  # noqa: S608
        f"JOIN {through.db_table} ug ON ug.group_id = g.id "
        f"WHERE ug.user_id = {user_model._meta.db_table}.id"
    )
    return RawSQL(sql, ROLE_PRECEDENCE)  # noqa: S611
