"""The audit log: `audit_record` writes one append-only AuditEvent; receivers record logins,
logouts, failed logins and group changes; the API's exception handler (`annotation.api_errors`)
and the 403 page record permission denials. The address recorded is the real client's
(`annotation.access.client_address`: the proxy's header, read only from a trusted proxy).

A group change's signal does not say who made it, so whoever changes roles (the Django admin,
`user_create`/`user_set_role` with `by=`, the `add_user` command) does it inside
`audit_actor(...)`: the event's user is then the actor, and its object the account changed.

A detail never holds a password or a token: only the keys a caller passes, and the failed-login
receiver keeps the username alone from the credentials Django hands it.
"""

from __future__ import annotations

import getpass
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import m2m_changed
from django.http import HttpRequest

from annotation.access.access_log import denial_log
from annotation.access.client_address import client_ip
from annotation.models import AuditEvent

log = logging.getLogger(__name__)

ACTIONS = (
    "login_ok", "login_failed", "login_locked", "logout", "grade_submit", "grade_change",
    "cannot_judge", "permission_denied", "upload", "export_download", "dataset_build",
    "role_change", "training_start", "answer_refused", "grade_change_after_panel",
    "reference_clip_add", "reference_clip_remove", "export_verify_failed",
    "ingest_start",
    # An abandoned upload straight to the bucket (annotation/ingest/upload_prune.py).
    "upload_expired",
    # Retirement (modeling/retirement_prior.py, annotation/aggregation/retirement_service.py).
    "retirement_run_choose", "retirement_rule_change",
    # Accounts (annotation/access/tokens.py, login_throttle.py, frontend/account_views.py).
    "token_revoke", "password_change", "login_unlock",
)  # fmt: skip


def audit_record(
    *,
    action: str,
    user: Any = None,
    username: str | None = None,
    obj: Any = None,
    object_type: str = "",
    object_id: object = "",
    request: HttpRequest | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event. Call it inside the transaction of the change it records, so the
    event and the change commit (or roll back) together."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    if user is not None and not getattr(user, "is_authenticated", False):
        user = None
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or obj.pk
    return AuditEvent.objects.create(
        user=user,
        username=(username if username is not None else user.get_username() if user else "")[:150],
        action=action,
        object_type=object_type[:64],
        object_id=str(object_id)[:128],
        ip=client_ip(request),
        detail=detail or {},
    )


@dataclass(frozen=True)
class Actor:
    """Who is changing roles: an account (`user`, with its request if any) or, for a command
    run from a shell, nobody in the application: `os_user` names the system account."""

    via: str  # "admin", "add_user", "service", ...
    user: Any = None
    request: HttpRequest | None = None
    os_user: str = ""


_actor: ContextVar[Actor | None] = ContextVar("audit_actor", default=None)


def os_user_name() -> str:
    """The system account running this process (a container may have no passwd entry)."""
    try:
        return getpass.getuser()
    except Exception:  # getuser raises OSError or KeyError, by platform
        import os

        return f"uid {os.getuid()}"


@contextmanager
def audit_actor(
    *, via: str, user: Any = None, request: HttpRequest | None = None, os_user: str = ""
) -> Iterator[Actor]:
    """Role changes made inside this block are recorded as made by this actor."""
    actor = Actor(via=via, user=user, request=request, os_user=os_user)
    token = _actor.set(actor)
    try:
        yield actor
    finally:
        _actor.reset(token)


def role_change_record(*, target: Any, detail: dict[str, Any]) -> AuditEvent:
    """A role_change event about `target`, made by the current actor (if one is set)."""
    actor = _actor.get()
    detail = {**detail, "of": target.get_username()}
    if actor is None:
        # Nobody declared themselves (a shell, a migration): the event names the target only.
        return audit_record(action="role_change", obj=target, username="", detail=detail)
    detail["via"] = actor.via
    if actor.os_user:
        detail["os_user"] = actor.os_user
    return audit_record(
        action="role_change", user=actor.user, obj=target, request=actor.request, detail=detail
    )


def _on_logged_in(sender: object, request: HttpRequest, user: Any, **kwargs: object) -> None:
    audit_record(action="login_ok", user=user, request=request)


def _on_logged_out(sender: object, request: HttpRequest, user: Any, **kwargs: object) -> None:
    if user is not None:
        audit_record(action="logout", user=user, request=request)


def _on_login_failed(
    sender: object, credentials: dict[str, Any], request: HttpRequest | None = None, **kw: object
) -> None:
    # Only the name: Django already masks the password, but nothing else is kept on purpose.
    name = str(credentials.get("username", ""))[:150]
    locked = getattr(request, "mersv_login_locked_s", None) is not None
    audit_record(
        action="login_locked" if locked else "login_failed",
        username=name,
        request=request,
        object_type="auth.user",
    )


def _on_groups_changed(
    sender: object, instance: Any, action: str, pk_set: set[int] | None, **kwargs: object
) -> None:
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    from django.contrib.auth.models import Group

    change = action.removeprefix("post_")
    if kwargs.get("reverse"):  # group.user_set.add(...): the instance is the group
        for user in get_user_model().objects.filter(pk__in=pk_set or ()):
            role_change_record(target=user, detail={"change": change, "groups": [instance.name]})
        return
    names = sorted(Group.objects.filter(pk__in=pk_set or ()).values_list("name", flat=True))
    role_change_record(target=instance, detail={"change": change, "groups": names})


def receivers_connect() -> None:
    user_logged_in.connect(_on_logged_in, dispatch_uid="audit_login")
    user_logged_out.connect(_on_logged_out, dispatch_uid="audit_logout")
    user_login_failed.connect(_on_login_failed, dispatch_uid="audit_login_failed")
    m2m_changed.connect(
        _on_groups_changed, sender=get_user_model().groups.through, dispatch_uid="audit_groups"
    )


def permission_denied_record(request: HttpRequest, reason: str) -> None:
    """An audit event and one log line (annotation/access/access_log.py) for a refused request."""
    denial_log(request, reason)
    try:
        audit_record(
            action="permission_denied",
            user=getattr(request, "user", None),
            request=request,
            object_type="url",
            object_id=request.path[:128],
            detail={"method": request.method, "reason": reason[:200]},
        )
    except Exception:  # the 403 answer must go out even when the log cannot be written
        log.exception("could not record a permission denial")
