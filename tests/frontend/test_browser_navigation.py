"""Headless Chromium: every link of every role's navigation bar opens (no 403, 404 or 500), and
a refused page offers a way back."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from tests.annotation.grading.conftest import make_clip  # noqa: F401  (a fixture)
from tests.browser_support import login, page_errors
from tests.conftest import PASSWORD


def _nav_hrefs(page) -> list[str]:
    return page.eval_on_selector_all("header.top nav a", "els => els.map(e => e.href)")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_every_link_in_each_roles_nav_opens(live_server, browser_page, make_user, make_clip):  # noqa: F811
    for _ in range(2):
        make_clip()  # so the grading page has a clip and the curator's lists have rows
    # (user, links in the bar): an admin has no grading links (grades count from experts only)
    # but the trainee's pages and the Django admin.
    cases = [(make_user(role), n) for role, n in (("admin", 12), ("trainee", 2), ("expert", 3))]
    cases.append((make_user("curator"), 9))
    # An account in two role groups (the Django admin allows it) gets the higher role's pages.
    several = make_user("expert", username="nav-expert-curator")
    several.groups.add(Group.objects.get(name="curator"))
    cases.append((several, 9))
    page = browser_page
    for user, n_links in cases:
        page.context.clear_cookies()
        login(page, live_server, user.username, PASSWORD)
        hrefs = _nav_hrefs(page)
        assert len(hrefs) == n_links, (user.username, hrefs)
        for href in hrefs:
            response = page.goto(href)
            assert response is not None
            assert response.status < 400, f"{user.username}: {href} answers {response.status}"
            assert "/login/" not in page.url, f"{user.username}: {href} asks for a login"
            if not href.endswith("/admin/"):  # the Django admin has a layout of its own
                assert _nav_hrefs(page) == hrefs  # the same bar on every page it leads to
    assert page_errors(page) == []


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_refused_page_says_so_in_the_layout_and_leads_back(live_server, browser_page, make_user):
    trainee = make_user("trainee")
    page = browser_page
    login(page, live_server, trainee.username, PASSWORD)
    page.goto(f"{live_server.url}/practice/progress/")
    response = page.goto(f"{live_server.url}/dashboard/", referer=page.url)
    assert response is not None and response.status == 403
    assert page.text_content("h1") == "You may not open this page"
    assert page.is_visible("header.top nav")
    assert page.locator("text=Open the Django admin").count() == 0
    page.click("text=Back to the previous page")
    page.wait_for_url("**/practice/progress/")
    page.goto(f"{live_server.url}/dashboard/")
    page.click("text=Go to the home page")
    page.wait_for_url("**/practice/")  # a trainee's home
    refusals = [e for e in page_errors(page) if "status of 403" in e]
    assert len(refusals) == 2  # the browser's own note of each 403, nothing else
    assert page_errors(page) == refusals
