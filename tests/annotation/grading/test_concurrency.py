"""Concurrent submissions over real HTTP: the live server handles each request in its own
thread with its own database connection, as gunicorn's threads would."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar

import pytest

from annotation.ingest.services import clip_vote_counts_recount
from annotation.models import Rating, RatingChange
from tests.conftest import PASSWORD


def _logged_in_headers(base: str, username: str) -> dict[str, str]:
    """Log in through the login form; the headers a page's fetch() would send afterwards."""
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(f"{base}/login/", timeout=30).read()
    token = next(c.value for c in jar if c.name == "csrftoken")
    form = {"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token}
    opener.open(f"{base}/login/", urllib.parse.urlencode(form).encode(), timeout=30).read()
    cookies = {c.name: c.value for c in jar}
    assert "sessionid" in cookies, "the login did not succeed"
    return {
        "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()),
        "X-CSRFToken": cookies["csrftoken"],
        "Content-Type": "application/json",
        "Accept": "application/json",
    }


def _post_json(url: str, body: dict, headers: dict[str, str]) -> tuple[int, dict]:
    # The URL is the live server's http:// address, never user input.
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:  # a 500 page is HTML
            return exc.code, {"body": raw[:200].decode(errors="replace")}


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_submits_by_one_expert_leave_exactly_one_rating(
    live_server, make_user, make_clip
):
    expert = make_user("expert")
    clip = make_clip()
    n = 50
    # The test server listens with a backlog of 10; a burst of 50 connections would be reset
    # by the kernel before reaching Django. Raise it (listen() again resizes it on Linux).
    live_server.thread.httpd.socket.listen(2 * n)
    headers = _logged_in_headers(live_server.url, expert.username)
    url = f"{live_server.url}/api/grading/ratings/"
    barrier = threading.Barrier(n)
    outcomes: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def submit(i: int) -> None:
        body = {"clip_id": clip.external_id, "grade": "ABCDE"[i % 5], "time_spent_ms": i}
        barrier.wait(timeout=30)
        outcome = _post_json(url, body, headers)
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    statuses = sorted(status for status, _ in outcomes)
    assert len(statuses) == n
    assert statuses == [201] + [409] * (n - 1), statuses  # no 5xx, one winner
    winner = next(body for status, body in outcomes if status == 201)
    assert {body["rating_id"] for status, body in outcomes if status == 409} == {winner["id"]}
    rating = Rating.objects.get(clip=clip, rater=expert)
    assert rating.pk == winner["id"] and rating.grade == winner["grade"]
    assert RatingChange.objects.filter(rating__clip=clip).count() == 1
    clip.refresh_from_db()
    assert clip.votes_total == 1
    assert clip_vote_counts_recount(clip_ids=[clip.pk]) == 0  # counts equal a recount
