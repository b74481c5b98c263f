"""The rater model is refitted by the worker, one fit at a time, never in a curator's request;
the stale fit is served meanwhile with its age (issue 16, item 8)."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotation.aggregation.rater_model_service import rater_model_refit
from annotation.aggregation.services import REFIT_LOST_AFTER
from annotation.grading import answers as grading
from annotation.models import RaterModelRefit, RaterModelSnapshot, Rating
from tests.conftest import wait_for


@pytest.fixture
def curator(make_user):
    return make_user("curator", "cura-refit")


@pytest.fixture
def graded(make_clips, make_experts, add_votes):
    clips = make_clips(5)
    raters = make_experts(4)
    for clip, grades in zip(clips, ["AABB", "BBBC", "CCDD", "DEEE", "ABC "], strict=True):
        add_votes(clip, grades, raters)
    return clips, raters


def _vote_changed(clips, raters) -> None:
    rating = Rating.objects.get(clip=clips[0], rater=raters[0])
    grading.rating_change(expert=raters[0], rating=rating, grade="E")


def _age_line(html: str) -> str:
    found = re.search(r'<span class="rater-model-age">(.*?)</span>', html, flags=re.S)
    assert found, "no rater model age on the page"
    return " ".join(re.sub(r"<[^>]+>", "", found.group(1)).split())


def test_reads_after_a_vote_serve_the_stale_fit_with_its_age_and_never_fit(
    graded, client_for, curator
) -> None:
    clips, raters = graded
    first = rater_model_refit()
    RaterModelSnapshot.objects.filter(pk=first.pk).update(
        created_at=timezone.now() - timedelta(minutes=7)
    )
    _vote_changed(clips, raters)
    client = client_for(curator)

    stats = [client.get("/api/statistics/?bootstrap=0").json() for _ in range(5)]
    dashboard = client.get("/dashboard/").content.decode()
    clip_page = client.get(f"/clips/{clips[1].external_id}/").content.decode()
    detail = client.get(f"/api/distributions/{clips[1].external_id}/").json()

    # No read fitted: the one snapshot is still the old one, and one refit waits.
    assert list(RaterModelSnapshot.objects.values_list("pk", flat=True)) == [first.pk]
    assert RaterModelRefit.objects.get().queued_at is not None
    for body in stats:
        model = body["rater_model"]
        assert model["n_ratings"] == first.n_ratings
        assert model["stale"] and model["refit_queued"]
        assert 7 * 60 <= model["age_s"] < 8 * 60
    assert _age_line(dashboard) == f"fitted 7 minutes ago on {first.n_ratings} votes; refit queued"
    assert _age_line(clip_page) == _age_line(dashboard)
    assert detail["corrected"] is not None  # the stale fit's, meanwhile
    # The fit, its age and the queue stay curator-only (blindness).
    expert = client_for(raters[0])
    for url in ("/api/statistics/?bootstrap=0", f"/clips/{clips[4].external_id}/", "/dashboard/"):
        assert expert.get(url).status_code == 403


def test_many_reads_queue_one_refit_with_one_conditional_update(
    graded, client_for, curator
) -> None:
    clips, raters = graded
    rater_model_refit()
    _vote_changed(clips, raters)
    client = client_for(curator)

    client.get("/api/statistics/?bootstrap=0")
    queued_at = RaterModelRefit.objects.get().queued_at
    updates = []
    for _ in range(5):
        with CaptureQueriesContext(connection) as seen:
            client.get("/api/statistics/?bootstrap=0")
        sqls = [q["sql"] for q in seen.captured_queries]
        updates += [sql for sql in sqls if "annotation_ratermodelrefit" in sql]

    assert RaterModelRefit.objects.get().queued_at == queued_at  # nobody queued a second
    assert updates and not [sql for sql in updates if sql.startswith("UPDATE")]


def test_a_lost_refit_is_queued_again_and_the_refit_empties_the_marker(
    graded, client_for, curator
) -> None:
    clips, raters = graded
    rater_model_refit()
    _vote_changed(clips, raters)
    lost = timezone.now() - REFIT_LOST_AFTER - timedelta(minutes=1)
    RaterModelRefit.objects.update_or_create(pk=1, defaults={"queued_at": lost})

    client_for(curator).get("/api/statistics/?bootstrap=0")
    requeued = RaterModelRefit.objects.get().queued_at
    second = rater_model_refit()
    body = client_for(curator).get("/api/statistics/?bootstrap=0").json()

    assert requeued > lost
    assert RaterModelRefit.objects.get().queued_at is None
    assert body["rater_model"]["n_ratings"] == second.n_ratings
    assert not body["rater_model"]["stale"] and not body["rater_model"]["refit_queued"]


def test_before_the_first_fit_the_page_says_a_fit_is_queued(graded, client_for, curator) -> None:
    body = client_for(curator).get("/api/statistics/?bootstrap=0").json()
    clip_page = client_for(curator).get(f"/clips/{graded[0][0].external_id}/").content.decode()

    assert body["rater_model"] is None
    assert not RaterModelSnapshot.objects.exists()
    assert _age_line(clip_page) == "not fitted yet; fit queued"


def _refits_done(log: Path) -> int:
    text = log.read_text() if log.exists() else ""
    return len(re.findall(r"annotation\.tasks\.refit_rater_model\[[^\]]+\] succeeded", text))


def _refits_unfinished(log: Path) -> int:
    """Refit tasks the worker received and has not finished (one left by an earlier test of
    the session would otherwise be counted as this test's)."""
    text = log.read_text() if log.exists() else ""
    received = re.findall(r"Task annotation\.tasks\.refit_rater_model\[([^\]]+)\] received", text)
    ended = set(
        re.findall(r"annotation\.tasks\.refit_rater_model\[([^\]]+)\] (?:succeeded|raised)", text)
    )
    return len([task for task in received if task not in ended])


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_concurrent_reads_after_a_vote_make_the_worker_fit_once(
    graded, curator, add_votes, celery_worker_process
) -> None:
    clips, raters = graded
    first = rater_model_refit()
    log = Path(settings.VAR_DIR) / "worker.log"
    wait_for(lambda: _refits_unfinished(log) == 0, timeout=120, what="earlier refits to end")
    before = _refits_done(log)
    add_votes(clips[4], "   D", raters)  # one new vote: the fit is stale

    def read(_: int) -> tuple[float, dict]:
        client = Client()
        client.force_login(curator)
        started = time.perf_counter()
        body = client.get("/api/statistics/?bootstrap=0").json()
        connection.close()  # this thread's own connection
        return time.perf_counter() - started, body["rater_model"]

    with ThreadPoolExecutor(max_workers=6) as pool:
        reads = list(pool.map(read, range(24)))
    wait_for(
        lambda: (
            not RaterModelRefit.objects.filter(queued_at__isnull=False).exists()
            and _refits_done(log) > before
        ),
        timeout=60,
        what="the worker's refit",
    )
    time.sleep(1.0)  # a second task, had one been sent, would have finished by now

    assert _refits_done(log) - before == 1
    fresh = Client()
    fresh.force_login(curator)
    now = fresh.get("/api/statistics/?bootstrap=0").json()["rater_model"]
    snapshot = RaterModelSnapshot.objects.get()
    assert snapshot.n_ratings == first.n_ratings + 1 == now["n_ratings"]
    assert not now["stale"] and not now["refit_queued"]
    # Every read answered from a stored fit: the old one with a refit queued or, for a read
    # after the worker was done, the new one.
    answers = {(m["n_ratings"], m["stale"], m["refit_queued"]) for _, m in reads}
    assert answers <= {(first.n_ratings, True, True), (first.n_ratings + 1, False, False)}
    assert (first.n_ratings, True, True) in answers
