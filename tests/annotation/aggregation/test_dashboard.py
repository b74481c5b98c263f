"""The curator dashboard and the curator clip page: server-rendered SVG, curators only."""

from __future__ import annotations

import re

import pytest

from annotation.aggregation.rater_model_service import rater_model_refit
from annotation.aggregation.selectors import rater_model_latest
from annotation.grading import answers as grading
from annotation.models import RaterModelSnapshot, Rating
from tests.browser_support import login, page_errors
from tests.conftest import PASSWORD


@pytest.fixture
def curator(make_user):
    return make_user("curator", "cura-01")


@pytest.fixture
def graded(make_clips, make_experts, add_votes):
    """Six clips graded by four experts; the last clip has no votes."""
    clips = make_clips(6)
    raters = make_experts(4)
    for clip, grades in zip(clips, ["AABB", "BBBC", "CCDD", "DEEE", "ABCD"], strict=False):
        add_votes(clip, grades, raters)
    return clips, raters


def _svgs(html: str) -> list[str]:
    return re.findall(r"<svg[^>]*>.*?</svg>", html, flags=re.S)


def test_the_dashboard_shows_the_figure3_agreement_and_expert_charts_to_a_curator(
    graded, client_for, curator
) -> None:
    _, raters = graded

    response = client_for(curator).get("/dashboard/")

    assert response.status_code == 200
    html = response.content.decode()
    labels = re.findall(r'<svg[^>]*aria-label="([^"]*)"', html)
    for wanted in (
        "clips per mean and standard deviation of grade scores",
        "clips per grade mode",
        "votes per grade",
        "clips per number of votes",
        "votes per expert",
        "agreement of the panel",
        "clips retired",
    ):
        assert any(label.startswith(wanted) for label in labels), wanted
    # Five rated clips land in the mean/std grid; hovering a cell names its clips.
    cells = re.findall(r'<rect class="heat-cell"[^>]*><title>[^<]*: (\d+) clips?</title>', html)
    assert sum(map(int, cells)) == 5
    # The per-expert table: every expert, with their vote counts.
    table = html.split('id="experts"')[1]
    for rater in raters:
        assert rater.username in table
    assert table.count('<td class="num">5</td>') == 4  # each expert voted on five clips
    # CSP: no inline style anywhere in the charts.
    assert "style=" not in "".join(_svgs(html))
    assert "<script>" not in html


def test_the_dashboard_is_forbidden_to_experts_and_trainees(make_user, client_for) -> None:
    for role in ("expert", "trainee"):
        response = client_for(make_user(role)).get("/dashboard/")
        assert response.status_code == 403, role


def test_the_dashboard_renders_with_no_clips_at_all(client_for, curator) -> None:
    response = client_for(curator).get("/dashboard/")

    assert response.status_code == 200
    assert "No expert ratings yet." in response.content.decode()


def test_the_dashboard_counts_the_votes_retirement_saved(
    make_clips, make_experts, add_votes, client_for, curator, settings
) -> None:
    settings.MAX_VOTES = 10
    settings.RETIRE_MIN_VOTES = 2
    settings.RETIRE_TOLERANCE = 0.05
    from annotation.aggregation.retirement_service import clips_retire_settled

    settled, unsure = make_clips(2)
    raters = make_experts(6)
    add_votes(settled, "BBBBBB", raters)
    add_votes(unsure, "AE", raters)
    assert clips_retire_settled().retired == 1

    html = client_for(curator).get("/dashboard/").content.decode()

    progress = html.split('id="retirement-progress">')[1].split("</p>")[0]
    assert "1 of 2 clips retired" in " ".join(progress.split())
    assert "4 votes saved (40%)" in progress  # 10 - 6 of 10 votes


def test_the_clip_page_shows_raw_and_corrected_distributions_and_every_vote(
    graded, client_for, curator
) -> None:
    clips, raters = graded
    clip = clips[0]  # AABB
    rating = Rating.objects.get(clip=clip, rater=raters[3])
    grading.rating_change(expert=raters[3], rating=rating, grade="C")
    rater_model_refit()  # the worker's task (page views never fit)

    html = client_for(curator).get(f"/clips/{clip.external_id}/").content.decode()

    chart = html.split('class="chart distribution-chart')[1].split("</figure>")[0]
    raw = re.findall(r'class="bar series-0"[^>]*><title>raw votes, (\w): (\d+)%', chart)
    corrected = re.findall(r'class="bar series-1"[^>]*><title>severity-corrected, (\w)', chart)
    assert dict(raw) == {"A": "50", "B": "25", "C": "25", "D": "0", "E": "0"}
    assert corrected == ["A", "B", "C", "D", "E"]
    table = html.split('id="distribution-table"')[1].split("</table>")[0]
    assert "0.500" in table.split("Severity-corrected")[0]
    assert "no votes" not in table
    votes = html.split('id="votes"')[1]
    for rater in raters:
        assert rater.username in votes
    assert "B → C" in votes  # the change, with its time


def test_a_clip_without_votes_says_so_on_its_page(graded, client_for, curator) -> None:
    clips, _ = graded

    html = client_for(curator).get(f"/clips/{clips[-1].external_id}/").content.decode()

    table = html.split('id="distribution-table"')[1].split("</table>")[0]
    assert table.count("no votes") == 2
    assert "No votes yet." in html
    chart = html.split('class="chart distribution-chart')[1].split("</figure>")[0]
    assert 'class="bar series-' not in chart and ">no votes</text>" in chart


def test_very_fast_grades_are_flagged_per_expert_and_on_the_clip_page(
    make_clips, make_experts, add_votes, client_for, curator, settings
) -> None:
    settings.FAST_GRADE_MS = 2000
    settings.FAST_GRADE_FRACTION = 0.25
    clips = make_clips(5)
    quick, steady = make_experts(2)
    # quick: 1.5 s (under 2 s) once; 3 s against a median of 20 s (under 25%) once.
    times = {quick.pk: [20_000, 1_500, 3_000, 20_000, 20_000], steady.pk: [8_000] * 5}
    for k, clip in enumerate(clips):
        add_votes(clip, "BC", [quick, steady], time_ms=[times[quick.pk][k], times[steady.pk][k]])

    experts = client_for(curator).get("/api/statistics/?bootstrap=0").json()["experts"]

    by_name = {e["rater"]: e for e in experts}
    assert by_name[quick.username]["n_fast"] == 2 and by_name[quick.username]["flagged"]
    assert by_name[quick.username]["median_time_ms"] == 20_000
    assert by_name[steady.username]["n_fast"] == 0 and not by_name[steady.username]["flagged"]
    html = client_for(curator).get(f"/clips/{clips[1].external_id}/").content.decode()
    assert html.count('class="fast-flag"') == 1


def test_imported_grades_without_a_time_are_never_flagged_fast(
    make_clips, make_experts, add_votes, client_for, curator
) -> None:
    clip = make_clips(1)[0]
    add_votes(clip, "ABC", make_experts(3), time_ms=0)

    experts = client_for(curator).get("/api/statistics/?bootstrap=0").json()["experts"]

    assert [(e["n_fast"], e["n_timed"], e["median_time_ms"]) for e in experts] == [(0, 0, None)] * 3


def test_the_rater_model_is_fitted_once_and_refitted_only_when_a_rating_changes(
    graded, client_for, curator
) -> None:
    clips, raters = graded

    first = rater_model_refit()
    assert first is not None and rater_model_refit().pk == first.pk
    assert rater_model_latest().snapshot.pk == first.pk and not rater_model_latest().stale
    client_for(curator).get("/dashboard/")
    assert RaterModelSnapshot.objects.get().pk == first.pk

    rating = Rating.objects.get(clip=clips[0], rater=raters[0])
    grading.rating_change(expert=raters[0], rating=rating, grade="E")
    assert rater_model_latest().stale
    second = rater_model_refit()

    assert second.pk != first.pk
    assert list(RaterModelSnapshot.objects.values_list("pk", flat=True)) == [second.pk]
    assert clips[0].pk in second.clip_pks and clips[-1].pk not in second.clip_pks


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_dashboard_and_the_clip_page_render_in_chromium_without_csp_errors(
    graded, curator, live_server, browser_page
) -> None:
    clips, _ = graded
    rater_model_refit()  # the worker's task (page views never fit)
    page = browser_page
    login(page, live_server, curator.username, PASSWORD)

    page.goto(f"{live_server.url}/dashboard/")
    assert page.locator("svg.heatmap rect.heat-cell").count() >= 1
    box = page.locator("svg.heatmap").bounding_box()
    assert box is not None and box["width"] > 200  # laid out by app.css, not collapsed
    page.goto(f"{live_server.url}/clips/{clips[0].external_id}/")
    assert page.locator(".distribution-chart rect.bar.series-1").count() == 5

    assert page_errors(page) == []
