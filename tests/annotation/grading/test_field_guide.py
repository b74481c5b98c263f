"""The field guide: curators choose settled clips as examples of a grade; experts read them."""

from __future__ import annotations

import json
import random

import pytest
from django.test import Client

from annotation.grading import field_guide
from annotation.grading.repeats import repeat_candidate_for_expert
from annotation.models import AuditEvent, Clip, ReferenceClip
from tests.grading_support import grade_offered

pytestmark = pytest.mark.django_db

GUIDE = "/api/field-guide/"
REFERENCES = "/api/reference-clips/"


def _client(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def _add(client: Client, clip: Clip, grade: str = "B", note: str = ""):
    body = {"clip_id": clip.external_id, "grade": grade, "note": note}
    return client.post(REFERENCES, json.dumps(body), content_type="application/json")


def _guide_clip_ids(client: Client) -> dict[str, list[str]]:
    response = client.get(GUIDE)
    assert response.status_code == 200
    return {s["grade"]: [r["clip_id"] for r in s["references"]] for s in response.json()}


def test_a_curator_adds_a_settled_clip_and_experts_see_it_under_its_grade_without_votes(
    make_user, make_clip, cast_votes
):
    clip = make_clip()
    cast_votes(clip, "BBC")
    Clip.objects.filter(pk=clip.pk).update(retired_at="2026-01-02T00:00:00Z")
    curator = _client(make_user("curator"))
    added = _add(curator, clip, "B", note="  steady, straight  ")
    assert added.status_code == 201
    assert added.json()["grade"] == "B" and added.json()["note"] == "steady, straight"

    expert = _client(make_user("expert"))
    response = expert.get(GUIDE)
    sections = response.json()
    assert [s["grade"] for s in sections] == list("ABCDE")
    assert _guide_clip_ids(expert) == {"A": [], "B": [clip.external_id], "C": [], "D": [], "E": []}
    [reference] = sections[1]["references"]
    assert reference["filmstrip_url"].endswith("filmstrip.png") and reference["n_frames"] == 8
    assert reference["note"] == "steady, straight"
    # Only the curator's label: no vote counts, distribution or retirement in the answer.
    body = response.content.decode().lower()
    for leak in ("vote", "panel", "distribution", "retired", '"p_'):
        assert leak not in body
    assert AuditEvent.objects.filter(action="reference_clip_add").count() == 1


def test_a_clip_still_in_the_grading_pool_is_refused_with_a_clear_error(make_user, make_clip):
    clip = make_clip()  # open: experts may still be asked to grade it
    refused = _add(_client(make_user("curator")), clip)
    assert refused.status_code == 409
    assert "still in the grading pool" in refused.json()["detail"]
    assert "only settled (retired) clips" in refused.json()["detail"]
    assert not ReferenceClip.objects.exists()


def test_experts_and_trainees_cannot_choose_reference_clips(make_user, make_clip):
    clip = make_clip(retired=True)
    reference = field_guide.reference_clip_add(curator=make_user("curator"), clip=clip, grade="A")
    expert, trainee = make_user("expert"), make_user("trainee")
    for user in (expert, trainee):
        client = _client(user)
        assert _add(client, make_clip(retired=True)).status_code == 403
        assert client.delete(f"{REFERENCES}{reference.pk}/").status_code == 403
        assert client.get(REFERENCES).status_code == 403
    with pytest.raises(field_guide.NotCuratorError, match="only curators"):
        field_guide.reference_clip_add(curator=expert, clip=make_clip(retired=True), grade="A")
    assert ReferenceClip.objects.count() == 1
    # The guide itself is for experts, not for trainees (their practice sets are settled
    # clips too: the guide would hand them the answer).
    assert _client(expert).get(GUIDE).status_code == 200
    assert _client(trainee).get(GUIDE).status_code == 403


def test_a_clip_is_in_the_guide_once_and_a_bad_grade_or_long_note_is_refused(make_user, make_clip):
    clip = make_clip(retired=True)
    curator = _client(make_user("curator"))
    assert _add(curator, clip, "F").json()["detail"] == "grade 'F' is not one of A..E"
    too_long = _add(curator, clip, "A", note="x" * 201)
    assert too_long.status_code == 400 and "keep it to 200" in too_long.json()["detail"]
    assert _add(curator, clip, "A").status_code == 201
    again = _add(curator, clip, "C")
    assert again.status_code == 409 and "in the field guide already" in again.json()["detail"]
    assert list(ReferenceClip.objects.values_list("grade", flat=True)) == ["A"]
    assert _add(curator, Clip(external_id="x"), "A").status_code == 404


def test_a_clip_reopened_after_it_was_chosen_leaves_the_guide_until_it_settles_again(
    make_user, make_clip
):
    clip = make_clip(retired=True)
    field_guide.reference_clip_add(curator=make_user("curator"), clip=clip, grade="D")
    expert = _client(make_user("expert"))
    assert _guide_clip_ids(expert)["D"] == [clip.external_id]
    Clip.objects.filter(pk=clip.pk).update(retired_at=None)  # back in the grading pool
    assert _guide_clip_ids(expert)["D"] == []
    Clip.objects.filter(pk=clip.pk).update(retired_at="2026-02-01T00:00:00Z")
    assert _guide_clip_ids(expert)["D"] == [clip.external_id]


def test_a_curator_removes_a_reference_clip(make_user, make_clip):
    clip = make_clip(retired=True)
    curator = make_user("curator")
    reference = field_guide.reference_clip_add(curator=curator, clip=clip, grade="E")
    client = _client(make_user("curator"))  # curators share the guide
    listed = client.get(REFERENCES).json()
    assert [(r["clip_id"], r["chosen_by"]) for r in listed] == [
        (clip.external_id, curator.username)
    ]
    assert client.delete(f"{REFERENCES}{reference.pk}/").status_code == 204
    assert client.delete(f"{REFERENCES}{reference.pk}/").status_code == 404
    assert not ReferenceClip.objects.exists()
    assert AuditEvent.objects.filter(action="reference_clip_remove").count() == 1


def test_the_api_refuses_a_curator_s_post_without_the_csrf_token(make_user, make_clip):
    client = _client(make_user("curator"), enforce_csrf_checks=True)
    assert _add(client, make_clip(retired=True)).status_code == 403
    assert not ReferenceClip.objects.exists()


def test_the_curator_s_clip_page_adds_and_removes_a_reference_clip(make_user, make_clip):
    settled, open_clip = make_clip(retired=True), make_clip()
    client = _client(make_user("curator"))
    url = f"/clips/{settled.external_id}/"
    page = client.get(url).content.decode()
    assert 'id="btn-reference-add"' in page
    added = client.post(
        f"{url}reference/", {"action": "add", "grade": "C", "note": "a <i>fine</i> C"}, follow=True
    )
    html = added.content.decode()
    assert added.status_code == 200 and "in the guide as grade C" in html
    assert 'id="reference-grade">C<' in html and "a &lt;i&gt;fine&lt;/i&gt; C" in html
    assert ReferenceClip.objects.get().grade == "C"
    removed = client.post(f"{url}reference/", {"action": "remove"}, follow=True)
    assert "no longer in the field guide" in removed.content.decode()
    assert not ReferenceClip.objects.exists()

    # An open clip offers no form, and a forged post is refused with the reason.
    assert (
        'id="btn-reference-add"'
        not in client.get(f"/clips/{open_clip.external_id}/").content.decode()
    )
    forged = client.post(
        f"/clips/{open_clip.external_id}/reference/", {"action": "add", "grade": "A"}, follow=True
    )
    assert "still in the grading pool" in forged.content.decode()
    assert not ReferenceClip.objects.exists()
    # The page form needs its CSRF token like every other.
    strict = _client(make_user("curator"), enforce_csrf_checks=True)
    assert strict.post(f"{url}reference/", {"action": "add", "grade": "C"}).status_code == 403


def test_a_reference_clip_is_never_offered_as_a_hidden_repeat(make_user, make_clip, settings):
    settings.REPEAT_RATE = 1.0
    settings.REPEAT_MIN_AGE_H = 0
    expert = make_user("expert")
    graded = [make_clip() for _ in range(2)]
    for clip in graded:
        grade_offered(expert, clip, "B")
    Clip.objects.filter(pk=graded[0].pk).update(retired_at="2026-01-02T00:00:00Z")
    field_guide.reference_clip_add(
        curator=make_user("curator"), clip=Clip.objects.get(pk=graded[0].pk), grade="B"
    )
    offered = {repeat_candidate_for_expert(expert=expert, rng=random.Random(i)) for i in range(20)}
    assert offered == {graded[1]}
