"""The grading API and pages: who may use them, CSRF, errors, and blind grading."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from annotation.grading import field_guide
from annotation.models import Rating

pytestmark = pytest.mark.django_db

NEXT = "/api/grading/next/"
RATINGS = "/api/grading/ratings/"
CANNOT_JUDGE = "/api/grading/cannot-judge/"
PROGRESS = "/api/grading/progress/"
FIELD_GUIDE = "/api/field-guide/"
BLIND_CLIP_FIELDS = {
    "id",
    "clip_id",
    "n_frames",
    "crop_size",
    "fps",
    "filmstrip_url",
    "crop_url",
    "preview_url",
    "track",
    "video_width",
    "video_height",
}


def _client_for(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def _post(client: Client, url: str, body: dict, method: str = "post"):
    if url in (RATINGS, CANNOT_JUDGE) and method == "post" and "clip_id" in body:
        _offer_to_client(client, str(body["clip_id"]))
    return getattr(client, method)(url, json.dumps(body), content_type="application/json")


def _offer_to_client(client: Client, clip_id: str) -> None:
    """Hold the clip for the logged-in expert, as the queue does when it offers it."""
    from django.contrib.auth import get_user_model

    from annotation.models import Clip
    from tests.grading_support import offer

    user_id = client.session.get("_auth_user_id")
    clip = Clip.objects.filter(external_id=clip_id).first()
    if user_id is not None and clip is not None:
        offer(get_user_model().objects.get(pk=user_id), clip)


def _submit(client: Client, clip_id: str, grade: str = "B", **extra):
    body = {"clip_id": clip_id, "grade": grade, "time_spent_ms": 900, **extra}
    return _post(client, RATINGS, body)


# --- roles and CSRF --------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["trainee", "curator", None])
def test_only_experts_may_use_the_grading_api_and_page(make_user, make_clip, role):
    clip = make_clip()
    client = _client_for(make_user(role) if role else None)
    requests = [
        client.get(NEXT),
        client.get(RATINGS),
        client.get(PROGRESS),
        _submit(client, clip.external_id),
        _post(client, CANNOT_JUDGE, {"clip_id": clip.external_id, "reason": "out_of_focus"}),
        _post(client, f"{RATINGS}1/", {"grade": "A"}, method="patch"),
    ]
    assert [r.status_code for r in requests] == [403] * len(requests)
    assert not Rating.objects.exists()
    for page in ("/grade/", "/grade/summary/"):
        response = client.get(page)
        if role is None:
            assert response.status_code == 302 and "/login/" in response["Location"]
        else:
            assert response.status_code == 403


def test_a_grade_posted_without_the_csrf_token_is_refused(make_user, make_clip):
    clip = make_clip()
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("expert"))
    refused = _submit(client, clip.external_id)
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    assert not Rating.objects.exists()
    client.get("/grade/")  # the page sets the csrftoken cookie the page's script sends back
    token = client.cookies["csrftoken"].value
    accepted = client.post(
        RATINGS,
        json.dumps({"clip_id": clip.external_id, "grade": "B", "time_spent_ms": 5}),
        content_type="application/json",
        HTTP_X_CSRFTOKEN=token,
    )
    assert accepted.status_code == 201


def test_experts_are_sent_from_home_to_the_grading_page(make_user):
    response = _client_for(make_user("expert")).get("/")
    assert response.status_code == 302 and response["Location"] == "/grade/"


# --- the operations ----------------------------------------------------------------------------


def test_next_returns_the_held_clip_and_204_when_the_queue_is_empty(make_user, make_clip):
    clip = make_clip()
    client = _client_for(make_user("expert"))
    first = client.get(NEXT)
    assert first.status_code == 200
    assert first.json()["clip_id"] == clip.external_id
    assert first.json()["filmstrip_url"].endswith("filmstrip.png")
    assert client.get(NEXT).json()["id"] == clip.pk
    assert _submit(client, clip.external_id).status_code == 201
    assert client.get(NEXT).status_code == 204
    assert client.get(PROGRESS).json() == {"rated": 1, "cannot_judge": 0, "remaining": 0}


def test_a_second_submit_for_the_same_clip_is_a_409_naming_the_rating(make_user, make_clip):
    clip = make_clip()
    client = _client_for(make_user("expert"))
    created = _submit(client, clip.external_id, "A")
    again = _submit(client, clip.external_id, "C")
    assert again.status_code == 409
    assert again.json()["rating_id"] == created.json()["id"]
    assert "already graded" in again.json()["detail"]
    assert list(Rating.objects.values_list("grade", flat=True)) == ["A"]


def test_bad_input_gets_a_400_that_says_what_was_wrong(make_user, make_clip):
    clip = make_clip()
    client = _client_for(make_user("expert"))
    bad_grade = _submit(client, clip.external_id, "F")
    assert bad_grade.status_code == 400
    assert bad_grade.json()["grade"] == ["grade 'F' is not one of A..E"]
    bad_telemetry = _submit(client, clip.external_id, telemetry={"keystrokes": 3})
    assert bad_telemetry.status_code == 400
    assert "unknown telemetry key(s) 'keystrokes'" in bad_telemetry.json()["telemetry"][0]
    too_long = _submit(client, clip.external_id, time_spent_ms=-5)
    assert too_long.status_code == 400 and "time_spent_ms" in too_long.json()
    assert _submit(client, "no-such-clip").status_code == 404
    reason = _post(client, CANNOT_JUDGE, {"clip_id": clip.external_id, "reason": "bored"})
    assert reason.status_code == 400 and "reason" in reason.json()
    assert not Rating.objects.exists()


def test_an_expert_changes_their_own_grade_but_gets_404_for_anothers(make_user, make_clip):
    clip = make_clip()
    owner, other = _client_for(make_user("expert")), _client_for(make_user("expert"))
    rating_id = _submit(owner, clip.external_id, "B").json()["id"]
    assert _post(other, f"{RATINGS}{rating_id}/", {"grade": "E"}, method="patch").status_code == 404
    changed = _post(owner, f"{RATINGS}{rating_id}/", {"grade": "D"}, method="patch")
    assert changed.status_code == 200 and changed.json()["grade"] == "D"
    rating = Rating.objects.get(pk=rating_id)
    assert rating.grade == "D"
    assert list(rating.changes.values_list("previous_grade", "grade")) == [("", "B"), ("B", "D")]


def test_my_ratings_lists_only_my_own(make_user, make_clip, cast_votes):
    mine, theirs = make_clip(), make_clip()
    cast_votes(theirs, "EE")
    client = _client_for(make_user("expert"))
    _submit(client, mine.external_id, "C")
    listed = client.get(RATINGS).json()
    assert listed["count"] == 1
    assert [(r["clip_id"], r["grade"]) for r in listed["results"]] == [(mine.external_id, "C")]


def test_cannot_judge_through_the_api_is_not_a_grade(make_user, make_clip):
    clip = make_clip()
    client = _client_for(make_user("expert"))
    answer = _post(client, CANNOT_JUDGE, {"clip_id": clip.external_id, "reason": "wrong_target"})
    assert answer.status_code == 201 and answer.json()["reason"] == "wrong_target"
    assert client.get(PROGRESS).json() == {"rated": 0, "cannot_judge": 1, "remaining": 0}
    assert client.get(RATINGS).json()["count"] == 0
    clip.refresh_from_db()
    assert clip.votes_total == 0
    assert _submit(client, clip.external_id).status_code == 409


def test_cannot_judge_other_needs_a_short_note_and_stores_it_stripped(make_user, make_clip):
    from annotation.models import CannotJudge

    clip = make_clip()
    client = _client_for(make_user("expert"))
    body = {"clip_id": clip.external_id, "reason": "other"}
    missing = _post(client, CANNOT_JUDGE, body)
    assert missing.status_code == 400
    assert "say in a few words why" in missing.json()["detail"]
    blank = _post(client, CANNOT_JUDGE, {**body, "note": "   "})
    assert blank.status_code == 400 and "say in a few words why" in blank.json()["detail"]
    too_long = _post(client, CANNOT_JUDGE, {**body, "note": "x" * 201})
    assert too_long.status_code == 400
    assert "201 characters; keep it to 200" in too_long.json()["detail"]
    not_other = _post(client, CANNOT_JUDGE, {**body, "reason": "out_of_focus", "note": "blur"})
    assert not_other.status_code == 400
    assert "only with the reason 'other'" in not_other.json()["detail"]
    assert not CannotJudge.objects.exists()  # nothing half-written by the refusals

    answer = _post(client, CANNOT_JUDGE, {**body, "note": "  two tails, one head \n"})
    assert answer.status_code == 201 and answer.json()["note"] == "two tails, one head"
    stored = CannotJudge.objects.get()
    assert (stored.reason, stored.note) == ("other", "two tails, one head")
    assert _post(client, CANNOT_JUDGE, {**body, "note": "x" * 200}).status_code == 409  # answered


def test_a_curator_sees_the_cannot_judge_note_on_the_clip_page(make_user, make_clip):
    from tests.grading_support import cannot_judge_offered

    clip = make_clip()
    cannot_judge_offered(make_user("expert"), clip, reason="other", note="<b>debris</b> over it")
    page = _client_for(make_user("curator")).get(f"/clips/{clip.external_id}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "&lt;b&gt;debris&lt;/b&gt; over it" in html and "<b>debris</b>" not in html


def test_the_grading_operations_are_in_the_openapi_schema(make_user):
    schema = _client_for(make_user("expert")).get("/api/schema/?format=json").json()
    for path, method in [
        (NEXT, "get"),
        (RATINGS, "get"),
        (RATINGS, "post"),
        ("/api/grading/ratings/{id}/", "patch"),
        (CANNOT_JUDGE, "post"),
        (PROGRESS, "get"),
    ]:
        assert method in schema["paths"][path], (path, method)


# --- blind grading -----------------------------------------------------------------------------

LEAKY_KEY = re.compile(r"vote|panel|distribution|predict|^p_[A-E]$", re.IGNORECASE)


def _json_leaks(value: object, *, own_grades: set[str]) -> list[str]:
    """Keys that would reveal votes, and grades that are not the expert's own."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            if LEAKY_KEY.search(str(key)) and item is not None:
                found.append(f"key {key!r}")
            if key == "grade" and item not in own_grades:
                found.append(f"grade {item!r}")
            found += _json_leaks(item, own_grades=own_grades)
    elif isinstance(value, list):
        for item in value:
            found += _json_leaks(item, own_grades=own_grades)
    return found


def _expert_reachable_paths(clip, video) -> list[str]:
    """Every GET route of the project without parameters, plus the clip's own pages."""
    paths: list[str] = []

    def walk(patterns, prefix: str) -> None:
        for p in patterns:
            route = str(p.pattern)
            if isinstance(p, URLResolver):
                if not route.startswith("admin"):
                    walk(p.url_patterns, prefix + route)
            elif isinstance(p, URLPattern) and "<" not in route and "(" not in route:
                paths.append("/" + prefix + route)

    walk(get_resolver().url_patterns, "")
    paths = [p for p in paths if p not in ("/logout/",)]
    return [
        *paths,
        f"/api/clips/{clip.external_id}/",
        f"/clips/{clip.external_id}/",
        f"/api/videos/{video.pk}/",
        f"/videos/{video.pk}/",
    ]


@pytest.mark.parametrize("show_panel", [True, False])
def test_nothing_an_expert_can_reach_reveals_the_panel_before_they_vote(
    make_user, make_clip, cast_votes, settings, show_panel
):
    settings.SHOW_PANEL_AFTER_VOTE = show_panel
    clip = make_clip()
    others = cast_votes(clip, "CCCCCCCEEA")  # 7 C, 2 E, 1 A by ten other experts
    other_names = [r.rater.username for r in others]
    expert = make_user("expert", username="blind-expert")
    client = _client_for(expert)
    reference = make_clip(retired=True)  # a settled clip in the field guide
    field_guide.reference_clip_add(curator=make_user("curator"), clip=reference, grade="C")

    served = 0
    for path in _expert_reachable_paths(clip, clip.video):
        response = client.get(path)
        assert response.status_code < 500, path
        if response.status_code != 200 or path.startswith("/api/schema"):
            continue
        body = response.content.decode()
        served += 1
        for name in other_names:
            assert name not in body, (path, name)
        if path == FIELD_GUIDE:
            # The guide names grades by design (a curator's label of a settled clip); it never
            # lists the clip under test, nor any vote.
            assert clip.external_id not in body and reference.external_id in body
            assert _json_leaks(json.loads(body), own_grades=set("ABCDE")) == [], path
        elif response["Content-Type"].startswith("application/json"):
            assert _json_leaks(json.loads(body), own_grades=set()) == [], path
        else:
            assert not re.search(r"votes|vote_counts|expert rating", body), path
    assert served >= 4  # at least the grading page, next, my ratings and progress

    page = client.get("/grade/").content.decode()
    clip_json = re.search(r'id="grading-clip"[^>]*>(.*?)</script>', page, re.S).group(1)
    assert set(json.loads(clip_json)) == BLIND_CLIP_FIELDS
    assert set(client.get(NEXT).json()) == BLIND_CLIP_FIELDS


@pytest.mark.parametrize("show_panel", [True, False])
def test_after_voting_the_panel_is_shown_only_when_the_lab_allows_it(
    make_user, make_clip, cast_votes, settings, show_panel
):
    settings.SHOW_PANEL_AFTER_VOTE = show_panel
    clip = make_clip()
    cast_votes(clip, "CCCEA")
    client = _client_for(make_user("expert"))
    submitted = _submit(client, clip.external_id, "C").json()
    expected = {"A": 1, "B": 0, "C": 4, "D": 0, "E": 1}
    assert submitted["panel"] == (expected if show_panel else None)
    changed = _post(client, f"{RATINGS}{submitted['id']}/", {"grade": "B"}, method="patch").json()
    # Once the panel was seen the counted grade is fixed: the change is kept apart, uncounted.
    assert changed["panel"] == (expected if show_panel else None)
    assert changed["grade"] == ("C" if show_panel else "B")
    clip.refresh_from_db()
    assert (clip.votes_b, clip.votes_c) == ((0, 4) if show_panel else (1, 3))
    # Lists and the queue stay blind either way: my ratings carry my grades only.
    listed = client.get(RATINGS).json()["results"]
    assert _json_leaks(listed, own_grades={changed["grade"]}) == []


def test_the_session_summary_page_shows_this_sessions_answers(make_user, make_clip):
    client = _client_for(make_user("expert"))  # logging in starts the session
    for grade in "AAC":
        assert _submit(client, make_clip().external_id, grade).status_code == 201
    _post(client, CANNOT_JUDGE, {"clip_id": make_clip().external_id, "reason": "overlapping"})
    page = client.get("/grade/summary/").content.decode()
    assert 'id="summary-graded">3<' in page
    assert 'id="summary-cannot-judge">1<' in page
    assert 'id="summary-count-A">2<' in page and 'id="summary-count-C">1<' in page
    assert 'id="summary-median">0.9&nbsp;s<' in page  # every grade took 900 ms


def test_an_answer_can_bring_the_next_clip_and_progress_in_one_round_trip(make_user, make_clip):
    first, second, third = make_clip(), make_clip(), make_clip()
    client = _client_for(make_user("expert"))
    assert _submit(client, first.external_id, next=False).json()["next"] is None
    graded = _submit(client, second.external_id, next=True).json()
    assert set(graded["next"]["clip"]) == BLIND_CLIP_FIELDS
    assert graded["next"]["clip"]["clip_id"] == third.external_id
    assert graded["next"]["progress"] == {"rated": 2, "cannot_judge": 0, "remaining": 1}
    skipped = _post(
        client,
        CANNOT_JUDGE,
        {"clip_id": third.external_id, "reason": "out_of_focus", "next": True},
    ).json()
    assert skipped["next"] == {
        "clip": None,
        "progress": {"rated": 2, "cannot_judge": 1, "remaining": 0},
    }
