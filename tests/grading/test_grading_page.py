"""The grading page in headless Chromium, driven with the keyboard only."""

from __future__ import annotations

import pytest

from annotation.models import Rating, RatingChange
from annotation.services import clip_vote_counts_recount
from tests.browser_support import login, page_errors
from tests.conftest import PASSWORD
from tests.grading.conftest import frame_level

N_FRAMES = 6
# Predicates are functions, not expression strings: the page's CSP forbids eval().
SHOWN = "() => document.body.dataset.clipReady"


def _wait_for_new_clip(page, previous: str | None) -> str:  # type: ignore[no-untyped-def]
    """Wait until a clip other than `previous` is drawn; its clip id."""
    page.wait_for_function(
        "(prev) => document.body.dataset.clipReady && document.body.dataset.clipReady !== prev",
        arg=previous,
    )
    return page.evaluate(SHOWN)


def _wait_for_clip(page, clip_id: str) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function("(id) => document.body.dataset.clipReady === id", arg=clip_id)


def _frame_shown(page) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """(the frame counter, the grey level of the canvas's top-left pixel)."""
    return page.evaluate(
        """() => [Number(document.getElementById("frame-no").textContent),
                  document.getElementById("crop-canvas").getContext("2d")
                    .getImageData(2, 2, 1, 1).data[0]]"""
    )


def _selected(page) -> list[str]:  # type: ignore[no-untyped-def]
    return page.eval_on_selector_all(
        ".grade-option[aria-pressed=true]", "els => els.map(e => e.dataset.grade)"
    )


def _progress_rated(page) -> int:  # type: ignore[no-untyped-def]
    return int(page.text_content("#progress-rated"))


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_expert_grades_five_clips_by_keyboard_then_undoes_and_changes_a_grade(
    live_server, browser_page, make_user, make_clip
):
    expert = make_user("expert")
    for _ in range(7):
        make_clip(n_frames=N_FRAMES)
    page = browser_page
    login(page, live_server, expert.username, PASSWORD)
    assert page.url.endswith("/grade/")  # experts land on the grading page
    clip_id = _wait_for_new_clip(page, None)
    assert page.text_content("#clip-id") == clip_id
    assert _progress_rated(page) == 0
    for g in "ABCDE":  # the five grades are described on the page
        assert page.is_visible(f".grade-option[data-grade={g}] .grade-description")

    # Frame stepping: the first arrow press pauses playback; then every press moves exactly
    # one frame, wrapping at both ends, and the canvas shows that frame.
    page.keyboard.press("ArrowRight")
    start, _ = _frame_shown(page)
    for i in range(1, N_FRAMES + 2):
        page.keyboard.press("ArrowRight")
        frame, level = _frame_shown(page)
        assert frame == (start - 1 + i) % N_FRAMES + 1
        assert level == frame_level(frame - 1)
    for _ in range(N_FRAMES + 1):
        before, _ = _frame_shown(page)
        page.keyboard.press("ArrowLeft")
        frame, level = _frame_shown(page)
        assert frame == (before - 2) % N_FRAMES + 1
        assert level == frame_level(frame - 1)

    # Five clips graded with letters and digits; the queue moves on after each Enter.
    graded: list[tuple[str, str]] = []
    for key, grade in zip(["a", "2", "C", "4", "e"], "ABCDE", strict=True):
        page.keyboard.press(key)
        assert _selected(page) == [grade]
        page.keyboard.press("Enter")
        next_id = _wait_for_new_clip(page, clip_id)
        graded.append((clip_id, grade))
        clip_id = next_id
        page.wait_for_function(
            "(n) => document.getElementById('progress-rated').textContent === n",
            arg=str(len(graded)),
        )
    assert len({c for c, _ in graded} | {clip_id}) == 6  # six different clips

    # U first undoes a chosen, unsubmitted grade...
    page.keyboard.press("c")
    assert _selected(page) == ["C"]
    page.keyboard.press("u")
    assert _selected(page) == []
    # ...then reopens the clip graded last, with its grade; 1 and Enter change it to A.
    page.keyboard.press("u")
    last_id, last_grade = graded[-1]
    _wait_for_clip(page, last_id)
    assert page.is_visible("#mode-badge")
    assert _selected(page) == [last_grade]
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    _wait_for_clip(page, clip_id)  # back to the queue's clip
    assert page.is_hidden("#mode-badge")
    assert "your grade is now A" in page.text_content("#grading-status")
    assert page.text_content("#last-grade") == "A"
    assert _progress_rated(page) == 5
    assert page_errors(page) == []  # no script errors, no CSP refusals

    ratings = {r.clip.external_id: r for r in Rating.objects.filter(rater=expert)}
    assert {c: r.grade for c, r in ratings.items()} == {**dict(graded), last_id: "A"}
    changes = RatingChange.objects.filter(rating=ratings[last_id])
    assert list(changes.values_list("previous_grade", "grade")) == [("", "E"), ("E", "A")]
    assert RatingChange.objects.filter(rating__rater=expert).count() == 6
    first = ratings[graded[0][0]]
    assert first.telemetry["frames_stepped"] == 2 * N_FRAMES + 3
    assert first.telemetry["plays"] >= 1 and first.time_spent_ms > 0
    assert clip_vote_counts_recount() == 0  # the counts equal a recount of the ratings


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_curators_clip_page_plays_with_the_same_player(
    live_server, browser_page, make_user, make_clip
):
    curator = make_user("curator")
    clip = make_clip(n_frames=N_FRAMES)
    page = browser_page
    login(page, live_server, curator.username, PASSWORD)
    page.goto(f"{live_server.url}/clips/{clip.external_id}/")
    page.wait_for_function(
        "() => document.getElementById('crop-canvas').getContext('2d')"
        ".getImageData(2, 2, 1, 1).data[0] > 0"
    )
    assert page.text_content("#frame-total") == str(N_FRAMES)
    page.keyboard.press("ArrowRight")
    start, _ = _frame_shown(page)
    page.keyboard.press("ArrowLeft")
    frame, level = _frame_shown(page)
    assert frame == (start - 2) % N_FRAMES + 1 and level == frame_level(frame - 1)
    assert page_errors(page) == []
