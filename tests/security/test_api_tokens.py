"""API tokens with a life (annotation/access/tokens.py): hashed at rest, expiring, one per
named device, revoked by a password change, by deactivation and by their owner, each grant
audited."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from knox.models import AuthToken

from annotation.models import ApiTokenDevice, AuditEvent
from tests.security.conftest import PASSWORD, World

NEW_PASSWORD = "a-brand-new-passphrase-42"


def _obtain(username: str, name: str | None = None, **client_kwargs: str) -> dict:
    body = {"username": username, "password": PASSWORD, **({"name": name} if name else {})}
    answer = Client(**client_kwargs).post(reverse("api-token"), body)
    assert answer.status_code == 200, answer.content
    return answer.json()


def _api(token: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Token {token}")


def _works(token: str) -> int:
    return _api(token).get(reverse("api-grading-progress")).status_code


def test_a_token_is_stored_only_as_its_hash_and_expires_after_the_configured_hours(
    world: World, settings
) -> None:
    settings.TOKEN_TTL_HOURS = 3
    grant = _obtain("sec-expert", name="laptop")
    assert set(grant) == {"id", "name", "created", "expiry", "last_used_at", "token"}
    assert _works(grant["token"]) == 200
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM knox_authtoken")
        assert grant["token"] not in repr(cursor.fetchall())
    token = AuthToken.objects.get(device__pk=grant["id"])
    left = token.expiry - timezone.now()
    assert timedelta(hours=2, minutes=59) < left <= timedelta(hours=3)


def test_an_expired_token_answers_401(world: World) -> None:
    grant = _obtain("sec-expert", name="laptop")
    AuthToken.objects.filter(device__pk=grant["id"]).update(
        expiry=timezone.now() - timedelta(seconds=1)
    )
    answer = _api(grant["token"]).get(reverse("api-grading-progress"))
    assert answer.status_code == 401 and answer["WWW-Authenticate"] == "Token"
    assert not ApiTokenDevice.objects.filter(pk=grant["id"]).exists()  # and is gone


def test_an_expired_token_is_not_listed_and_is_purged(world: World) -> None:
    old, live = _obtain("sec-expert", name="old"), _obtain("sec-expert", name="live")
    AuthToken.objects.filter(device__pk=old["id"]).update(expiry=timezone.now())
    listed = _api(live["token"]).get(reverse("api-tokens")).json()
    assert [t["name"] for t in listed] == ["live"]
    assert not ApiTokenDevice.objects.filter(pk=old["id"]).exists()


def test_a_password_change_revokes_the_tokens_and_logs_out_other_sessions(world: World) -> None:
    token = _obtain("sec-expert", name="script")["token"]
    elsewhere = Client()
    assert elsewhere.login(username="sec-expert", password=PASSWORD)
    here = Client()
    assert here.login(username="sec-expert", password=PASSWORD)
    page = here.get(reverse("password-change"))
    assert page.status_code == 200 and b'name="new_password1"' in page.content
    answer = here.post(
        reverse("password-change"),
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert answer.status_code == 302
    assert _works(token) == 401
    assert here.get(reverse("account-tokens")).status_code == 200  # this session stays
    gone = elsewhere.get(reverse("account-tokens"))
    assert gone.status_code == 302 and gone["Location"].startswith(reverse("login"))
    actions = list(AuditEvent.objects.filter(username="sec-expert").values_list("action", "detail"))
    assert ("password_change", {}) in actions
    assert any(a == "token_revoke" and d["reason"] == "password_change" for a, d in actions)


def test_a_wrong_old_password_changes_nothing_and_counts_as_a_failed_login(world: World) -> None:
    token = _obtain("sec-expert", name="script")["token"]
    here = Client()
    here.force_login(world.users["expert"])
    answer = here.post(
        reverse("password-change"),
        {"old_password": "not-it-at-all", "new_password1": NEW_PASSWORD,
         "new_password2": NEW_PASSWORD},
    )  # fmt: skip
    assert answer.status_code == 200 and b"Your old password was entered incorrectly" in (
        answer.content
    )
    assert _works(token) == 200
    assert AuditEvent.objects.filter(username="sec-expert", action="login_failed").exists()


def test_deactivating_an_account_revokes_its_tokens(world: World) -> None:
    token = _obtain("sec-expert", name="script")["token"]
    expert = world.users["expert"]
    expert.is_active = False
    expert.save()
    assert not AuthToken.objects.filter(user=expert).exists()
    assert _works(token) == 401


def test_the_owner_lists_makes_and_revokes_tokens_through_the_api(world: World) -> None:
    browser = Client()
    browser.force_login(world.users["expert"])
    made = browser.post(reverse("api-tokens"), {"name": "lab pc"}, content_type="application/json")
    assert made.status_code == 201
    grant = made.json()
    assert _works(grant["token"]) == 200
    listed = _api(grant["token"]).get(reverse("api-tokens")).json()
    assert [(t["id"], t["name"]) for t in listed] == [(grant["id"], "lab pc")]
    assert listed[0]["last_used_at"] is not None and "token" not in listed[0]
    second = _obtain("sec-expert", name="laptop")["token"]
    revoke = _api(second).delete(reverse("api-token-revoke", kwargs={"pk": grant["id"]}))
    assert revoke.status_code == 204
    assert _works(grant["token"]) == 401 and _works(second) == 200
    all_gone = _api(second).post(reverse("api-tokens-revoke-all"))
    assert all_gone.json() == {"revoked": 1} and _works(second) == 401
    reasons = AuditEvent.objects.filter(action="token_revoke").values_list("detail", flat=True)
    assert [d["reason"] for d in reasons] == ["owner", "owner"]


def test_a_token_cannot_make_another_token(world: World) -> None:
    token = _obtain("sec-expert", name="script")["token"]
    answer = _api(token).post(reverse("api-tokens"), {"name": "forever"}, "application/json")
    assert answer.status_code == 403 and "a token cannot make another" in answer.json()["detail"]


def test_nobody_revokes_someone_elses_token(world: World) -> None:
    victim = _obtain("sec-expert", name="script")
    other = _obtain("sec-expert2", name="script")["token"]
    answer = _api(other).delete(reverse("api-token-revoke", kwargs={"pk": victim["id"]}))
    assert answer.status_code == 404
    assert answer.json()["detail"] == f"you have no API token with id {victim['id']}"
    assert _works(victim["token"]) == 200


def test_a_new_token_under_a_name_in_use_replaces_the_old_one(world: World) -> None:
    first = _obtain("sec-expert", name="laptop")["token"]
    second = _obtain("sec-expert", name="laptop")["token"]
    assert _works(first) == 401 and _works(second) == 200
    unnamed = [_obtain("sec-expert")["token"] for _ in range(2)]  # scripts naming no device
    assert all(_works(t) == 200 for t in unnamed)


def test_a_token_name_and_the_per_account_maximum_are_checked(world: World, settings) -> None:
    settings.TOKEN_MAX_PER_USER = 2
    browser = Client()
    browser.force_login(world.users["expert"])

    def make(name: str):
        return browser.post(reverse("api-tokens"), {"name": name}, "application/json")

    assert make("   ").json() == {"name": ["This field may not be blank."]}
    assert "printable characters only" in make("\x1b[31mred").json()["detail"]
    assert make("one").status_code == 201 and make("two").status_code == 201
    full = make("three")
    assert full.status_code == 400 and "you have 2 live API tokens" in full.json()["detail"]


def test_each_grant_is_audited_as_a_token_login_with_the_client_address(
    world: World, settings
) -> None:
    settings.TRUSTED_PROXIES = ["10.0.0.2"]
    grant = _obtain(
        "sec-expert", name="laptop", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="192.0.2.61"
    )
    event = AuditEvent.objects.filter(username="sec-expert", action="login_ok").latest("id")
    assert str(event.ip) == "192.0.2.61"
    assert event.detail == {"via": "token", "name": "laptop", "granted_for": "password"}
    assert event.object_id == str(grant["id"])


def test_the_tokens_page_makes_shows_once_and_revokes_with_csrf(world: World) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(world.users["trainee"])
    page = browser.get(reverse("account-tokens"))
    assert page.status_code == 200 and b"No live tokens." in page.content
    csrf = page.cookies["csrftoken"].value
    assert (
        browser.post(reverse("account-tokens"), {"action": "create", "name": "x"}).status_code
        == 403
    )
    made = browser.post(
        reverse("account-tokens"),
        {"action": "create", "name": "tablet", "csrfmiddlewaretoken": csrf},
    )
    device = ApiTokenDevice.objects.get(token__user=world.users["trainee"])
    shown = made.content.decode()
    assert made.status_code == 200 and 'id="new-token"' in shown and "tablet" in shown
    token = shown.split('id="new-token"')[1].split("<code>")[1].split("</code>")[0]
    assert _works(token) in (200, 403)  # authenticated (a trainee has no grading progress)
    assert browser.get(reverse("account-tokens")).content.decode().count(token) == 0
    revoked = browser.post(
        reverse("account-tokens"),
        {"action": "revoke", "id": device.pk, "csrfmiddlewaretoken": csrf},
    )
    assert revoked.status_code == 302
    assert _api(token).get(reverse("api-tokens")).status_code == 401


@pytest.mark.parametrize("header", ["Token", "token"])
def test_existing_clients_keep_the_token_keyword(world: World, header: str) -> None:
    token = _obtain("sec-expert")["token"]
    answer = Client(HTTP_AUTHORIZATION=f"{header} {token}").get(reverse("api-tokens"))
    assert answer.status_code == 200


def test_a_logged_in_browser_gets_a_token_while_its_address_waits_for_password_guesses(
    world: World, settings
) -> None:
    for _ in range(settings.LOGIN_MAX_FAILURES):
        Client().post(reverse("api-token"), {"username": "sec-expert", "password": "wrong-guess"})
    waits = Client().post(reverse("api-token"), {"username": "sec-expert", "password": PASSWORD})
    assert waits.status_code == 429
    browser = Client()
    browser.force_login(world.users["expert"])
    made = browser.post(reverse("api-tokens"), {"name": "lab pc"}, "application/json")
    assert made.status_code == 201 and _works(made.json()["token"]) == 200
