"""Failed-login throttling that slows guessing down without locking the right user out.

Three counters of consecutive failures, in LoginThrottle rows shared by every web worker:
  pair:<address>|<name>  one address against one account: beyond MERSV_LOGIN_MAX_FAILURES;
  user:<name>            the account from anywhere: beyond MERSV_LOGIN_MAX_FAILURES_PER_ACCOUNT;
  ip:<address>           one address against any account (password spraying): beyond
                         MERSV_LOGIN_MAX_FAILURES_PER_IP.
Beyond its limit a counter makes the next attempt wait a delay (MERSV_LOGIN_DELAY_S, doubled
per further failure, at most MERSV_LOGIN_DELAY_MAX_S); an attempt made too early is refused
without a password check, and is not counted. A counter starts over once it has been quiet for
its delay plus MERSV_LOGIN_WINDOW_S. The account and address counters do not apply where the
account logged in before (a KnownLoginAddress of the last MERSV_LOGIN_KNOWN_ADDRESS_DAYS) or
to a request that already holds a session of that account: so guesses from elsewhere, or from
other clients behind the same address, never slow the real user down at a place they use. The
address is the real client's (`annotation.access.client_address`): behind a trusted proxy
each client has its own counters.

Before a password is checked, `login_attempt_reserve` checks every counter's delay and counts
the attempt as a failure of the (account, address) counter under row locks (select_for_update
on the keys, taken in sorted order so two requests never deadlock); a successful login gives
the slot back. So however many requests race, at most MERSV_LOGIN_MAX_FAILURES passwords are
checked for one (account, address) before the delay. The account and address counters count a
failure only once the password proved wrong (`login_attempt_failed`): counted in advance, the
right logins in flight at once from one address (a lab of 40 behind one NAT, logging in at the
start of a session) would fill the address counter and make the last of them wait. A burst of
guesses against many accounts may therefore pass the address limit by the requests in flight
at that moment (the web server's threads), no more.
`login_unlock` (the `login_unlock` command) clears an account's counters, audited.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import F, ManyToManyField, Q
from django.db.models.expressions import RawSQL
from django.http import HttpRequest
from django.utils import timezone

from annotation.access.audit import audit_record
from annotation.access.client_address import client_ip
from annotation.access.roles import ROLE_PRECEDENCE, user_role_remember
from annotation.models import KnownLoginAddress, LoginThrottle


@dataclass(frozen=True)
class Reservation:
    keys: tuple[str, ...]  # counted in advance: the (account, address) counter
    locked_for_s: int  # 0: the attempt may go ahead
    counted_if_wrong: tuple[str, ...] = ()  # the account and address counters


def _limit(key: str) -> int:
    kind = key.split(":", 1)[0]
    return {
        "pair": settings.LOGIN_MAX_FAILURES,
        "user": settings.LOGIN_MAX_FAILURES_PER_ACCOUNT,
        "ip": settings.LOGIN_MAX_FAILURES_PER_IP,
    }[kind]


def _name(username: str) -> str:
    return username.strip().lower()[:140]


def _keys(username: str, ip: str | None) -> list[str]:
    name = _name(username)
    keys = [f"pair:{ip or '-'}|{name}", f"user:{name}"]
    if ip:
        keys.append(f"ip:{ip}")
    return sorted(keys)  # one lock order for everybody


def login_delay_s(failures: int, limit: int) -> float:
    """How long after the last failure the next attempt must wait (0 below the limit)."""
    if failures < limit:
        return 0.0
    exponent = min(failures - limit, 32)  # 2**32 x the base is past any maximum
    return float(min(settings.LOGIN_DELAY_MAX_S, settings.LOGIN_DELAY_S * 2**exponent))


def _quiet(row: LoginThrottle, now: datetime) -> bool:
    """The counter has been quiet long enough to start over."""
    delay = login_delay_s(row.failures, _limit(row.key))
    return now - row.last_failure_at >= timedelta(seconds=delay + settings.LOGIN_WINDOW_S)


def address_known(*, username: str, ip: str | None) -> bool:
    """The account logged in with its password from this address lately."""
    if not ip:
        return False
    since = timezone.now() - timedelta(days=settings.LOGIN_KNOWN_ADDRESS_DAYS)
    return KnownLoginAddress.objects.filter(
        user__username=username, address=ip, last_login_at__gte=since
    ).exists()


def _session_of(request: HttpRequest | None, username: str) -> bool:
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and user.get_username() == username)


def login_attempt_reserve(*, username: str, ip: str | None, known: bool = False) -> Reservation:
    """Check every counter and count the attempt against the (account, address) one, or refuse
    it while a counter makes it wait. `known`:
    the client is known to the account (its address, or its session), so only the
    (account, address) counter can make it wait.

    Takes the LoginThrottle row locks of the keys (in sorted order) for one short transaction.
    """
    now = timezone.now()
    keys = _keys(username, ip)
    login_throttle_prune(now=now, keep=keys)
    with transaction.atomic():
        # Insert missing rows first (ON CONFLICT DO NOTHING), so there is a row to lock.
        LoginThrottle.objects.bulk_create(
            [LoginThrottle(key=k, last_failure_at=now) for k in keys], ignore_conflicts=True
        )
        rows = list(LoginThrottle.objects.select_for_update().filter(key__in=keys).order_by("key"))
        wait = 0.0
        started_over = set()
        for row in rows:
            if _quiet(row, now) and row.failures:
                row.failures = 0
                started_over.add(row.key)
            if known and not row.key.startswith("pair:"):
                continue
            delay = login_delay_s(row.failures, _limit(row.key))
            if delay > 0:  # (a row another request made a moment later is no reason to wait)
                allowed_at = row.last_failure_at + timedelta(seconds=delay)
                wait = max(wait, (allowed_at - now).total_seconds())
        if wait > 0:
            return Reservation(keys=(), locked_for_s=max(1, math.ceil(wait)))
        for row in rows:
            if row.key.startswith("pair:"):
                row.failures += 1
                row.last_failure_at = now
                row.save(update_fields=["last_failure_at", "failures"])
            elif row.key in started_over:
                row.save(update_fields=["failures"])
    pair = tuple(k for k in keys if k.startswith("pair:"))
    others = tuple(k for k in keys if not k.startswith("pair:"))
    return Reservation(keys=pair, locked_for_s=0, counted_if_wrong=others)


def login_throttle_prune(*, now: datetime, keep: list[str] | tuple[str, ...] = ()) -> int:
    """Delete the counters quiet for longer than any delay plus the window: they would start
    over at their next attempt anyway, so forgetting them changes nothing, and without this
    every address and name ever tried would keep a row. The keys in `keep` (the attempt's own)
    stay. The number deleted."""
    horizon = now - timedelta(seconds=settings.LOGIN_DELAY_MAX_S + settings.LOGIN_WINDOW_S)
    deleted, _ = (
        LoginThrottle.objects.filter(last_failure_at__lt=horizon).exclude(key__in=keep).delete()
    )
    return deleted


def login_attempt_failed(*, reservation: Reservation) -> None:
    """A wrong password: count it against the account and the address as well (the
    (account, address) counter counted it when the attempt was reserved)."""
    if reservation.counted_if_wrong:
        LoginThrottle.objects.filter(key__in=reservation.counted_if_wrong).update(
            failures=F("failures") + 1, last_failure_at=timezone.now()
        )


def login_attempt_succeeded(*, reservation: Reservation, user: User, ip: str | None) -> None:
    """A right password: forget this address's failures against the account and remember the
    address as known."""
    LoginThrottle.objects.filter(key__in=reservation.keys).update(failures=0)
    if ip:
        KnownLoginAddress.objects.bulk_create(
            [KnownLoginAddress(user=user, address=ip, last_login_at=timezone.now())],
            update_conflicts=True,
            unique_fields=["user", "address"],
            update_fields=["last_login_at"],
        )


def login_unlock(
    *,
    username: str,
    address: str | None = None,
    via: str,
    actor: str,
    by: User | None = None,
    request: HttpRequest | None = None,
) -> int:
    """Clear the account's failure counters (only those of one address, if given; the
    address's own counter with it), audited as `login_unlock` (`by`: the admin's account,
    `actor` their name, or the system account that ran the command). The number of counters
    cleared."""
    name = _name(username)
    rows = Q(key=f"user:{name}")
    if address:
        rows |= Q(key=f"pair:{address}|{name}") | Q(key=f"ip:{address}")
    else:
        rows |= Q(key__startswith="pair:", key__endswith=f"|{name}")
    with transaction.atomic():
        cleared = LoginThrottle.objects.filter(rows, failures__gt=0).update(failures=0)
        audit_record(
            action="login_unlock",
            user=by,
            request=request,
            object_type="auth.user",
            detail={
                "via": via,
                "by": actor,
                "of": username,
                "address": address or "all",
                "cleared": cleared,
            },
        )
    return cleared


def locked_message(seconds: int) -> str:
    if seconds < 60:
        return f"Too many failed login attempts; try again in {seconds} seconds."
    minutes = max(1, math.ceil(seconds / 60))
    unit = "minute" if minutes == 1 else "minutes"
    return f"Too many failed login attempts; try again in {minutes} {unit}."


class ThrottledModelBackend(ModelBackend):
    """ModelBackend behind the throttle. An attempt made too early raises PermissionDenied, which
    makes django.contrib.auth.authenticate stop and report a failed login; the lock time is
    left on the request (`mersv_login_locked_s`) for the login page and the token API."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> User | None:
        if username is None:
            username = str(kwargs.get("username", ""))
        if not username or password is None:
            return None
        ip = client_ip(request)
        known = _session_of(request, username) or address_known(username=username, ip=ip)
        reservation = login_attempt_reserve(username=username, ip=ip, known=known)
        if reservation.locked_for_s:
            if request is not None:
                # Read back by the login page and the token API; HttpRequest does not declare it.
                request.mersv_login_locked_s = reservation.locked_for_s  # type: ignore[attr-defined]
            raise PermissionDenied(locked_message(reservation.locked_for_s))
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is not None:
            login_attempt_succeeded(reservation=reservation, user=user, ip=ip)
        else:
            login_attempt_failed(reservation=reservation)
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
