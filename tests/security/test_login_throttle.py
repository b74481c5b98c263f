"""Failed logins are throttled in the database, per username and per client address."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.contrib.auth.base_user import AbstractBaseUser
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


def _login(username: str, password: str, ip: str = "10.0.0.1") -> Client:
    client = Client(REMOTE_ADDR=ip)
    client.response = client.post(  # type: ignore[attr-defined]
        reverse("login"), {"username": username, "password": password}
    )
    return client


def test_the_sixth_wrong_password_is_not_even_checked(make_user, password_checks, settings) -> None:
    make_user("expert", username="victim")
    for _ in range(settings.LOGIN_MAX_FAILURES):
        assert _login("victim", WRONG).response.status_code == 200  # type: ignore[attr-defined]
    assert password_checks.n == settings.LOGIN_MAX_FAILURES
    locked = _login("victim", PASSWORD).response  # type: ignore[attr-defined]
    assert password_checks.n == settings.LOGIN_MAX_FAILURES  # the right password: unchecked
    assert locked.status_code == 200 and "_auth_user_id" not in locked.wsgi_request.session
    assert "Too many failed login attempts; try again in 15 minutes." in locked.content.decode()


def test_a_locked_account_opens_again_after_the_window(make_user, settings) -> None:
    make_user("expert", username="victim")
    for _ in range(settings.LOGIN_MAX_FAILURES):
        _login("victim", WRONG)
    LoginThrottle.objects.update(window_start=timezone.now() - timedelta(minutes=16))
    assert _login("victim", PASSWORD).response.status_code == 302  # type: ignore[attr-defined]


def test_a_right_password_before_the_limit_clears_the_count(make_user, settings) -> None:
    make_user("expert", username="victim")
    for _ in range(settings.LOGIN_MAX_FAILURES - 1):
        _login("victim", WRONG)
    assert _login("victim", PASSWORD).response.status_code == 302  # type: ignore[attr-defined]
    assert LoginThrottle.objects.get(key="user:victim").failures == 0
    for _ in range(settings.LOGIN_MAX_FAILURES - 1):
        _login("victim", WRONG)
    assert _login("victim", PASSWORD).response.status_code == 302  # type: ignore[attr-defined]


def test_one_address_guessing_many_names_is_throttled_too(make_user, settings) -> None:
    make_user("expert", username="victim")
    for i in range(settings.LOGIN_MAX_FAILURES_PER_IP):
        _login(f"guess{i}", WRONG, ip="10.9.9.9")
    response = _login("victim", PASSWORD, ip="10.9.9.9").response  # type: ignore[attr-defined]
    assert response.status_code == 200 and "try again in" in response.content.decode()
    # Another address is not locked out by it.
    assert _login("victim", PASSWORD, ip="10.1.1.1").response.status_code == 302  # type: ignore[attr-defined]


def test_the_token_api_answers_429_while_locked(make_user, settings) -> None:
    make_user("expert", username="victim")
    url = reverse("api-token")
    for _ in range(settings.LOGIN_MAX_FAILURES):
        assert Client().post(url, {"username": "victim", "password": WRONG}).status_code == 400
    response = Client().post(url, {"username": "victim", "password": PASSWORD})
    assert response.status_code == 429
    assert "try again in 15 minutes" in response.json()["detail"]
    assert int(response["Retry-After"]) > 14 * 60


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
    checks_before = password_checks.n
    assert _login("victim", PASSWORD, ip="10.0.0.8").response.status_code == 200  # type: ignore[attr-defined]
    assert password_checks.n == checks_before
