"""Experts and trainees never see who else graded: no other rater's name on any page or API
they can reach. Curators see the pseudonymous names."""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from annotation.grading.repeats import repeat_submit
from annotation.models import Rating

# Not GET pages of the site: the Django admin (staff only), logging out, raw media files.
_SKIP_PREFIXES = ("admin/", "logout/", "media/")


def _routes(patterns: list, prefix: str = "") -> list[str]:
    routes = []
    for entry in patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            routes += _routes(entry.url_patterns, route)
        elif isinstance(entry, URLPattern):
            routes.append(route)
    return routes


def _reachable_paths(values: dict[str, str]) -> list[str]:
    """Every GET path of the site, its arguments filled in from `values` by converter name."""
    paths = []
    for route in _routes(get_resolver().url_patterns):
        if route.startswith(_SKIP_PREFIXES) or route.startswith("^"):
            continue
        filled = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values.get(m.group(1), "\0"), route)
        if "\0" not in filled:
            paths.append("/" + filled)
    return paths


@pytest.fixture
def panel(make_clips, make_experts, add_votes, make_user, settings):
    """Three clips graded by an expert and four other raters with unmistakable names, and a
    fourth graded by the others only (so the expert's queue offers a clip others voted on)."""
    settings.SHOW_PANEL_AFTER_VOTE = True
    settings.REPEAT_MIN_AGE_H = 1.0
    others = make_experts(4, prefix="zq-hidden")
    me = make_user("expert", "viewer-expert")
    clips = make_clips(4)
    for clip in clips[:3]:
        add_votes(clip, "ABCDB", [*others, me], age_hours=2)
    add_votes(clips[3], "ABCD", others)
    repeat_submit(expert=others[0], clip=clips[0], grade="E", time_spent_ms=3000)
    return me, others, clips


@pytest.mark.parametrize("role", ["expert", "trainee"])
def test_no_other_raters_name_appears_on_any_page_or_api_an_expert_or_trainee_reaches(
    role, panel, make_user, client_for
) -> None:
    me, others, clips = panel
    viewer = me if role == "expert" else make_user("trainee", "viewer-trainee")
    client = client_for(viewer)
    other_rating = Rating.objects.filter(rater=others[0]).first()
    values = {
        "clip_id": clips[0].external_id,
        "pk": str(other_rating.pk),
        "name": "v1",
        "other": "v2",
    }

    paths = _reachable_paths(values)
    assert "/dashboard/" in paths and "/api/statistics/" in paths  # the walk found the site
    reached = []
    for path in paths:
        response = client.get(path, follow=True)
        body = (
            b"".join(response.streaming_content) if response.streaming else response.content
        ).decode(errors="replace")
        if response.status_code == 200:
            reached.append(path)
        for other in others:
            assert other.username not in body, f"{other.username} shown at {path}"
    assert "/" in reached  # the home page (or where it leads) was really looked at
    if role == "expert":
        assert {"/grade/", "/grade/summary/", "/api/grading/next/"} <= set(reached)


def test_curators_see_the_pseudonymous_names_on_the_dashboard_and_the_api(
    panel, make_user, client_for
) -> None:
    me, others, clips = panel
    client = client_for(make_user("curator", "cura-01"))

    dashboard = client.get("/dashboard/").content.decode()
    stats = client.get("/api/statistics/?bootstrap=0").json()
    clip_page = client.get(f"/clips/{clips[0].external_id}/").content.decode()

    for rater in [*others, me]:
        assert rater.username in dashboard and rater.username in clip_page
    assert sorted(e["rater"] for e in stats["experts"]) == sorted(r.username for r in [*others, me])
