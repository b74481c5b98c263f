"""A trainee's sitting in headless Chromium: five clips by keyboard, feedback after each
grade and never before, then the progress page with its plot."""

from __future__ import annotations

import pytest

from datasets.models import TraineeRating
from tests.browser_support import login, page_errors
from tests.conftest import PASSWORD
from tests.datasets.practice.conftest import run_with_predictions


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_trainee_grades_five_clips_with_feedback_after_each_then_sees_progress(
    live_server, browser_page, make_user, practice_clips
):
    practice_set = practice_clips("AAB", "BBC", "CCD", "DDE", "EEA")
    dclips = list(practice_set.clips.order_by("pk"))
    run_with_predictions(practice_set.version, {dclips[0].clip_id: [0.5, 0.3, 0.1, 0.05, 0.05]})
    trainee = make_user("trainee")
    page = browser_page
    login(page, live_server, trainee.username, PASSWORD)
    assert page.url.endswith("/practice/")  # trainees land on the practice page

    for i, (dclip, key) in enumerate(zip(dclips, "A2cD5", strict=True)):
        page.wait_for_selector("#practice-form")
        assert page.text_content("#clip-id").strip() == dclip.clip_external_id
        assert page.query_selector("#feedback") is None  # nothing before the grade
        page.wait_for_function("() => window.mersvPlayer && window.mersvPlayer.image.complete")
        page.keyboard.press(key)
        page.keyboard.press("Enter")
        page.wait_for_selector("#feedback")
        assert "/practice/feedback/" in page.url
        assert page.query_selector("#feedback svg rect.series-0") is not None  # the experts
        has_model = page.query_selector("#no-prediction") is None
        assert has_model == (i == 0)  # only the first clip has a model prediction
        assert TraineeRating.objects.filter(trainee=trainee).count() == i + 1
        page.keyboard.press("Enter")  # next clip, or the progress page after the last

    page.wait_for_selector("#progress")
    assert page.url.endswith("/practice/progress/")
    assert page.text_content("#progress-n").strip() == "5"
    assert len(page.query_selector_all("#progress svg circle")) >= 2  # share and kappa points
    graded = list(TraineeRating.objects.order_by("pk").values_list("grade", flat=True))
    assert graded == ["A", "B", "C", "D", "E"]
    assert page_errors(page) == []
