"""The grading page in headless Chromium, driven with the keyboard only."""

from __future__ import annotations

import pytest

from annotation.ingest.services import clip_vote_counts_recount
from annotation.models import Rating, RatingChange
from tests.annotation.grading.conftest import frame_level
from tests.browser_support import login, page_errors
from tests.conftest import PASSWORD

N_FRAMES = 6
# Predicates are functions, not expression strings: the page's CSP forbids eval().
SHOWN = "() => document.body.dataset.clipReady"


def _wait_for_new_clip(page, previous: str | None) -> str:
    """Wait until a clip other than `previous` is drawn; its clip id."""
    page.wait_for_function(
        "(prev) => document.body.dataset.clipReady && document.body.dataset.clipReady !== prev",
        arg=previous,
    )
    return page.evaluate(SHOWN)


def _wait_for_clip(page, clip_id: str) -> None:
    page.wait_for_function("(id) => document.body.dataset.clipReady === id", arg=clip_id)


def _frame_shown(page) -> tuple[int, int]:
    """(the frame counter, the grey level of the canvas's top-left pixel)."""
    return page.evaluate(
        """() => [Number(document.getElementById("frame-no").textContent),
                  document.getElementById("crop-canvas").getContext("2d")
                    .getImageData(2, 2, 1, 1).data[0]]"""
    )


def _dismiss_tutorial(page) -> None:
    """The first visit of an account opens the tutorial; Enter closes it."""
    page.wait_for_selector("#tutorial", state="visible")
    page.keyboard.press("Enter")
    page.wait_for_selector("#tutorial", state="hidden")


def _selected(page) -> list[str]:
    return page.eval_on_selector_all(
        ".grade-option[aria-pressed=true]", "els => els.map(e => e.dataset.grade)"
    )


def _progress_rated(page) -> int:
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
    _dismiss_tutorial(page)
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


# --- the page an expert can trust: focus, target marker, field guide, notes, tutorial -------


def _land(page, live_server, expert) -> str:
    """Log in, close the first-visit tutorial; the clip id shown."""
    login(page, live_server, expert.username, PASSWORD)
    clip_id = _wait_for_new_clip(page, None)
    _dismiss_tutorial(page)
    return clip_id


def _paused_frame(page) -> int:
    return page.evaluate("() => window.mersvPlayer.playing ? -1 : window.mersvPlayer.frame")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_keys_step_and_grade_after_the_speed_and_zoom_dropdowns_are_used_with_the_mouse(
    live_server, browser_page, make_user, make_clip
):
    expert = make_user("expert")
    for _ in range(6):
        make_clip(n_frames=N_FRAMES)
    page = browser_page
    clip_id = _land(page, live_server, expert)
    graded = []
    for grade, speed, zoom in zip("ABCDE", ["0.5", "2", "0.25", "1.5", "1"], "31423", strict=True):
        for select, value in (("#speed", speed), ("#zoom", zoom)):
            page.click(select)  # the mouse opens the dropdown...
            page.select_option(select, value)  # ...and picks an option
            # An arrow key steps exactly one frame: the select neither eats it nor changes.
            page.keyboard.press("ArrowRight")  # pauses playback (and steps)
            before = _paused_frame(page)
            page.keyboard.press("ArrowRight")
            assert _paused_frame(page) == (before + 1) % N_FRAMES
            frame, level = _frame_shown(page)
            assert frame == _paused_frame(page) + 1 and level == frame_level(frame - 1)
            assert page.input_value(select) == value
        assert page.evaluate("() => document.getElementById('crop-canvas').width") == 150 * int(
            zoom
        )
        page.keyboard.press(grade.lower())
        assert _selected(page) == [grade]
        page.keyboard.press("Enter")
        graded.append((clip_id, grade))
        clip_id = _wait_for_new_clip(page, clip_id)
    page.wait_for_function("() => document.getElementById('progress-rated').textContent === '5'")
    ratings = Rating.objects.filter(rater=expert)
    assert sorted((r.clip.external_id, r.grade) for r in ratings) == sorted(graded)
    first = ratings.get(clip__external_id=graded[0][0])
    assert 0.5 in first.telemetry["speeds_used"] and first.telemetry["zoom_used"] is True
    assert page_errors(page) == []


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_target_marker_sits_on_the_crop_centre_and_t_toggles_it_remembered(
    live_server, browser_page, make_user, make_clip
):
    expert = make_user("expert")
    make_clip(n_frames=N_FRAMES)
    page = browser_page
    _land(page, live_server, expert)
    assert page.is_visible("#target-marker")
    for zoom in ("2", "4"):
        page.select_option("#zoom", zoom)
        canvas = page.locator("#crop-canvas").bounding_box()
        marker = page.locator("#target-marker").bounding_box()
        # The crop's centre pixel 75 of 150 (the tracked centre), whatever the zoom.
        centre = 75.5 * int(zoom)
        assert abs(marker["x"] + marker["width"] / 2 - canvas["x"] - centre) < 1
        assert abs(marker["y"] + marker["height"] / 2 - canvas["y"] - centre) < 1
        assert marker["width"] < canvas["width"] / 4  # small: it leaves the crop to see
    page.keyboard.press("t")
    assert page.is_hidden("#target-marker")
    page.reload()  # remembered in this browser
    page.wait_for_function(SHOWN)
    assert page.is_hidden("#tutorial") and page.is_hidden("#target-marker")
    page.keyboard.press("t")
    assert page.is_visible("#target-marker")
    assert "T" in page.inner_text(".keys-help")  # the key is in the shortcut help
    assert page_errors(page) == []


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_g_opens_the_field_guide_of_settled_reference_clips_and_esc_closes_it(
    live_server, browser_page, make_user, make_clip
):
    from annotation.grading.field_guide import reference_clip_add
    from annotation.models import Clip

    curator, expert = make_user("curator"), make_user("expert")
    make_clip(n_frames=N_FRAMES)  # the expert's queue
    example_a, example_c, reopened = (make_clip(n_frames=N_FRAMES, retired=True) for _ in "123")
    reference_clip_add(curator=curator, clip=example_a, grade="A", note="fast & straight")
    reference_clip_add(curator=curator, clip=example_c, grade="C")
    reference_clip_add(curator=curator, clip=reopened, grade="C")
    Clip.objects.filter(pk=reopened.pk).update(retired_at=None)  # back in the grading pool

    page = browser_page
    _land(page, live_server, expert)
    page.keyboard.press("g")
    page.wait_for_selector("#field-guide-body[data-loaded]")
    assert page.is_visible("#field-guide")
    shown = page.eval_on_selector_all(
        ".guide-section", "els => els.map(s => [s.dataset.grade, [...s.querySelectorAll("
        "'.guide-clip')].map(f => f.dataset.clipId)])",
    )  # fmt: skip
    assert shown == [
        ["A", [example_a.external_id]], ["B", []], ["C", [example_c.external_id]], ["D", []],
        ["E", []],
    ]  # fmt: skip
    assert "fast & straight" in page.inner_text(".guide-section[data-grade=A]")
    assert "No reference clip" in page.inner_text(".guide-section[data-grade=B]")
    # The reference clips play: their canvases move on through the frames.
    page.wait_for_function(
        "() => [...document.querySelectorAll('.guide-clip canvas')]"
        ".every(c => Number(c.dataset.frame) > 0)"
    )
    # While the guide is open, grade keys wait; Esc closes it and they work again.
    page.keyboard.press("c")
    assert _selected(page) == []
    page.keyboard.press("Escape")
    assert page.is_hidden("#field-guide")
    page.keyboard.press("c")
    assert _selected(page) == ["C"]
    assert page_errors(page) == []


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_cannot_judge_other_takes_a_note_typed_from_the_keyboard(
    live_server, browser_page, make_user, make_clip
):
    from annotation.models import CannotJudge

    expert = make_user("expert")
    for _ in range(2):
        make_clip(n_frames=N_FRAMES)
    page = browser_page
    clip_id = _land(page, live_server, expert)
    page.keyboard.press("x")
    page.keyboard.press("4")  # "Other"
    page.wait_for_selector("#cannot-judge-note", state="visible")
    assert page.evaluate("() => document.activeElement.id") == "cannot-judge-note"
    # Letters that are shortcuts elsewhere (grades, U, X, T, G, F) are typing here.
    page.keyboard.type("a tuft")
    assert _selected(page) == [] and page.is_visible("#target-marker")
    page.keyboard.press("Escape")  # cancels: nothing recorded, the box closes
    assert page.is_hidden("#cannot-judge-other")
    assert not CannotJudge.objects.exists()

    page.keyboard.press("x")
    page.keyboard.press("4")
    page.wait_for_selector("#cannot-judge-note", state="visible")
    assert page.input_value("#cannot-judge-note") == ""
    note = "debris covers the head, cannot grade"
    page.keyboard.type(note)
    assert _selected(page) == [] and page.is_hidden("#field-guide")
    page.keyboard.press("Enter")
    _wait_for_new_clip(page, clip_id)
    page.wait_for_function(
        "() => document.getElementById('progress-cannot-judge').textContent === '1'"
    )
    answer = CannotJudge.objects.get(rater=expert)
    assert (answer.clip.external_id, answer.reason, answer.note) == (clip_id, "other", note)
    assert page_errors(page) == []


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_tutorial_shows_on_the_first_visit_and_not_on_the_second(
    live_server, browser_page, make_user, make_clip
):
    expert = make_user("expert")
    make_clip(n_frames=N_FRAMES)
    page = browser_page
    login(page, live_server, expert.username, PASSWORD)
    page.wait_for_function(SHOWN)
    assert page.is_visible("#tutorial")
    assert "Grading in five steps" in page.inner_text("#tutorial")
    page.keyboard.press("c")  # the tutorial is modal: grade keys wait until it is closed
    assert _selected(page) == []
    page.keyboard.press("Enter")
    assert page.is_hidden("#tutorial")

    page.goto(f"{live_server.url}/grade/")
    page.wait_for_function(SHOWN)
    assert page.is_hidden("#tutorial")
    page.keyboard.press("c")
    assert _selected(page) == ["C"]
    page.click("#btn-tutorial")  # reopened from the shortcut help
    assert page.is_visible("#tutorial")
    page.keyboard.press("Escape")
    assert page.is_hidden("#tutorial")
    assert page_errors(page) == []
