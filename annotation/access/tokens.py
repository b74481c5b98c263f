"""API tokens with a life: django-rest-knox's tokens, each with a name and a last use.

knox stores a token as its SHA-512 hash (the token itself is shown once, when it is made) with
an expiry (MERSV_TOKEN_TTL_HOURS); `ApiTokenDevice` adds the name of the device or script it is
for and when it was last used. A new token under a name the owner already uses replaces the
old one (one per device). Every grant is audited as `login_ok` with `via: token` and the real
client's address; every revocation as `token_revoke` with its reason.

Tokens end: at their expiry (knox deletes them when next presented), when their owner revokes
them (one or all: the page /account/tokens/ and the API), when the owner's password changes,
and when the account is deactivated (the receivers below, on the user row's save). A new token
is granted for a username and password (the throttled `POST /api/token/`) or to a logged-in
browser session; never to a token, so a stolen token cannot renew itself past its expiry.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q, QuerySet
from django.db.models.signals import post_save, pre_save
from django.http import HttpRequest
from django.utils import timezone
from drf_spectacular.authentication import SessionScheme
from drf_spectacular.contrib.knox_auth_token import KnoxTokenScheme
from knox.auth import TokenAuthentication
from knox.models import AuthToken
from rest_framework.authentication import SessionAuthentication, get_authorization_header

from annotation.access.audit import audit_record
from annotation.errors import ServiceError
from annotation.models import ApiTokenDevice

NAME_MAX = 64
# The last use is written at most this often per token: not one UPDATE per API request.
LAST_USED_EVERY = timedelta(seconds=60)


class TokenNotFoundError(ServiceError):
    """A token id that is not one of the account's live tokens: 404."""

    http_status = 404


def _live(user: User) -> QuerySet[AuthToken]:
    now = timezone.now()
    return AuthToken.objects.filter(user=user).filter(Q(expiry__isnull=True) | Q(expiry__gt=now))


def _expired_purge(user: User) -> None:
    AuthToken.objects.filter(user=user, expiry__lte=timezone.now()).delete()


def token_name_check(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned:
        raise ServiceError("give the token a name: the device or script it is for (e.g. laptop)")
    if len(cleaned) > NAME_MAX:
        raise ServiceError(f"a token's name has at most {NAME_MAX} characters")
    if not cleaned.isprintable():
        raise ServiceError("a token's name may hold printable characters only")
    return cleaned


def token_create(
    *, user: User, name: str, request: HttpRequest | None, granted_for: str, replace: bool = True
) -> tuple[ApiTokenDevice, str]:
    """A new token for the user under `name` (replacing a live one of that name, unless
    `replace` is false: a script that named no device); returns the device row and the token,
    which is stored nowhere in clear. `granted_for`: "password" or "session", for the audit
    event.

    Locks the user's row, so that two grants at once cannot pass the per-user maximum."""
    name = token_name_check(name)
    with transaction.atomic():
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        _expired_purge(user)
        if replace:
            replaced = list(_live(user).filter(device__name=name))
            _revoke(user=user, tokens=replaced, request=request, reason="replaced")
        n_live = _live(user).count()
        if n_live >= settings.TOKEN_MAX_PER_USER:
            raise ServiceError(
                f"you have {n_live} live API tokens, the most an account may hold; revoke one "
                "you no longer use (your account's API tokens page, or DELETE /api/tokens/ID/)"
            )
        token, raw = AuthToken.objects.create(
            user=user, expiry=timedelta(hours=settings.TOKEN_TTL_HOURS)
        )
        device = ApiTokenDevice.objects.create(token=token, name=name)
        audit_record(
            action="login_ok",
            user=user,
            request=request,
            obj=device,
            detail={"via": "token", "name": name, "granted_for": granted_for},
        )
    return device, raw


def token_list(*, user: User) -> list[ApiTokenDevice]:
    """The user's live named tokens, newest first."""
    _expired_purge(user)
    now = timezone.now()
    devices = ApiTokenDevice.objects.select_related("token").filter(token__user=user)
    devices = devices.filter(Q(token__expiry__isnull=True) | Q(token__expiry__gt=now))
    return list(devices.order_by("-token__created", "-pk"))


def _revoke(
    *, user: User, tokens: list[AuthToken], request: HttpRequest | None, reason: str
) -> int:
    if not tokens:
        return 0
    names = sorted(ApiTokenDevice.objects.filter(token__in=tokens).values_list("name", flat=True))
    AuthToken.objects.filter(digest__in=[t.digest for t in tokens]).delete()
    audit_record(
        action="token_revoke",
        user=user,
        request=request,
        object_type="knox.authtoken",
        detail={"reason": reason, "count": len(tokens), "names": names[:20]},
    )
    return len(tokens)


def token_revoke(*, user: User, token_id: int, request: HttpRequest | None) -> None:
    """The owner revokes one of their tokens (someone else's is "not found")."""
    with transaction.atomic():
        device = (
            ApiTokenDevice.objects.select_related("token")
            .filter(pk=token_id, token__user=user)
            .first()
        )
        if device is None:
            raise TokenNotFoundError(f"you have no API token with id {token_id}")
        _revoke(user=user, tokens=[device.token], request=request, reason="owner")


def tokens_revoke_all(*, user: User, request: HttpRequest | None, reason: str) -> int:
    """Every token of the user, named or not; how many were revoked."""
    with transaction.atomic():
        return _revoke(
            user=user, tokens=list(AuthToken.objects.filter(user=user)), request=request,
            reason=reason,
        )  # fmt: skip


class ApiTokenAuthentication(TokenAuthentication):  # type: ignore[misc]  # knox has no types
    """knox's token authentication (`Authorization: Token <token>`; expired tokens are
    refused and deleted, an inactive owner refused), plus the token's last use."""

    def authenticate(self, request: Any) -> tuple[User, AuthToken] | None:
        result = super().authenticate(request)
        if result is not None:
            now = timezone.now()
            recent = Q(last_used_at__isnull=False, last_used_at__gt=now - LAST_USED_EVERY)
            ApiTokenDevice.objects.filter(token=result[1]).exclude(recent).update(last_used_at=now)
        return result

    def _cleanup_token(self, auth_token: AuthToken) -> bool:
        """Only the token presented: knox also scans every other token of its owner on each
        request (a query per API call); those expired are purged when the owner lists or
        makes tokens (`_expired_purge`)."""
        if auth_token.expiry is not None and auth_token.expiry < timezone.now():
            auth_token.delete()
            return True
        return False


class SessionAuthenticationTokenChallenge(SessionAuthentication):
    """DRF's session authentication (first, so that pages' fetches need no header). DRF
    answers a failed authentication with the first class's challenge, and without one turns
    the 401 into a 403: so a request that sent a token (wrong, expired or revoked) is told
    401 with `WWW-Authenticate: Token`, while a request without one keeps its 403."""

    def authenticate_header(self, request: Any) -> str | None:
        sent = get_authorization_header(request).split()
        keyword = str(ApiTokenAuthentication().authenticate_header(request))
        if sent and sent[0].lower() == keyword.lower().encode():
            return keyword
        return None


class ApiTokenScheme(KnoxTokenScheme):  # type: ignore[no-untyped-call]  # spectacular's registry
    """The OpenAPI schema's security schemes for the two classes above (drf-spectacular
    finds an extension by the class's dotted name)."""

    target_class = "annotation.access.tokens.ApiTokenAuthentication"
    name = "apiToken"


class SessionTokenChallengeScheme(SessionScheme):  # type: ignore[no-untyped-call]
    target_class = "annotation.access.tokens.SessionAuthenticationTokenChallenge"


def _before_user_save(sender: Any, instance: Any, update_fields: Any = None, **kw: Any) -> None:
    """Notes whether this save changes the password or deactivates the account."""
    instance._mersv_tokens_end_reason = None
    if instance._state.adding or instance.pk is None:
        return
    if update_fields is not None and not {"password", "is_active"} & set(update_fields):
        return  # a login's last_login update: no query
    old = sender._default_manager.filter(pk=instance.pk).values("password", "is_active").first()
    if old is None:
        return
    # Django sets _password to None for a hash upgrade at login: that is no password change.
    rehash = getattr(instance, "_password", None) is None and instance.has_usable_password()
    if old["password"] != instance.password and not rehash:
        instance._mersv_tokens_end_reason = "password_change"
    elif old["is_active"] and not instance.is_active:
        instance._mersv_tokens_end_reason = "deactivation"


def _after_user_save(sender: Any, instance: Any, **kwargs: Any) -> None:
    reason = instance.__dict__.pop("_mersv_tokens_end_reason", None)
    if reason:
        tokens_revoke_all(user=instance, request=None, reason=reason)


def receivers_connect() -> None:
    user_model = get_user_model()
    pre_save.connect(_before_user_save, sender=user_model, dispatch_uid="tokens_before_save")
    post_save.connect(_after_user_save, sender=user_model, dispatch_uid="tokens_after_save")
