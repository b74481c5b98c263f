"""The navigation bar shows each role exactly the pages it may open; the 403 and 404 pages use
the site's layout with a way back (and a link to the Django admin for staff); the API keeps
answering JSON; a refused request logs one line."""

from __future__ import annotations

import logging
import re

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.urls import reverse

from annotation.models import AuditEvent
from frontend.navigation import NAV_ENTRIES, nav_entry_target
from tests.security.conftest import World, client_for

NAV_HREF = re.compile(r"<nav>(.*?)</nav>", re.S)
HREF = re.compile(r'href="([^"]+)"')
ADMIN_HREF = 'href="/admin/"'


@pytest.fixture(autouse=True)
def _production_errors(settings) -> None:
    # The error pages as a lab sees them: Django's debug pages off.
    settings.DEBUG = False


def nav_hrefs(html: str) -> list[str]:
    found = NAV_HREF.search(html)
    return HREF.findall(found.group(1)) if found else []


def _multi_role_user(world: World, make_user):
    """An account in the expert and the curator groups (the Django admin allows it)."""
    user = make_user("expert", username="sec-expert-curator")
    user.groups.add(Group.objects.get(name="curator"))
    return user


def _staff_curator(make_user):
    user = make_user("curator", username="sec-staff-curator")
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    return user


def _clients(world: World, make_user) -> dict[str, Client]:
    clients = {role: client_for(role, world) for role in ("trainee", "expert", "curator", "admin")}
    for name, user in (
        ("expert+curator", _multi_role_user(world, make_user)),
        ("staff curator", _staff_curator(make_user)),
    ):
        clients[name] = Client()
        clients[name].force_login(user)
    return clients


def test_each_role_sees_in_its_nav_exactly_the_pages_it_may_open(world: World, make_user) -> None:
    for who, client in _clients(world, make_user).items():
        shown = nav_hrefs(client.get(reverse("dashboard"), follow=True).content.decode())
        for entry in NAV_ENTRIES:
            url = reverse(entry.url_name)
            status = client.get(url).status_code
            assert status != 404 and status < 500, f"{who}: {url} answers {status}"
            opens = status != 403
            assert (url in shown) == opens, f"{who}: {url} answers {status}, nav shows {shown}"


def test_the_nav_of_each_role_lists_its_own_pages(world: World, make_user) -> None:
    clients = _clients(world, make_user)

    def shown(who: str) -> set[str]:
        return set(nav_hrefs(clients[who].get(reverse("audit-log"), follow=True).content.decode()))

    expert_pages = {reverse(n) for n in ("grade", "grade-summary", "grade-compare")}
    trainee_pages = {reverse(n) for n in ("practice", "practice-progress")}
    curator_pages = {
        reverse(n)
        for n in (
            "dashboard", "clip-list", "video-list", "video-upload", "dataset-list",
            "training-run-list", "trainee-list", "triage", "audit-log",
        )
    }  # fmt: skip
    assert shown("expert") == expert_pages
    assert shown("trainee") == trainee_pages
    assert shown("curator") == curator_pages
    # Grades count from experts only, so an admin has no grading links; the Django admin's.
    assert shown("admin") == curator_pages | trainee_pages | {"/admin/"}
    # The most privileged role wins (annotation.access.roles.user_role): a curator's pages.
    assert shown("expert+curator") == curator_pages
    assert shown("staff curator") == curator_pages | {"/admin/"}


def test_a_nav_entry_whose_view_has_no_role_check_is_refused_loudly() -> None:
    # The home page needs a login but no role: the nav could not tell whom it lets in.
    with pytest.raises(ImproperlyConfigured, match="without role_required"):
        nav_entry_target(None, "home")


def test_a_page_refused_for_the_role_is_a_403_in_the_site_layout_with_a_way_back(
    world: World,
) -> None:
    expert = client_for("expert", world)
    answer = expert.get(reverse("clip-list"), HTTP_REFERER="http://testserver/grade/")
    assert answer.status_code == 403
    html = answer.content.decode()
    assert '<header class="top">' in html and "<nav>" in html
    assert "You may not open this page" in html
    assert "Your role does not allow this page." in html
    assert 'href="http://testserver/grade/">Back to the previous page' in html
    assert 'href="/">Go to the home page' in html
    assert reverse("grade") in nav_hrefs(html)  # the expert's own nav, to carry on from
    assert ADMIN_HREF not in html


def test_the_way_back_is_never_another_site(world: World) -> None:
    answer = client_for("trainee", world).get(
        reverse("dashboard"), HTTP_REFERER="https://evil.example/phish"
    )
    assert answer.status_code == 403
    html = answer.content.decode()
    assert "evil.example" not in html and "Back to the previous page" not in html
    assert 'href="/">Go to the home page' in html


def test_staff_see_a_link_to_the_django_admin_on_the_403_and_404_pages(
    world: World, make_user
) -> None:
    admin = client_for("admin", world)
    refused = admin.get(reverse("grade"))  # grades count from experts only
    assert refused.status_code == 403
    assert 'href="/admin/">Open the Django admin' in refused.content.decode()
    missing = admin.get("/no-such-page/")
    assert missing.status_code == 404
    assert 'href="/admin/">Open the Django admin' in missing.content.decode()
    staff = Client()
    staff.force_login(_staff_curator(make_user))
    assert "Open the Django admin" in staff.get(reverse("grade")).content.decode()


def test_a_404_page_uses_the_layout_says_what_happened_and_shows_nothing_internal(
    world: World,
) -> None:
    curator = client_for("curator", world)
    answer = curator.get(reverse("clip-detail", args=["no-such-clip"]))
    assert answer.status_code == 404
    html = answer.content.decode()
    assert '<header class="top">' in html and reverse("clip-list") in nav_hrefs(html)
    assert "Page not found" in html and 'href="/">Go to the home page' in html
    assert "No Clip matches" not in html  # get_object_or_404's text names the model
    assert ADMIN_HREF not in html
    anonymous = Client().get("/no-such-page/")
    assert anonymous.status_code == 404
    assert "Page not found" in anonymous.content.decode()
    assert "<nav>" not in anonymous.content.decode()


def test_api_refusals_and_unknown_api_addresses_stay_json(world: World) -> None:
    expert = client_for("expert", world)
    refused = expert.get(reverse("api-clips"))
    assert refused.status_code == 403
    assert refused["Content-Type"].startswith("application/json")
    assert "detail" in refused.json()
    missing = expert.get("/api/no-such-route/")
    assert missing.status_code == 404
    assert missing["Content-Type"].startswith("application/json")
    assert missing.json() == {"detail": "Not found."}


def _warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_refused_page_logs_one_line_without_a_traceback(world: World, caplog) -> None:
    expert = client_for("expert", world)
    user_id = world.users["expert"].pk
    with caplog.at_level(logging.INFO):
        assert expert.get(reverse("clip-list")).status_code == 403
    records = _warnings(caplog)
    assert len(records) == 1, [r.getMessage() for r in records]
    (record,) = records
    assert record.levelno == logging.WARNING and record.exc_info is None
    line = record.getMessage()
    assert line == f"403 GET /clips/ user_id={user_id} reason=your role does not allow this page"
    assert world.users["expert"].username not in line
    # The audit event is still written.
    assert AuditEvent.objects.filter(action="permission_denied", object_id="/clips/").exists()


def test_a_refused_api_request_logs_one_line(world: World, caplog) -> None:
    trainee = client_for("trainee", world)
    with caplog.at_level(logging.INFO):
        assert trainee.post(reverse("api-clips")).status_code == 403
        assert Client().get(reverse("api-clips")).status_code == 403  # anonymous
    lines = [r.getMessage() for r in _warnings(caplog)]
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"403 POST /api/clips/ user_id={world.users['trainee'].pk} ")
    assert lines[1].startswith("403 GET /api/clips/ user_id=- ")
    assert all(r.exc_info is None for r in _warnings(caplog))


def test_a_newline_in_a_refused_path_cannot_forge_a_second_log_line(world: World, caplog) -> None:
    trainee = client_for("trainee", world)
    with caplog.at_level(logging.INFO):
        answer = trainee.get("/clips/x%0A403 GET fake user_id=1 reason=forged/")
    assert answer.status_code == 403
    (record,) = _warnings(caplog)
    assert record.name == "annotation.access.access_log" and record.exc_info is None
    assert "\n" not in record.getMessage() and "\\n" in record.getMessage()


def test_other_client_errors_are_still_logged_by_django(world: World, caplog) -> None:
    # Only 403s are taken over: a 404 keeps Django's own warning.
    with caplog.at_level(logging.INFO):
        assert client_for("curator", world).get("/no-such-page/").status_code == 404
    assert [r.name for r in _warnings(caplog)] == ["django.request"]
