"""Study integrity: answers go only to the clip the queue holds, a grade is fixed once the
panel is seen, triage never reaches experts, trainees never become contaminated experts, and
a hidden repeat cannot be told from the texts an expert reads."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotation.grading import answers as grading
from annotation.models import AuditEvent, CannotJudge, Clip, Rating, RatingChange
from tests.grading_support import client_for, grade_offered, offer, post_json

pytestmark = pytest.mark.django_db

RATINGS = "/api/grading/ratings/"
CANNOT_JUDGE = "/api/grading/cannot-judge/"


def _grade(client: Client, clip: Clip, grade: str = "B"):
    return post_json(
        client, RATINGS, {"clip_id": clip.external_id, "grade": grade, "time_spent_ms": 9}
    )


def _graded_over(make_user, make_clip, cast_votes, votes: str, grade: str):
    """A clip the panel voted `votes` on, and a new expert's offered `grade` of it."""
    clip = make_clip()
    cast_votes(clip, votes)
    expert = make_user("expert")
    return expert, clip, grade_offered(expert, clip, grade)


def test_a_grade_for_a_clip_the_queue_did_not_offer_is_a_409_that_says_what_to_do(
    make_user, make_clip
) -> None:
    expert = make_user("expert")
    offered, chosen = make_clip(), make_clip()
    client = client_for(expert)
    served = client.get("/api/grading/next/").json()
    assert served["clip_id"] in (offered.external_id, chosen.external_id)
    other = chosen if served["clip_id"] == offered.external_id else offered
    refused = _grade(client, other)
    assert refused.status_code == 409
    assert "not the clip your queue offered you" in refused.json()["detail"]
    assert "/api/grading/next/" in refused.json()["detail"]
    skipped = post_json(
        client, CANNOT_JUDGE, {"clip_id": other.external_id, "reason": "other", "note": "blurred"}
    )
    assert skipped.status_code == 409
    assert not Rating.objects.exists() and not CannotJudge.objects.exists()
    events = AuditEvent.objects.filter(action="answer_refused", user=expert)
    assert [e.detail["answer"] for e in events.order_by("id")] == ["grade", "cannot_judge"]
    # The clip that was offered is still accepted.
    assert _grade(client, Clip.objects.get(external_id=served["clip_id"])).status_code == 201


def test_a_retired_clip_refuses_votes_even_when_it_was_held(make_user, make_clip) -> None:
    expert = make_user("expert")
    clip = make_clip()
    offer(expert, clip)
    Clip.objects.filter(pk=clip.pk).update(retired_at=timezone.now())
    refused = _grade(client_for(expert), clip)
    assert refused.status_code == 409 and "settled" in refused.json()["detail"]
    clip.refresh_from_db()
    assert clip.votes_total == 0


def test_a_clip_held_for_another_expert_refuses_my_vote(make_user, make_clip) -> None:
    holder, intruder = make_user("expert"), make_user("expert")
    clip = make_clip()
    assert grading.clip_next_for_expert(expert=holder) == clip
    refused = _grade(client_for(intruder), clip)
    assert refused.status_code == 409 and "held for another expert" in refused.json()["detail"]
    assert _grade(client_for(holder), clip).status_code == 201


def test_one_account_cannot_grade_every_clip_in_a_loop(make_user, make_clip) -> None:
    expert = make_user("expert")
    clips = [make_clip() for _ in range(5)]
    client = client_for(expert)
    codes = [_grade(client, clip).status_code for clip in clips]
    assert codes == [409] * 5
    assert sum(c.votes_total for c in Clip.objects.all()) == 0


def test_a_hold_that_lapsed_while_the_expert_looked_is_still_honoured(make_user, make_clip):
    expert = make_user("expert")
    clip = make_clip()
    assert grading.clip_next_for_expert(expert=expert) == clip
    past = timezone.now() - timedelta(minutes=1)
    from annotation.models import ClipAssignment

    ClipAssignment.objects.filter(expert=expert).update(expires_at=past)
    assert _grade(client_for(expert), clip).status_code == 201


def test_a_change_after_seeing_the_panel_is_kept_apart_and_never_counted(
    make_user, make_clip, cast_votes, settings
) -> None:
    settings.SHOW_PANEL_AFTER_VOTE = True
    expert, clip, rating = _graded_over(make_user, make_clip, cast_votes, "CCA", "E")
    assert grading.clip_panel_for_expert(expert=expert, clip=clip) == {
        "A": 1, "B": 0, "C": 2, "D": 0, "E": 1,
    }  # fmt: skip
    grading.rating_change(expert=expert, rating=rating, grade="C")
    rating.refresh_from_db()
    clip.refresh_from_db()
    assert rating.grade == "E" and (clip.votes_c, clip.votes_e) == (2, 1)
    kept = RatingChange.objects.get(rating=rating, after_panel=True)
    assert (kept.previous_grade, kept.grade) == ("E", "C")
    event = AuditEvent.objects.get(action="grade_change_after_panel")
    assert event.detail == {"grade": "C", "counted_grade": "E"}


def test_a_change_before_the_panel_is_seen_counts(make_user, make_clip, cast_votes) -> None:
    # The default: no panel after a vote.
    expert, clip, rating = _graded_over(make_user, make_clip, cast_votes, "CC", "E")
    assert grading.clip_panel_for_expert(expert=expert, clip=clip) is None
    grading.rating_change(expert=expert, rating=rating, grade="C")
    clip.refresh_from_db()
    assert (clip.votes_c, clip.votes_e) == (3, 0)


def test_the_compare_page_fixes_the_grades_it_shows(
    make_user, make_clip, cast_votes, settings
) -> None:
    settings.SHOW_PANEL_AFTER_VOTE = True
    expert, clip, rating = _graded_over(make_user, make_clip, cast_votes, "AA", "D")
    Rating.objects.filter(pk=rating.pk).update(panel_seen_at=None)
    assert client_for(expert).get(reverse("grade-compare")).status_code == 200
    grading.rating_change(expert=expert, rating=Rating.objects.get(pk=rating.pk), grade="A")
    clip.refresh_from_db()
    assert (clip.votes_a, clip.votes_d) == (2, 1)


def test_the_panel_is_hidden_after_a_vote_by_default(make_user, make_clip, cast_votes) -> None:
    from django.conf import settings

    assert settings.SHOW_PANEL_AFTER_VOTE is False
    clip = make_clip()
    cast_votes(clip, "AB")
    expert = make_user("expert")
    offer(expert, clip)
    assert _grade(client_for(expert), clip).json()["panel"] is None


def test_a_second_answer_does_not_name_the_earlier_grade(make_user, make_clip) -> None:
    expert = make_user("expert")
    clip = make_clip()
    grade_offered(expert, clip, "D")
    again = _grade(client_for(expert), clip, "A")
    assert again.status_code == 409
    assert "(D)" not in again.json()["detail"] and " D" not in again.json()["detail"]


def test_triage_is_refused_to_experts_on_the_page_and_the_api(make_user, make_clip) -> None:
    clip = make_clip()
    user = make_user("expert")
    expert = client_for(user)
    assert expert.get(reverse("api-triage", args=[clip.video_id])).status_code == 403
    assert expert.get(reverse("triage"), {"video": clip.video_id}).status_code == 403
    assert 'href="/triage/"' not in expert.get(reverse("grade")).content.decode()
    # Each try is an audit event, and nothing was predicted on the way.
    tries = AuditEvent.objects.filter(action="permission_denied", user=user)
    assert sorted(tries.values_list("object_id", flat=True)) == [
        f"/api/triage/{clip.video_id}/",
        "/triage/",
    ]
    assert not clip.predictions.exists()


def test_the_queue_never_serves_a_clip_the_account_saw_as_a_trainee(
    make_user, make_clip, cast_votes
) -> None:
    from annotation.access.accounts import user_set_role
    from datasets.practice import practice_set_create, trainee_rating_submit
    from tests.datasets.practice.conftest import version_freeze

    seen, fresh = make_clip(), make_clip()
    cast_votes(seen, "AB")
    Clip.objects.filter(pk=seen.pk).update(retired_at=timezone.now())
    seen.refresh_from_db()
    version = version_freeze([seen], name="seen-version")
    practice_set = practice_set_create(name="seen-set", version=version, created_by=None)
    person = make_user("trainee")
    trainee_rating_submit(
        trainee=person, practice_set=practice_set,
        dataset_clip=practice_set.clips.get(), grade="A", time_spent_ms=5,
    )  # fmt: skip
    # The clip reopens (a lab lowers its tolerance); the trainee is promoted to expert.
    Clip.objects.filter(pk=seen.pk).update(retired_at=None)
    user_set_role(user=person, role="expert")
    served = grading.clip_next_for_expert(expert=person)
    assert served == fresh
    assert _grade(client_for(person), seen).status_code == 409


def test_a_practice_set_takes_only_settled_clips(make_user, make_clip, cast_votes) -> None:
    from annotation.ingest.services import ServiceError
    from datasets.practice import practice_set_create
    from tests.datasets.practice.conftest import version_freeze

    open_clip, settled = make_clip(), make_clip()
    cast_votes(open_clip, "AB")
    cast_votes(settled, "CC")
    Clip.objects.filter(pk=settled.pk).update(retired_at=timezone.now())
    version = version_freeze(list(Clip.objects.order_by("pk")), name="mixed-version")
    practice_set = practice_set_create(name="mixed", version=version, created_by=None)
    assert list(practice_set.clips.values_list("clip_id", flat=True)) == [settled.pk]
    only_open = version_freeze([Clip.objects.get(pk=open_clip.pk)], name="open-version")
    with pytest.raises(ServiceError, match="settled"):
        practice_set_create(name="open", version=only_open, created_by=None)


def test_grading_the_same_clips_in_a_second_set_does_not_raise_the_score(
    make_user, make_clip, cast_votes
) -> None:
    from datasets.practice import practice_set_create, trainee_progress, trainee_rating_submit
    from tests.datasets.practice.conftest import version_freeze

    clips = []
    for votes in ("AAA", "EEE"):
        clip = make_clip()
        cast_votes(clip, votes)
        Clip.objects.filter(pk=clip.pk).update(retired_at=timezone.now())
        clips.append(Clip.objects.get(pk=clip.pk))
    version = version_freeze(clips, name="twice-version")
    first = practice_set_create(name="first", version=version, created_by=None)
    second = practice_set_create(name="second", version=version, created_by=None)
    trainee = make_user("trainee")
    for dataset_clip, grade in zip(first.clips.order_by("pk"), "EA", strict=True):  # all wrong
        trainee_rating_submit(
            trainee=trainee, practice_set=first, dataset_clip=dataset_clip, grade=grade,
            time_spent_ms=5,
        )  # fmt: skip
    before = trainee_progress(trainee=trainee)
    for dataset_clip, grade in zip(second.clips.order_by("pk"), "AE", strict=True):  # all right
        trainee_rating_submit(
            trainee=trainee, practice_set=second, dataset_clip=dataset_clip, grade=grade,
            time_spent_ms=5,
        )  # fmt: skip
    after = trainee_progress(trainee=trainee)
    assert after.overall == before.overall


def test_the_dashboard_counts_each_experts_changes_after_the_panel(
    make_user, make_clip, cast_votes, settings
) -> None:
    settings.SHOW_PANEL_AFTER_VOTE = True
    expert, clip, rating = _graded_over(make_user, make_clip, cast_votes, "AB", "E")
    grading.clip_panel_for_expert(expert=expert, clip=clip)
    grading.rating_change(expert=expert, rating=rating, grade="A")
    curator = client_for(make_user("curator"))
    rows = {r["rater"]: r for r in curator.get("/api/statistics/").json()["experts"]}
    assert rows[expert.username]["n_changed_after_panel"] == 1
    assert sum(r["n_changed_after_panel"] for r in rows.values()) == 1
    page = curator.get(reverse("dashboard")).content.decode()
    assert "Changed after panel" in page


def _pending_repeat(make_user, make_clip, settings):
    """An expert who graded two clips C three days ago and is now offered one of them again:
    (expert, the repeat, both clips)."""
    settings.REPEAT_RATE = 1.0
    settings.REPEAT_MIN_AGE_H = 24
    expert = make_user("expert")
    clips = [make_clip() for _ in range(2)]
    for clip in clips:
        grade_offered(expert, clip, "C")
    Rating.objects.filter(rater=expert).update(updated_at=timezone.now() - timedelta(days=3))
    Rating.objects.filter(rater=expert).update(created_at=timezone.now() - timedelta(days=3))
    repeat = grading.clip_next_for_expert(expert=expert)
    assert repeat in clips
    return expert, repeat, clips


def test_a_pending_hidden_repeat_is_not_in_the_experts_own_list(
    make_user, make_clip, settings
) -> None:
    expert, repeat, clips = _pending_repeat(make_user, make_clip, settings)
    client = client_for(expert)
    listed = [r["clip_id"] for r in client.get(RATINGS).json()["results"]]
    assert repeat.external_id not in listed and len(listed) == 1
    answer = _grade(client, repeat, "A")
    assert answer.status_code == 201 and answer.json()["grade"] == "A"
    assert "C" not in json.dumps(answer.json()["panel"] or {})
    listed = [r["clip_id"] for r in client.get(RATINGS).json()["results"]]
    assert sorted(listed) == sorted(c.external_id for c in clips)


def test_the_answer_to_a_hidden_repeat_reads_like_a_fresh_answer(
    make_user, make_clip, settings
) -> None:
    expert, repeat, _clips = _pending_repeat(make_user, make_clip, settings)
    client = client_for(expert)
    before = Clip.objects.get(pk=repeat.pk).votes_total
    body = _grade(client, repeat, "A").json()
    fresh_expert = make_user("expert")
    fresh_clip = make_clip()
    offer(fresh_expert, fresh_clip)
    fresh = _grade(client_for(fresh_expert), fresh_clip, "A").json()
    assert sorted(body) == sorted(fresh)
    assert body["grade"] == "A" and body["time_spent_ms"] == 9
    for stamp in ("created_at", "updated_at"):
        age = timezone.now() - timezone.datetime.fromisoformat(body[stamp])
        assert age < timedelta(minutes=1), (stamp, body[stamp])
    assert '"C"' not in json.dumps(body)
    assert Clip.objects.get(pk=repeat.pk).votes_total == before


def test_a_change_right_after_a_hidden_repeat_moves_the_repeat_answer_not_the_counts(
    make_user, make_clip, settings
) -> None:
    from annotation.models import RepeatRating

    expert, repeat, _clips = _pending_repeat(make_user, make_clip, settings)
    client = client_for(expert)
    answer = _grade(client, repeat, "A").json()
    changed = client.patch(
        f"{RATINGS}{answer['id']}/", json.dumps({"grade": "B"}), content_type="application/json"
    )
    assert changed.status_code == 200 and changed.json()["grade"] == "B"
    assert RepeatRating.objects.get(rater=expert, clip=repeat).grade == "B"
    assert Rating.objects.get(rater=expert, clip=repeat).grade == "C"
    assert Clip.objects.get(pk=repeat.pk).votes_c == 1
    assert Clip.objects.get(pk=repeat.pk).votes_b == 0


def test_cannot_judge_on_a_hidden_repeat_is_taken_like_any_other(
    make_user, make_clip, settings
) -> None:
    expert, repeat, _clips = _pending_repeat(make_user, make_clip, settings)
    client = client_for(expert)
    response = post_json(
        client, CANNOT_JUDGE, {"clip_id": repeat.external_id, "reason": "out_of_focus"}
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["reason"] == "out_of_focus" and "graded" not in json.dumps(body)
    assert not CannotJudge.objects.filter(rater=expert).exists()
    assert Rating.objects.get(rater=expert, clip=repeat).grade == "C"
    assert AuditEvent.objects.filter(action="cannot_judge", user=expert).exists()
    # The hold ended: the clip is not pending any more, and a second answer is the usual 409.
    assert _grade(client, repeat, "A").status_code == 409
    fresh_expert = make_user("expert")
    fresh_clip = make_clip()
    offer(fresh_expert, fresh_clip)
    fresh = post_json(
        client_for(fresh_expert),
        CANNOT_JUDGE,
        {"clip_id": fresh_clip.external_id, "reason": "overlapping"},
    )
    assert sorted(fresh.json()) == sorted(body)
