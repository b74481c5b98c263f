from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from annotation.access.roles import ROLES, user_role

ROOT = Path(__file__).resolve().parent.parent


def _run_manage(
    args: list[str], env_extra: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess:
    # A clean environment: no test database, broker, or flags other fixtures set for themselves.
    dropped = ("DATABASE_URL", "CELERY_", "DJANGO_ALLOW_ASYNC_UNSAFE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.update({"MERSV_VAR_DIR": str(tmp_path / "var")})
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )


def test_embedded_default_uses_sqlite_and_the_filesystem_broker(tmp_path: Path) -> None:
    code = (
        "from django.conf import settings as s; "
        "print(s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL, s.MEDIA_ROOT)"
    )
    done = _run_manage(["shell", "-c", code], {}, tmp_path)
    assert done.returncode == 0, done.stderr
    engine, broker, media = done.stdout.strip().splitlines()[-1].split()
    assert engine == "django.db.backends.sqlite3"
    assert broker == "filesystem://"
    assert media == str(tmp_path / "var" / "media")
    # The secret key is made per installation, never hard-coded.
    assert (tmp_path / "var" / "secret_key").stat().st_size >= 50


def test_production_settings_pass_check_deploy_without_warnings(tmp_path: Path) -> None:
    env = {
        "MERSV_PRODUCTION": "1",
        "DJANGO_SECRET_KEY": "x7" * 30 + "-Qz_9!k",
        "DJANGO_ALLOWED_HOSTS": "mersv.example.org",
    }
    done = _run_manage(["check", "--deploy", "--fail-level", "WARNING"], env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_production_without_a_secret_key_is_refused(tmp_path: Path) -> None:
    done = _run_manage(["check"], {"MERSV_PRODUCTION": "1", "DJANGO_SECRET_KEY": ""}, tmp_path)
    assert done.returncode != 0
    assert "DJANGO_SECRET_KEY" in done.stderr


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_add_user_creates_a_user_in_the_role(role: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MERSV_PASSWORD", "a-long-enough-passphrase")
    call_command("add_user", f"user-{role}", role=role)
    user = get_user_model().objects.get(username=f"user-{role}")
    assert user_role(user) == role
    assert user.check_password("a-long-enough-passphrase")
    assert user.is_superuser == (role == "admin")


@pytest.mark.django_db
def test_add_user_refuses_an_unknown_role(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MERSV_PASSWORD", "a-long-enough-passphrase")
    with pytest.raises(CommandError, match="unknown role 'surgeon'"):
        call_command("add_user", "bob", role="surgeon")
    assert not get_user_model().objects.filter(username="bob").exists()


@pytest.mark.django_db
def test_add_user_refuses_a_short_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MERSV_PASSWORD", "short")
    with pytest.raises(CommandError, match="at least 12 characters"):
        call_command("add_user", "carol", role="expert")


def test_there_is_no_self_registration(client) -> None:
    for path in ("/register/", "/signup/", "/accounts/signup/", "/api/register/"):
        assert client.get(path).status_code == 404


# --- the role comes with the session's user (ThrottledModelBackend.get_user) ---------------


def _session_request(client, user):
    """A request carrying the session this client logged in with as `user`."""
    from django.test import RequestFactory

    client.force_login(user)
    request = RequestFactory().get("/")
    request.session = client.session
    return request


def _session_user(client, user):
    """The user object the authentication middleware builds for this client's session."""
    from django.contrib.auth import get_user

    return get_user(_session_request(client, user))


@pytest.mark.parametrize(
    ("groups", "expected"),
    [
        ((), None),
        (("trainee",), "trainee"),
        (("expert",), "expert"),
        (("trainee", "expert"), "expert"),
        (("expert", "curator"), "curator"),
        (("curator", "admin"), "admin"),
    ],
)
def test_the_session_user_comes_with_the_most_privileged_role_and_no_groups_query(
    groups: tuple[str, ...], expected: str | None, db, client, django_assert_num_queries
) -> None:
    from django.contrib.auth.models import Group

    from annotation.access.roles import role_groups_ensure

    role_groups_ensure()
    user = get_user_model().objects.create_user("someone", password="x-long-passphrase")
    user.groups.add(*Group.objects.filter(name__in=groups))
    from django.contrib.auth import get_user

    request = _session_request(client, user)
    with django_assert_num_queries(2):  # the session and the user with their role, nothing else
        assert user_role(get_user(request)) == expected
    # The same answer the groups give when asked directly.
    fresh = get_user_model().objects.get(pk=user.pk)
    assert user_role(fresh) == expected


def test_a_superuser_session_is_an_admin_and_a_removed_role_is_gone_on_the_next_request(
    db,
    client,
) -> None:
    from django.contrib.auth.models import Group

    from annotation.access.roles import role_groups_ensure

    role_groups_ensure()
    boss = get_user_model().objects.create_superuser("boss", password="x-long-passphrase")
    assert user_role(_session_user(client, boss)) == "admin"
    expert = get_user_model().objects.create_user("grader", password="x-long-passphrase")
    expert.groups.add(Group.objects.get(name="expert"))
    assert user_role(_session_user(client, expert)) == "expert"
    expert.groups.clear()
    assert user_role(_session_user(client, expert)) is None
    expert.is_active = False
    expert.save(update_fields=["is_active"])
    assert _session_user(client, expert).is_authenticated is False
