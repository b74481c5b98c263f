"""CSRF, security headers, open redirects, sessions, passwords, registration, mass assignment."""

from __future__ import annotations

import io
import os
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from frontend.middleware import LAST_ACTIVITY_KEY
from tests.security.conftest import MP4_BYTES, PASSWORD, ROLES, World, client_for, media_path
from tests.security.test_permission_matrix import BODIES, URL_KWARGS, matrix_rows, row_id, send

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def _unsafe_allowed_rows() -> list[tuple[dict[str, str], str]]:
    """(row, a logged-in role the row allows) for every unsafe request some role may make."""
    out = []
    for row in matrix_rows():
        if row["method"] not in UNSAFE:
            continue
        role = next((r for r in ROLES[1:] if row[r] == "ok"), None)
        if role is not None:
            out.append((row, role))
    return out


def _url(row: dict[str, str], world: World) -> str:
    kwargs = URL_KWARGS.get(row["route"], lambda w, o: {})(world, row["object"])
    return reverse(row["route"], kwargs=kwargs)


# --- CSRF ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "role"), _unsafe_allowed_rows(), ids=[row_id(r) for r, _ in _unsafe_allowed_rows()]
)
def test_an_unsafe_request_without_a_csrf_token_is_refused(
    row: dict[str, str], role: str, world: World
) -> None:
    client = client_for(role, world, enforce_csrf_checks=True)
    body = BODIES.get((row["route"], row["object"]))
    response = send(client, row["method"], _url(row, world), body(world) if body else None)
    assert response.status_code == 403, (row_id(row), role, response.status_code)
    assert b"CSRF" in response.content


def test_the_same_request_with_its_csrf_token_passes(world: World) -> None:
    client = client_for("curator", world, enforce_csrf_checks=True)
    client.get(reverse("dataset-list"))
    token = client.cookies["csrftoken"].value
    response = client.post(reverse("dataset-list"), {"csrfmiddlewaretoken": token})
    assert response.status_code == 200


def test_the_login_form_needs_its_csrf_token(world: World) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post(reverse("login"), {"username": "sec-curator", "password": PASSWORD})
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session


# --- security headers on every kind of response --------------------------------------------

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def _response_kinds(world: World) -> dict[str, tuple[str, str]]:
    """What each kind of response is, as (role, url)."""
    clip = world.objects["clip"]
    return {
        "html page": ("curator", reverse("clip-list")),
        "json api": ("curator", reverse("api-clips")),
        "csv": ("curator", reverse("api-distributions-csv")),
        "media file": ("curator", reverse("media", kwargs={"path": media_path(clip)})),
        "tar download": ("curator", reverse("dataset-download", kwargs={"name": "sec-own"})),
        "static file": ("anonymous", "/static/frontend/app.css"),
        "404 page": ("curator", "/no-such-page/"),
        "404 api": ("curator", reverse("api-clip", kwargs={"clip_id": "no-such"})),
        "403 page": ("expert", reverse("clip-list")),
        "403 api": ("expert", reverse("api-clips")),
        "login redirect": ("anonymous", reverse("clip-list")),
        "slash redirect": ("curator", reverse("clip-list").rstrip("/")),
        "login page": ("anonymous", reverse("login")),
        "admin page": ("admin", "/admin/"),
    }


@pytest.mark.parametrize(
    "kind",
    [
        "html page", "json api", "csv", "media file", "tar download", "static file", "404 page",
        "404 api", "403 page", "403 api", "login redirect", "slash redirect", "login page",
        "admin page",
    ],
)  # fmt: skip
def test_every_kind_of_response_carries_the_security_headers(kind: str, world: World) -> None:
    role, url = _response_kinds(world)[kind]
    response = client_for(role, world).get(url)
    assert response.status_code < 500, (kind, response.status_code)
    csp = response.headers.get("Content-Security-Policy", "")
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, (kind, csp)
    assert "object-src 'none'" in csp
    for header, value in HEADERS.items():
        assert response.headers.get(header) == value, (kind, header, response.headers.get(header))


def test_the_slash_redirect_and_static_files_are_what_the_header_test_thinks(world: World) -> None:
    # The two responses inner middleware answers before the view runs.
    assert client_for("curator", world).get("/clips").status_code == 301
    response = client_for("anonymous", world).get("/static/frontend/app.css")
    assert response.status_code == 200 and "text/css" in response["Content-Type"]


# --- open redirects ------------------------------------------------------------------------

EVIL_NEXT = [
    "//evil.example",
    "https://evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "https:evil.example",
    "javascript:alert(1)",
    "http://testserver@evil.example/",
]


@pytest.mark.parametrize("target", EVIL_NEXT)
def test_login_refuses_to_redirect_off_site(target: str, world: World) -> None:
    client = Client()
    page = client.get(reverse("login"), {"next": target})
    assert (
        "evil.example" not in page.content.decode() and "javascript:" not in page.content.decode()
    )
    response = client.post(
        reverse("login"), {"username": "sec-curator", "password": PASSWORD, "next": target}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("home"), response["Location"]


@pytest.mark.parametrize("target", EVIL_NEXT)
def test_logout_refuses_to_redirect_off_site(target: str, world: World) -> None:
    client = client_for("curator", world)
    response = client.post(reverse("logout") + "?next=" + target, {"next": target})
    assert response.status_code == 302
    assert response["Location"] == reverse("login"), response["Location"]


def test_a_same_site_next_is_still_followed(world: World) -> None:
    response = Client().post(
        reverse("login"), {"username": "sec-curator", "password": PASSWORD, "next": "/videos/"}
    )
    assert response["Location"] == "/videos/"


# --- sessions ------------------------------------------------------------------------------


def _login(client: Client, username: str = "sec-curator") -> None:
    response = client.post(reverse("login"), {"username": username, "password": PASSWORD})
    assert response.status_code == 302, response.content[:300]


def test_login_rotates_the_session_key(world: World) -> None:
    client = Client()
    session = client.session  # an anonymous session exists before the login
    session["theme"] = "dark"
    session.save()
    before = client.cookies[settings.SESSION_COOKIE_NAME].value
    _login(client)
    after = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert after != before
    assert not Session.objects.filter(session_key=before).exists()


def test_logout_ends_the_session_for_the_old_cookie_too(world: World) -> None:
    client = Client()
    _login(client)
    old_key = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert client.get(reverse("clip-list")).status_code == 200
    client.post(reverse("logout"))
    replay = Client()
    replay.cookies[settings.SESSION_COOKIE_NAME] = old_key
    response = replay.get(reverse("clip-list"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_a_session_expires_after_its_absolute_age(world: World) -> None:
    assert settings.SESSION_COOKIE_AGE <= 24 * 3600
    client = Client()
    _login(client)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    assert int(cookie["max-age"]) == settings.SESSION_COOKIE_AGE
    Session.objects.filter(session_key=cookie.value).update(
        expire_date=timezone.now() - timedelta(seconds=1)
    )
    response = client.get(reverse("clip-list"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def _age_last_activity(client: Client, seconds: float) -> None:
    session = client.session
    session[LAST_ACTIVITY_KEY] = timezone.now().timestamp() - seconds
    session.save()


def test_an_idle_session_ends_after_the_idle_limit(world: World) -> None:
    assert int(os.environ.get("MERSV_SESSION_IDLE_S", 1800)) == settings.SESSION_IDLE_S
    client = Client()
    _login(client)
    assert client.get(reverse("clip-list")).status_code == 200
    _age_last_activity(client, settings.SESSION_IDLE_S + 5)
    response = client.get(reverse("clip-list"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert client.get(reverse("clip-list")).status_code == 302  # and stays logged out


def test_activity_within_the_idle_limit_keeps_the_session(world: World, settings) -> None:
    settings.SESSION_IDLE_S = 600
    client = Client()
    _login(client)
    client.get(reverse("clip-list"))
    _age_last_activity(client, 590)
    assert client.get(reverse("clip-list")).status_code == 200
    _age_last_activity(client, 590)  # the request before refreshed it: 590 s again is fine
    assert client.get(reverse("clip-list")).status_code == 200


# --- passwords and accounts ----------------------------------------------------------------


def test_add_user_refuses_a_password_shorter_than_12_characters(db, monkeypatch) -> None:
    monkeypatch.setenv("MERSV_PASSWORD", "Xq7#mZ2!pL9")  # 11 characters
    with pytest.raises(CommandError, match="at least 12"):
        call_command("add_user", "shorty", "--role", "expert", stdout=io.StringIO())
    assert not get_user_model().objects.filter(username="shorty").exists()
    monkeypatch.setenv("MERSV_PASSWORD", "Xq7#mZ2!pL9w")  # 12
    call_command("add_user", "shorty", "--role", "expert", stdout=io.StringIO())
    assert get_user_model().objects.get(username="shorty").check_password("Xq7#mZ2!pL9w")


def test_the_admin_password_form_refuses_a_short_password(world: World) -> None:
    expert = world.users["expert"]
    client = client_for("admin", world)
    url = reverse("admin:auth_user_password_change", args=[expert.pk])
    response = client.post(url, {"password1": "Xq7#mZ2!pL9", "password2": "Xq7#mZ2!pL9"})
    assert response.status_code == 200
    assert "at least 12 characters" in response.content.decode()
    expert.refresh_from_db()
    assert expert.check_password(PASSWORD)


def test_there_is_no_self_registration(world: World) -> None:
    from tests.security.test_permission_matrix import resolver_route_names

    assert not [n for n in resolver_route_names() if "regist" in n or "signup" in n]
    for url in ("/register/", "/signup/", "/accounts/signup/", "/api/users/"):
        assert Client().post(url, {"username": "x", "password": "y" * 14}).status_code in (
            403,
            404,
        )
    assert get_user_model().objects.filter(username="x").count() == 0


# --- mass assignment -----------------------------------------------------------------------

PRIVILEGED_FIELDS: dict[str, Any] = {
    "is_staff": True, "is_superuser": True, "role": "admin", "groups": [1, 2, 3, 4],
    "frozen": True, "status": "ready", "content_hash": "f" * 64, "votes_a": 99,
    "votes_total": 99, "created_by": None, "uploaded_by": None, "rater": None, "user": None,
    "trainee": None, "sha256": "f" * 64, "retired_at": "2020-01-01T00:00:00Z",
}  # fmt: skip


def _snapshot(world: World) -> dict[str, Any]:
    from annotation.models import Clip, Rating, Video
    from datasets.models import DatasetVersion
    from modeling.models import TrainingRun

    User = get_user_model()
    return {
        "users": sorted(
            (u.username, u.is_staff, u.is_superuser, tuple(sorted(g.name for g in u.groups.all())))
            for u in User.objects.prefetch_related("groups")
        ),
        "ratings": sorted(Rating.objects.values_list("pk", "rater_id", "clip_id")),
        "clips": sorted(Clip.objects.values_list("pk", "votes_a", "votes_total", "retired_at")),
        "videos": sorted(Video.objects.values_list("pk", "uploaded_by_id", "status", "sha256")),
        "versions": sorted(
            DatasetVersion.objects.values_list(
                "pk", "frozen", "status", "content_hash", "created_by_id"
            )
        ),
        "runs": sorted(TrainingRun.objects.values_list("pk", "created_by_id")),
    }


def _assert_new_rows_belong_to(user: Any, since: dict[str, Any]) -> None:
    from datasets.models import DatasetVersion
    from modeling.models import TrainingRun

    old_versions = {v[0] for v in since["versions"]}
    for version in DatasetVersion.objects.exclude(pk__in=old_versions):
        assert version.created_by_id == user.pk and not version.frozen
        assert version.status == DatasetVersion.Status.PENDING and version.content_hash == ""
    old_runs = {r[0] for r in since["runs"]}
    for run in TrainingRun.objects.exclude(pk__in=old_runs):
        assert run.created_by_id == user.pk and run.status == "pending"


@pytest.mark.parametrize(
    ("row", "role"), _unsafe_allowed_rows(), ids=[row_id(r) for r, _ in _unsafe_allowed_rows()]
)
def test_privileged_fields_in_a_request_body_change_nothing(
    row: dict[str, str], role: str, world: World
) -> None:
    # Foreign owners on purpose: someone else's id where a body names a user.
    other = world.users["expert_other"].pk
    injected = {k: (other if v is None else v) for k, v in PRIVILEGED_FIELDS.items()}
    body = BODIES.get((row["route"], row["object"]))
    data = {**injected, **(body(world) if body else {})}
    if row["route"] == "api-grading-rating":
        data["grade"] = "B"  # its current grade: the counts must not move
    before = _snapshot(world)
    send(client_for(role, world), row["method"], _url(row, world), data)
    after = _snapshot(world)
    for key in ("users", "ratings", "videos", "versions", "runs"):
        old = {r[0] if key != "users" else r: r for r in before[key]}
        kept = [r for r in after[key] if (r[0] if key != "users" else r) in old]
        if key in ("users",):
            assert after[key] == before[key], (row_id(row), key)
        elif key == "runs" or key == "ratings":
            assert kept == before[key], (row_id(row), key)
        else:
            # Status may move through a legitimate action (cancel); ownership and hashes not.
            assert [(r[0], *r[-2:]) for r in kept] == [(r[0], *r[-2:]) for r in before[key]], (
                row_id(row), key,
            )  # fmt: skip
    if row["route"] not in ("api-grading-ratings", "api-grading-cannot-judge"):
        assert [c[:3] for c in after["clips"]] == [c[:3] for c in before["clips"]], row_id(row)
    _assert_new_rows_belong_to(world.user(role), before)


def test_a_rating_names_its_expert_whatever_the_body_says(world: World) -> None:
    from annotation.models import Rating
    from tests.grading_support import offer

    clip = world.objects["clip_free"]
    offer(world.users["expert"], clip)
    client = client_for("expert", world)
    response = client.post(
        reverse("api-grading-ratings"),
        {"clip_id": clip.external_id, "grade": "A", "time_spent_ms": 10,
         "rater": world.users["expert_other"].pk, "votes_a": 40},
        content_type="application/json",
    )  # fmt: skip
    assert response.status_code == 201
    rating = Rating.objects.get(pk=response.json()["id"])
    assert rating.rater == world.users["expert"]
    clip.refresh_from_db()
    assert clip.votes_a == 1 and clip.votes_total == 1


def test_an_upload_is_owned_by_its_uploader_and_starts_pending(world: World) -> None:
    from annotation.models import Video

    client = client_for("curator", world)
    upload = io.BytesIO(MP4_BYTES)
    upload.name = "sample.mp4"
    response = client.post(
        reverse("api-videos"),
        {"file": upload, "patient_code": "P-77", "pixel_size_um": "0.5",
         "targets": '[{"x": 10, "y": 10}]', "uploaded_by": world.users["curator_other"].pk,
         "status": "ready", "sha256": "f" * 64},
    )  # fmt: skip
    assert response.status_code == 201, response.content
    video = Video.objects.get(pk=response.json()["id"])
    assert video.uploaded_by == world.users["curator"]
    assert video.status == Video.Status.PENDING and video.sha256 == ""
