"""User names are pseudonymous ids on every path that creates or renames a user: `add_user`,
the service it calls, and the Django admin's forms (issue 16, item 9)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils.html import escape

from annotation.access.accounts import USERNAME_RULE, user_create
from annotation.errors import ServiceError

BAD_NAMES = [
    "Dr Jane Doe",  # a real name, with spaces
    "jane.doe@clinic.example",  # an e-mail address
    "名前",  # not ASCII
    "../../etc",  # path-like
    "_rf",  # starts with neither a letter nor a digit
    ".hidden",
    "x" * 65,  # too long
    "",
    "line\nbreak",
    "=cmd|' /C calc'!A0",  # a spreadsheet formula
]


@pytest.mark.parametrize("name", BAD_NAMES)
@pytest.mark.django_db
def test_add_user_refuses_a_name_that_is_not_a_pseudonymous_id(name, monkeypatch) -> None:
    monkeypatch.setenv("MERSV_PASSWORD", "a-long-enough-password-42")

    with pytest.raises(CommandError) as refused:
        call_command("add_user", name, "--role", "expert")

    assert USERNAME_RULE in str(refused.value)
    assert not get_user_model().objects.exists()


@pytest.mark.django_db
def test_the_service_behind_every_other_path_takes_ids_and_refuses_the_rest(monkeypatch) -> None:
    monkeypatch.setenv("MERSV_PASSWORD", "a-long-enough-password-42")
    good = ["expert07", "R-2024.site_a", "a", "x" * 64]

    for name in good:
        call_command("add_user", name, "--role", "curator")
    with pytest.raises(ServiceError, match="is not allowed"):
        user_create(username="jane doe", role="expert", password=None)

    assert sorted(get_user_model().objects.values_list("username", flat=True)) == sorted(good)


@pytest.mark.django_db
def test_the_admin_forms_refuse_such_a_name_on_creation_and_on_rename(make_user) -> None:
    admin = make_user("admin", "bounds-admin")
    other = make_user("expert", "bounds-expert")
    client = Client()
    client.force_login(admin)

    created = client.post(
        "/admin/auth/user/add/",
        {
            "username": "jane.doe@clinic.example",
            "password1": "a-long-enough-password-42",
            "password2": "a-long-enough-password-42",
            "usable_password": "true",
        },
    )
    page = client.get(f"/admin/auth/user/{other.pk}/change/").content.decode()
    renamed = client.post(
        f"/admin/auth/user/{other.pk}/change/",
        {
            "username": "Jane Doe",
            "is_active": "on",
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
        },
    )

    assert created.status_code == 200 and escape(USERNAME_RULE) in created.content.decode()
    assert not get_user_model().objects.filter(username="jane.doe@clinic.example").exists()
    assert "bounds-expert" in page
    assert renamed.status_code == 200 and escape(USERNAME_RULE) in renamed.content.decode()
    other.refresh_from_db()
    assert other.username == "bounds-expert"
