"""Trainee practice: blind until the grade, feedback after it, grades kept apart from the experts',
progress by session, the experts' compare page, triage and the role checks."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.aggregation import selectors
from annotation.models import AuditEvent, Clip, Rating
from datasets.models import TraineeRating
from datasets.practice import trainee_progress
from modeling.feedback import expert_comparison
from tests.conftest import PASSWORD
from tests.datasets.practice.conftest import run_with_predictions

pytestmark = pytest.mark.django_db


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _submit(client: APIClient, practice_set, clip_id: str, grade: str):
    return client.post(
        reverse("api-practice-ratings"),
        {"practice_set": practice_set.pk, "clip_id": clip_id, "grade": grade, "time_spent_ms": 900},
        format="json",
    )


def test_trainee_grades_change_no_distribution_agreement_retirement_or_export(
    make_user, practice_clips
) -> None:
    practice_set = practice_clips("AAB", "CCDE")
    before = {
        "clips": list(Clip.objects.order_by("pk").values_list(*_clip_fields())),
        "ratings": Rating.objects.count(),
        "csv": list(selectors.distributions_csv_rows()),
        "agreement": _agreement(),
    }
    client = _api(make_user("trainee"))
    for dclip in practice_set.clips.all():
        assert _submit(client, practice_set, dclip.clip_external_id, "E").status_code == 201
    assert TraineeRating.objects.count() == 2
    after = {
        "clips": list(Clip.objects.order_by("pk").values_list(*_clip_fields())),
        "ratings": Rating.objects.count(),
        "csv": list(selectors.distributions_csv_rows()),
        "agreement": _agreement(),
    }
    # Votes, retirement, the distribution export and the panel's agreement stay as they were.
    assert after == before


def _page_grade(trainee, practice_set, clip_id: str, grade: str):
    """Log the trainee in on the pages and grade ``clip_id`` with the form; (client, answer)."""
    page = Client()
    page.login(username=trainee.username, password=PASSWORD)
    answer = page.post(
        reverse("practice"), {"practice_set": practice_set.pk, "clip_id": clip_id, "grade": grade}
    )
    return page, answer


def test_a_trainee_grade_is_audited_from_the_api_and_the_page_and_a_repeat_is_not(
    make_user, practice_clips
) -> None:
    practice_set = practice_clips("AAB", "CCD")
    first, second = practice_set.clips.order_by("clip_external_id")
    trainee = make_user("trainee")
    client = _api(trainee)
    assert _submit(client, practice_set, first.clip_external_id, "B").status_code == 201
    assert _submit(client, practice_set, first.clip_external_id, "C").status_code == 409
    _, posted = _page_grade(trainee, practice_set, second.clip_external_id, "D")
    assert posted.status_code == 302
    events = list(AuditEvent.objects.filter(user=trainee).exclude(action="login_ok").order_by("id"))
    ratings = list(TraineeRating.objects.filter(trainee=trainee).order_by("id"))
    assert [(e.action, e.username) for e in events] == [("grade_submit", trainee.username)] * 2
    assert [(e.object_type, e.object_id) for e in events] == [
        ("datasets.traineerating", str(r.pk)) for r in ratings
    ]
    assert [e.detail for e in events] == [
        {"grade": "B", "training_set": "practice", "clip": first.clip_external_id},
        {"grade": "D", "training_set": "practice", "clip": second.clip_external_id},
    ]


def _clip_fields() -> tuple[str, ...]:
    return ("votes_a", "votes_b", "votes_c", "votes_d", "votes_e", "votes_total", "retired_at")


def _agreement() -> tuple:
    stats = selectors.panel_statistics(bootstrap=0)
    return (stats.n_raters, stats.n_ratings, stats.agreement.alpha, stats.agreement.fleiss_kappa)


def test_nothing_about_votes_or_the_model_shows_before_the_trainee_grades(
    make_user, practice_clips
) -> None:
    practice_set = practice_clips("AAAB")
    dclip = practice_set.clips.get()
    run_with_predictions(practice_set.version, {dclip.clip_id: [0.61, 0.2, 0.1, 0.05, 0.04]})
    trainee = make_user("trainee")
    page = Client()
    page.login(username=trainee.username, password=PASSWORD)
    html = page.get(reverse("practice")).content.decode()
    assert dclip.clip_external_id in html
    for leak in ('id="feedback"', "distribution-chart", "model (", "experts (n=", "61%"):
        assert leak not in html

    answer = _api(trainee).get(reverse("api-practice-next"))
    assert answer.status_code == 200
    assert set(answer.data) == {"practice_set", "clip", "remaining"}
    text = str(answer.data)
    for leak in ("votes", "p_a", "experts", "prediction", "0.61"):
        assert leak not in text


def test_the_feedback_after_a_grade_holds_the_experts_the_model_and_the_score(
    make_user, practice_clips
) -> None:
    practice_set = practice_clips("AAAB")  # p = 0.75 A, 0.25 B; mean 1.25
    dclip = practice_set.clips.get()
    run = run_with_predictions(practice_set.version, {dclip.clip_id: [0.6, 0.2, 0.1, 0.05, 0.05]})
    answer = _submit(_api(make_user("trainee")), practice_set, dclip.clip_external_id, "B")
    assert answer.status_code == 201
    assert answer.data["experts"]["A"] == pytest.approx(0.75)
    assert answer.data["n_experts"] == 4
    assert answer.data["score"]["share"] == pytest.approx(0.25)
    assert answer.data["score"]["deviation"] == pytest.approx(0.75)  # 2 - 1.25: harsher
    assert answer.data["prediction"]["run"] == run.pk
    assert answer.data["prediction"]["p"]["A"] == pytest.approx(0.6)
    assert set(answer.data["descriptions"]) == {"A", "B", "C", "D", "E"}


def test_without_a_model_the_feedback_page_says_no_model_prediction(
    make_user, practice_clips
) -> None:
    practice_set = practice_clips("CCD")
    dclip = practice_set.clips.get()
    trainee = make_user("trainee")
    page, done = _page_grade(trainee, practice_set, dclip.clip_external_id, "C")
    assert done.status_code == 302
    html = page.get(done["Location"]).content.decode()
    assert 'id="feedback"' in html and "No model prediction" in html
    api = _submit(_api(trainee), practice_set, dclip.clip_external_id, "D")
    assert api.status_code == 409  # one grade per clip and set


def test_another_trainees_feedback_is_not_found(make_user, practice_clips) -> None:
    practice_set = practice_clips("AB")
    dclip = practice_set.clips.get()
    first = _submit(_api(make_user("trainee")), practice_set, dclip.clip_external_id, "A")
    other = make_user("trainee")
    page = Client()
    page.login(username=other.username, password=PASSWORD)
    assert page.get(reverse("practice-feedback", args=[first.data["id"]])).status_code == 404


def test_progress_splits_sessions_after_two_idle_hours(make_user, practice_clips) -> None:
    practice_set = practice_clips("AA", "CC", "EE")
    trainee = make_user("trainee")
    client = _api(trainee)
    clips = list(practice_set.clips.order_by("pk"))
    _submit(client, practice_set, clips[0].clip_external_id, "A")
    # The first grade happened three hours ago: the next ones start a new sitting.
    TraineeRating.objects.update(
        created_at=TraineeRating.objects.get().created_at - timedelta(hours=3)
    )
    _submit(client, practice_set, clips[1].clip_external_id, "D")
    _submit(client, practice_set, clips[2].clip_external_id, "E")
    assert list(TraineeRating.objects.order_by("pk").values_list("session", flat=True)) == [1, 2, 2]
    progress = trainee_progress(trainee=trainee)
    assert [s.performance.n for s in progress.sessions] == [1, 2]
    assert progress.sessions[1].performance.tendency == pytest.approx(0.5)
    assert progress.overall.confusion[3][2] == 1
    assert not progress.qualified  # fewer than TRAINEE_MIN_CLIPS clips
    page = Client()
    page.login(username=trainee.username, password=PASSWORD)
    html = page.get(reverse("practice-progress")).content.decode()
    assert "<circle" in html and "Your scores by session" in html


def test_a_trainee_qualifies_over_the_kappa_bar_after_enough_clips(
    settings, make_user, practice_clips
) -> None:
    settings.TRAINEE_MIN_CLIPS = 2
    settings.TRAINEE_PASS_KAPPA = 0.5
    practice_set = practice_clips("AA", "EE")
    trainee = make_user("trainee")
    client = _api(trainee)
    for dclip, grade in zip(practice_set.clips.order_by("pk"), "AE", strict=True):
        _submit(client, practice_set, dclip.clip_external_id, grade)
    assert trainee_progress(trainee=trainee).qualified
    curator = make_user("curator")
    page = Client()
    page.login(username=curator.username, password=PASSWORD)
    html = page.get(reverse("trainee-list")).content.decode()
    assert trainee.username in html and "<td>yes</td>" in html


def test_the_compare_page_shows_only_clips_the_expert_graded(
    make_user, make_clip, cast_votes, settings
) -> None:
    from tests.grading_support import grade_offered

    settings.SHOW_PANEL_AFTER_VOTE = True

    expert = make_user("expert")
    mine, far, unseen = make_clip(), make_clip(), make_clip()
    cast_votes(mine, "AAB")
    cast_votes(far, "AAA")
    cast_votes(unseen, "CCC")
    grade_offered(expert, mine, "A", time_spent_ms=1)
    grade_offered(expert, far, "E", time_spent_ms=1)
    rows = expert_comparison(expert=expert)
    assert [r.clip.pk for r in rows] == [far.pk, mine.pk]  # the larger disagreement first
    assert rows[0].gap == pytest.approx(5 - 2.0)  # panel AAAE: mean 2
    page = Client()
    page.login(username=expert.username, password=PASSWORD)
    html = page.get(reverse("grade-compare")).content.decode()
    assert mine.external_id in html and far.external_id in html
    assert unseen.external_id not in html


def test_triage_ranks_a_samples_clips_by_predicted_good_grades(
    make_user, make_clip, practice_clips
) -> None:
    from annotation.models import Video

    practice_set = practice_clips("AB")
    first, second = make_clip(), make_clip()
    Clip.objects.filter(pk=second.pk).update(video=first.video, target_index=1)
    run = run_with_predictions(
        practice_set.version,
        {first.pk: [0.1, 0.1, 0.3, 0.3, 0.2], second.pk: [0.5, 0.3, 0.1, 0.05, 0.05]},
    )
    video = Video.objects.get(pk=first.video_id)
    answer = _api(make_user("curator")).get(reverse("api-triage", args=[video.pk]), {"run": run.pk})
    assert answer.status_code == 200
    assert [c["clip_id"] for c in answer.data["clips"]] == [second.external_id, first.external_id]
    assert [c["rank"] for c in answer.data["clips"]] == [1, 2]
    assert answer.data["clips"][0]["p_good"] == pytest.approx(0.8)
    for role in ("trainee", "expert"):  # a prediction never reaches someone who may grade
        refused = _api(make_user(role)).get(reverse("api-triage", args=[video.pk]))
        assert refused.status_code == 403


def test_experts_cannot_use_the_trainee_api_and_trainees_cannot_grade(
    make_user, practice_clips, make_clip
) -> None:
    practice_set = practice_clips("AB")
    expert = _api(make_user("expert"))
    assert expert.get(reverse("api-practice-next")).status_code == 403
    assert _submit(expert, practice_set, "x", "A").status_code == 403
    trainee = _api(make_user("trainee"))
    assert trainee.get(reverse("api-grading-next")).status_code == 403
    posted = trainee.post(
        reverse("api-grading-ratings"),
        {"clip_id": make_clip().external_id, "grade": "A", "time_spent_ms": 1},
        format="json",
    )
    assert posted.status_code == 403
    page = Client()
    page.login(username=make_user("trainee").username, password=PASSWORD)
    assert page.get(reverse("grade-compare")).status_code == 403
    assert page.get(reverse("triage")).status_code == 403
    assert page.get(reverse("home")).url == reverse("practice")


def test_open_practice_set_opens_a_set_once(practice_clips) -> None:
    from django.core.management import call_command

    from datasets.models import TrainingSet

    version = practice_clips("AB", "CD").version
    for _ in range(2):  # the second run reuses the set (seed_demo runs it every time)
        call_command("open_practice_set", "demo practice", version.name, "--if-missing")
    practice_set = TrainingSet.objects.get(name="demo practice")
    assert practice_set.clips.count() == 2


def test_the_triage_page_shows_the_ranked_cards(make_user, make_clip, practice_clips) -> None:
    practice_set = practice_clips("AB")
    clip = make_clip()
    run = run_with_predictions(practice_set.version, {clip.pk: [0.7, 0.1, 0.1, 0.05, 0.05]})
    page = Client()
    page.login(username=make_user("curator").username, password=PASSWORD)
    html = page.get(reverse("triage"), {"video": clip.video_id, "run": run.pk}).content.decode()
    assert clip.external_id in html and "#1" in html and "p(A or B) 80%" in html


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("/train/", "/practice/"),
        ("/train/feedback/7/", "/practice/feedback/7/"),
        ("/train/progress/", "/practice/progress/"),
        ("/train/trainees/", "/practice/trainees/"),
    ],
)
def test_an_old_train_address_redirects_for_good_to_its_practice_page(old, new) -> None:  # type: ignore[no-untyped-def]
    answer = Client().get(old + "?set=3")
    assert answer.status_code == 301 and answer["Location"] == new + "?set=3"


def test_a_bookmarked_train_page_opens_the_practice_page(make_user, practice_clips) -> None:
    practice_set = practice_clips("AB")
    page = Client()
    page.login(username=make_user("trainee").username, password=PASSWORD)
    answer = page.get(f"/train/?set={practice_set.pk}", follow=True)
    assert answer.redirect_chain == [(f"/practice/?set={practice_set.pk}", 301)]
    assert f"Practice: {practice_set.name}" in answer.content.decode()
