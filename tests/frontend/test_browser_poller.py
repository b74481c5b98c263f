"""Headless Chromium: the one poller (frontend/static/frontend/poller.js) that every live page
uses polls, stops while the tab is hidden, resumes at once when it shows, and backs off while
nothing changes or the server errs."""

from __future__ import annotations

import itertools
import time

import pytest

from annotation.access.accounts import user_create
from annotation.models import Patient, Video
from tests.browser_support import login, page_errors
from tests.conftest import PASSWORD

HIDE = """() => {
  Object.defineProperty(document, 'hidden', {get: () => true, configurable: true});
  Object.defineProperty(document, 'visibilityState', {get: () => 'hidden', configurable: true});
  document.dispatchEvent(new Event('visibilitychange'));
}"""
SHOW = """() => {
  delete document.hidden; delete document.visibilityState;
  document.dispatchEvent(new Event('visibilitychange'));
}"""


def _processing_video() -> Video:
    return Video.objects.create(
        patient=Patient.objects.create(code="P-poll"),
        file="videos/poll.mp4",
        original_name="poll.mp4",
        pixel_size_um=0.5,
        targets=[{"x": 10, "y": 10}],
        status=Video.Status.PROCESSING,
    )


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_live_page_polls_stops_while_hidden_and_resumes_at_once_when_shown(
    live_server, browser_page
) -> None:
    video = _processing_video()
    user_create(username="cur", role="curator", password=PASSWORD)
    page = browser_page
    polls: list[float] = []
    api = f"/api/videos/{video.pk}/"
    page.on("request", lambda r: polls.append(time.monotonic()) if r.url.endswith(api) else None)
    login(page, live_server, "cur", PASSWORD)
    page.goto(f"{live_server.url}/videos/{video.pk}/")
    page.wait_for_timeout(2500)
    assert len(polls) >= 1  # the page polls by itself

    page.evaluate(HIDE)
    page.wait_for_timeout(300)  # a poll already on its way may still land
    hidden_at = len(polls)
    page.wait_for_timeout(4000)  # longer than the poller's waits up to here (1 s, 1.5 s, ...)
    assert len(polls) == hidden_at  # hidden: not one request

    Video.objects.filter(pk=video.pk).update(status=Video.Status.FAILED, error="no target found")
    shown = time.monotonic()
    page.evaluate(SHOW)
    page.wait_for_function(
        "() => document.getElementById('error-text').textContent === 'no target found'"
    )
    assert len(polls) > hidden_at and polls[hidden_at] - shown < 0.8  # at once, not after a wait
    assert page.text_content("#status-text") == "failed"
    assert page_errors(page) == []


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_poller_backs_off_while_nothing_changes_and_on_errors_and_speeds_up_on_a_change(
    live_server, browser_page
) -> None:
    video = _processing_video()
    user_create(username="cur", role="curator", password=PASSWORD)
    page = browser_page
    login(page, live_server, "cur", PASSWORD)
    page.goto(f"{live_server.url}/videos/{video.pk}/")  # loads poller.js
    answers = {"body": '{"n": 1}', "status": 200}
    times: list[float] = []

    def probe(route) -> None:  # type: ignore[no-untyped-def]
        times.append(time.monotonic())
        route.fulfill(
            status=answers["status"], body=answers["body"], content_type="application/json"
        )

    page.route("**/poll-probe", probe)
    page.evaluate(
        """() => { window.seen = [];
          window.mersvPoll('/poll-probe', (a) => { window.seen.push(a.n); },
                           {fastest: 100, slowest: 800, factor: 2}); }"""
    )
    page.wait_for_timeout(2500)  # the same answer each time: waits of 100, 200, 400, 800, 800
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) <= 6 and gaps[0] < 0.35 and gaps[-1] > 0.6
    assert page.evaluate("() => window.seen") == [1]  # an unchanged answer is not handed on

    answers["body"] = '{"n": 2}'  # a change: back to the fastest pace
    page.wait_for_function("() => window.seen.length === 2", timeout=3000)
    changed_at = len(times)
    page.wait_for_timeout(250)
    assert len(times) > changed_at  # the next poll came after about 100 ms

    answers["status"] = 500  # errors: the waits grow again
    page.wait_for_timeout(2500)
    erred = times[changed_at:]
    assert erred[-1] - erred[-2] > 0.6
    assert page.evaluate("() => window.seen") == [1, 2]
