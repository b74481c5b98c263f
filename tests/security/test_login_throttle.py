"""Failed logins slow guessing down without locking the right user out: counters per
(account, address), per account from unknown addresses and per address, each beyond its limit
a doubling delay; the address is the real client's behind a trusted proxy."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.management import call_command
from django.db import connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotation.models import AuditEvent, LoginThrottle
from tests.security.conftest import PASSWORD

WRONG = "not-the-password-at-all"


class PasswordCheckCounter:
    """Counts password checks (thread-safe): each is one guess an attacker got evaluated."""

    def __init__(self) -> None:
        self.n = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self.n += 1


@pytest.fixture
def password_checks(monkeypatch) -> Iterator[PasswordCheckCounter]:
    counter = PasswordCheckCounter()
    original = AbstractBaseUser.check_password

    def counted(user: AbstractBaseUser, raw_password: str) -> bool:
        counter.add()
        return original(user, raw_password)

    monkeypatch.setattr(AbstractBaseUser, "check_password", counted)
    yield counter


def _login(username: str, password: str, ip: str = "10.0.0.1", **headers: str) -> Client:
    client = Client(REMOTE_ADDR=ip, **headers)
    client.response = client.post(  # type: ignore[attr-defined]
        reverse("login"), {"username": username, "password": password}
    )
    return client


def _status(username: str, password: str, ip: str = "10.0.0.1", **headers: str) -> int:
    return _login(username, password, ip, **headers).response.status_code  # type: ignore[attr-defined]


def _age_failures(seconds: float) -> None:
    """As if the last failures were `seconds` ago."""
    LoginThrottle.objects.update(last_failure_at=timezone.now() - timedelta(seconds=seconds))


def test_the_sixth_wrong_password_from_one_address_waits_unchecked(
    make_user, password_checks, settings
) -> None:
    make_user("expert", username="victim")
    for _ in range(settings.LOGIN_MAX_FAILURES):
        assert _status("victim", WRONG) == 200
    assert password_checks.n == settings.LOGIN_MAX_FAILURES
    locked = _login("victim", PASSWORD).response  # type: ignore[attr-defined]
    assert password_checks.n == settings.LOGIN_MAX_FAILURES  # too early: not even checked
    assert locked.status_code == 200 and "_auth_user_id" not in locked.wsgi_request.session
    assert "Too many failed login attempts; try again in 30 seconds." in locked.content.decode()
    # Once the delay has passed, the right password is taken: no hard lock.
    _age_failures(settings.LOGIN_DELAY_S + 1)
    assert _status("victim", PASSWORD) == 302


def test_the_delay_doubles_with_each_further_failure(make_user, settings) -> None:
    make_user("expert", username="victim")
    for _ in range(settings.LOGIN_MAX_FAILURES):
        _login("victim", WRONG)
    _age_failures(settings.LOGIN_DELAY_S + 1)
    assert _status("victim", WRONG) == 200  # checked, and wrong: the next wait is 60 s
    page = _login("victim", PASSWORD).response  # type: ignore[attr-defined]
    assert "try again in 1 minute." in page.content.decode()
    _age_failures(2 * settings.LOGIN_DELAY_S + 1)
    assert _status("victim", PASSWORD) == 302


def test_a_right_password_before_the_limit_clears_the_count(make_user, settings) -> None:
    make_user("expert", username="victim")
    for _ in range(settings.LOGIN_MAX_FAILURES - 1):
        _login("victim", WRONG)
    assert _status("victim", PASSWORD) == 302
    assert LoginThrottle.objects.get(key="pair:10.0.0.1|victim").failures == 0
    for _ in range(settings.LOGIN_MAX_FAILURES - 1):
        _login("victim", WRONG)
    assert _status("victim", PASSWORD) == 302


def test_counters_quiet_past_every_delay_are_deleted_and_recent_ones_kept(
    make_user, settings
) -> None:
    make_user("expert", username="victim")
    for ip in ("10.0.0.7", "10.0.0.8"):
        for _ in range(settings.LOGIN_MAX_FAILURES):
            _login("victim", WRONG, ip=ip)
    assert LoginThrottle.objects.filter(key__contains="10.0.0.7").count() == 2  # pair, ip
    horizon = settings.LOGIN_DELAY_MAX_S + settings.LOGIN_WINDOW_S
    LoginThrottle.objects.filter(key__contains="10.0.0.7").update(
        last_failure_at=timezone.now() - timedelta(seconds=horizon + 5)
    )
    LoginThrottle.objects.filter(key__contains="10.0.0.8").update(
        last_failure_at=timezone.now() - timedelta(seconds=10)
    )
    assert _status("someone-else", WRONG, ip="10.0.0.9") == 200
    keys = set(LoginThrottle.objects.values_list("key", flat=True))
    assert not any("10.0.0.7" in k for k in keys)  # past every delay: forgotten
    assert {"pair:10.0.0.8|victim", "ip:10.0.0.8"} <= keys  # still able to slow a guesser
    assert "pair:10.0.0.9|someone-else" in keys  # the attempt's own counter
    # The address still waits where its counter was kept.
    assert "Too many failed login attempts" in (
        _login("victim", PASSWORD, ip="10.0.0.8").response.content.decode()  # type: ignore[attr-defined]
    )


def test_guesses_against_an_account_do_not_stop_its_user_logging_in_elsewhere(
    make_user, settings
) -> None:
    make_user("expert", username="victim")
    for _ in range(2 * settings.LOGIN_MAX_FAILURES):
        _login("victim", WRONG, ip="203.0.113.66")
    assert "try again in" in _login("victim", PASSWORD, ip="203.0.113.66").response.content.decode()  # type: ignore[attr-defined]
    # The real user, from an address they never used before: the right password works.
    assert _status("victim", PASSWORD, ip="198.51.100.7") == 302
    # And over the token API too.
    answer = Client(REMOTE_ADDR="198.51.100.8").post(
        reverse("api-token"), {"username": "victim", "password": PASSWORD}
    )
    assert answer.status_code == 200 and answer.json()["token"]


def test_guesses_from_many_addresses_slow_new_places_but_not_a_known_one(
    make_user, settings
) -> None:
    make_user("expert", username="victim")
    assert _status("victim", PASSWORD, ip="198.51.100.7") == 302  # the user's usual place
    for i in range(settings.LOGIN_MAX_FAILURES_PER_ACCOUNT):
        _login("victim", WRONG, ip=f"203.0.113.{i + 1}")
    # A place the account never logged in from now waits ...
    assert "try again in" in _login("victim", PASSWORD, ip="192.0.2.99").response.content.decode()  # type: ignore[attr-defined]
    # ... but where the user logged in before, the right password works at once.
    assert _status("victim", PASSWORD, ip="198.51.100.7") == 302


def test_twenty_bad_logins_through_a_shared_proxy_do_not_lock_out_another_client(
    make_user, settings
) -> None:
    settings.TRUSTED_PROXIES = ["10.0.0.2"]
    make_user("expert", username="victim")
    for i in range(settings.LOGIN_MAX_FAILURES_PER_IP):
        # Different real clients behind the one reverse proxy, each guessing names.
        _login(f"guess{i}", WRONG, ip="10.0.0.2", HTTP_X_FORWARDED_FOR=f"192.0.2.{i + 1}")
    assert _status("victim", PASSWORD, ip="10.0.0.2", HTTP_X_FORWARDED_FOR="192.0.2.200") == 302
    assert not LoginThrottle.objects.filter(key="ip:10.0.0.2").exists()


def test_one_client_guessing_many_names_is_slowed_even_behind_the_proxy(
    make_user, settings
) -> None:
    settings.TRUSTED_PROXIES = ["10.0.0.0/24"]
    make_user("expert", username="victim")
    for i in range(settings.LOGIN_MAX_FAILURES_PER_IP):
        _login(f"guess{i}", WRONG, ip="10.0.0.2", HTTP_X_FORWARDED_FOR="192.0.2.5")
    sprayer = _login("victim", PASSWORD, ip="10.0.0.3", HTTP_X_FORWARDED_FOR="192.0.2.5")
    assert "try again in" in sprayer.response.content.decode()  # type: ignore[attr-defined]
    # Another address is not slowed by it.
    assert _status("victim", PASSWORD, ip="10.1.1.1") == 302


def test_spraying_through_an_unconfigured_proxy_spares_accounts_that_logged_in_there(
    make_user, settings
) -> None:
    # No trusted proxy configured: every client reads as the proxy's address.
    make_user("expert", username="victim")
    assert _status("victim", PASSWORD, ip="10.0.0.2") == 302
    for i in range(settings.LOGIN_MAX_FAILURES_PER_IP):
        _login(f"guess{i}", WRONG, ip="10.0.0.2")
    assert _status("victim", PASSWORD, ip="10.0.0.2") == 302


def test_the_token_api_answers_429_while_the_address_waits(make_user, settings) -> None:
    make_user("expert", username="victim")
    url = reverse("api-token")
    for _ in range(settings.LOGIN_MAX_FAILURES):
        assert Client().post(url, {"username": "victim", "password": WRONG}).status_code == 400
    response = Client().post(url, {"username": "victim", "password": PASSWORD})
    assert response.status_code == 429
    assert "try again in 30 seconds" in response.json()["detail"]
    assert 25 <= int(response["Retry-After"]) <= 30
    assert (
        Client(REMOTE_ADDR="10.3.3.3")
        .post(url, {"username": "victim", "password": PASSWORD})
        .status_code
        == 200
    )


def test_an_admin_clears_the_delays_with_a_command_and_it_is_audited(make_user, settings) -> None:
    make_user("expert", username="victim")
    for _ in range(settings.LOGIN_MAX_FAILURES):
        _login("victim", WRONG)
    assert _status("victim", PASSWORD) == 200  # waiting
    call_command("login_unlock", "victim", stdout=io.StringIO())
    assert _status("victim", PASSWORD) == 302
    event = AuditEvent.objects.get(action="login_unlock")
    assert event.detail["of"] == "victim" and event.detail["via"] == "login_unlock"
    assert event.detail["cleared"] >= 1 and event.detail["by"]


def test_an_admin_clears_the_delays_from_the_django_admin(make_user, settings) -> None:
    victim = make_user("expert", username="victim")
    for _ in range(settings.LOGIN_MAX_FAILURES):
        _login("victim", WRONG)
    admin = Client()
    admin.force_login(make_user("admin", username="the-admin"))
    answer = admin.post(
        reverse("admin:auth_user_changelist"),
        {"action": "login_unlock_action", "_selected_action": [victim.pk]},
    )
    assert answer.status_code == 302
    assert _status("victim", PASSWORD) == 302
    event = AuditEvent.objects.get(action="login_unlock")
    assert event.detail["via"] == "admin" and event.detail["of"] == "victim"
    assert event.username == "the-admin" and event.user_id is not None


def test_unlocking_with_a_malformed_address_says_what_is_wrong() -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match=r"'10\.0\.0\.x' is not an IP address"):
        call_command("login_unlock", "victim", "--address", "10.0.0.x")


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_wrong_passwords_get_at_most_five_checks(
    make_user, password_checks, settings
) -> None:
    make_user("expert", username="victim")
    n = 50
    start = threading.Barrier(n)

    def attempt(_: int) -> int:
        try:
            client = Client(REMOTE_ADDR="10.0.0.7")
            start.wait()
            return client.post(
                reverse("login"), {"username": "victim", "password": WRONG}
            ).status_code
        finally:
            connections.close_all()  # this thread's own connection

    with ThreadPoolExecutor(max_workers=n) as pool:
        codes = list(pool.map(attempt, range(n)))
    assert codes == [200] * n
    assert password_checks.n <= settings.LOGIN_MAX_FAILURES
    failed = AuditEvent.objects.filter(username="victim", action="login_failed").count()
    locked = AuditEvent.objects.filter(username="victim", action="login_locked").count()
    assert failed == password_checks.n and failed + locked == n
    print(
        f"\n50 concurrent wrong passwords: {password_checks.n} checked, {locked} refused unchecked"
    )
    # The account's user, elsewhere, is not stopped by them.
    assert _status("victim", PASSWORD, ip="10.0.0.8") == 302


@pytest.mark.django_db(transaction=True)
def test_forty_first_logins_at_once_from_one_address_all_get_in(make_user, settings) -> None:
    # A lab behind one NAT (or an untrusted proxy) at the start of a session: right passwords
    # in flight together must not fill the address counter and make the last of them wait.
    n = 40
    names = [make_user("expert", username=f"lab{i:02d}").username for i in range(n)]
    start = threading.Barrier(n)

    def attempt(name: str) -> int:
        try:
            client = Client(REMOTE_ADDR="10.0.0.9")
            start.wait()
            response = client.post(reverse("login"), {"username": name, "password": PASSWORD})
            if response.status_code != 302:
                errors.append(response.content.decode()[-3000:])
            return response.status_code
        finally:
            connections.close_all()

    errors: list[str] = []
    with ThreadPoolExecutor(max_workers=n) as pool:
        codes = list(pool.map(attempt, names))
    refused = [
        (e.username, e.action)
        for e in AuditEvent.objects.exclude(action__in=["login_ok", "role_change"]).order_by("pk")
    ]
    assert codes == [302] * n, (refused, errors[:1])
    assert not AuditEvent.objects.filter(action="login_locked").exists()
    # Wrong passwords from that address still count against it.
    for i in range(settings.LOGIN_MAX_FAILURES_PER_IP):
        _login(f"guess{i}", WRONG, ip="10.0.0.9")
    assert (
        LoginThrottle.objects.get(key="ip:10.0.0.9").failures == settings.LOGIN_MAX_FAILURES_PER_IP
    )
