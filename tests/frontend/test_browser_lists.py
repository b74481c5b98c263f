"""Headless Chromium on the lists: the clip list sorts, filters, searches and pages at the
paper's scale (615 clips, 40 experts); the compare page replays a clip in the frame-exact
player; triage cards show each sperm's first frame and kinematics with units.

Screenshots at 1366x768 go to MERSV_SCREENSHOTS (default: MERSV_VAR_DIR/screenshots)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings

from annotation.aggregation.clip_list import ClipListQuery, clip_list_queryset
from annotation.models import Clip, Video
from tests.annotation.grading.conftest import frame_level
from tests.browser_support import login, page_errors
from tests.clip_list_support import panel_clips_bulk
from tests.conftest import PASSWORD
from tests.datasets.practice.conftest import run_with_predictions
from tests.grading_support import grade_offered

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _shots() -> Path:
    folder = Path(os.environ.get("MERSV_SCREENSHOTS") or Path(settings.VAR_DIR) / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _at_1366(page) -> None:
    """The screenshots' size; generous waits, as the test machines' two cores are shared."""
    page.set_viewport_size({"width": 1366, "height": 768})
    page.set_default_timeout(90_000)


def _column(page, name: str) -> list[str]:
    return [cell.text_content().strip() for cell in page.query_selector_all(f"td[data-col={name}]")]


def _ids_shown(page) -> list[str]:
    return [
        row.get_attribute("data-clip")
        for row in page.query_selector_all("#clip-table tr[data-clip]")
    ]


def test_the_clip_list_sorts_filters_searches_and_pages_615_clips(
    live_server, browser_page, make_user
) -> None:
    panel_clips_bulk()
    curator = make_user("curator")
    page = browser_page
    _at_1366(page)
    login(page, live_server, curator.username, PASSWORD)
    page.goto(f"{live_server.url}/clips/")
    assert page.text_content("#clip-count").strip() == "(615)"
    assert len(_ids_shown(page)) == 50

    # Sort by mean grade: ascending, then descending on a second click; the URL keeps it.
    page.click("th[data-sort=mean] a")
    page.wait_for_url("**/clips/?sort=mean")
    means = [float(v) for v in _column(page, "mean")]
    assert means == sorted(means) and means[0] >= 1.0
    page.click("th[data-sort=mean] a")
    page.wait_for_url("**/clips/?sort=-mean")
    assert page.get_attribute("th[data-sort=mean]", "aria-sort") == "descending"
    want = list(
        clip_list_queryset(ClipListQuery(sort="-mean")).values_list("external_id", flat=True)
    )
    assert _ids_shown(page) == want[:50]
    page.screenshot(path=str(_shots() / "clip-list-sorted.png"))

    # Next page, the sort kept: clips 51..100 of the same order.
    page.click("nav.pager a[rel=next]")
    page.wait_for_url("**/clips/?sort=-mean&page=2")
    assert _ids_shown(page) == want[50:100]

    # Filter: open clips whose mode is C with at least 20 votes and agreement of 0.3 or more.
    page.select_option("select[name=mode]", "C")
    page.select_option("select[name=retired]", "no")
    page.fill("input[name=votes_min]", "20")
    page.fill("input[name=agreement_min]", "0.3")
    page.click("#clip-filters button[type=submit]")
    page.wait_for_url("**/clips/?retired=no&votes_min=20&mode=C&agreement_min=0.3&sort=-mean")
    query = ClipListQuery(retired=False, votes_min=20, mode="C", agreement_min=0.3, sort="-mean")
    selected = list(clip_list_queryset(query).values_list("external_id", flat=True))
    assert 0 < len(selected) < 615
    assert page.text_content("#clip-count").strip() == f"({len(selected)} selected)"
    assert _ids_shown(page) == selected[:50]
    assert set(_column(page, "mode")) == {"C"}
    assert all(int(v) >= 20 for v in _column(page, "votes"))
    assert all(float(v) >= 0.3 for v in _column(page, "agreement"))
    page.screenshot(path=str(_shots() / "clip-list-filtered.png"))

    # The address is the state: opened afresh, it shows the same selection.
    bookmarked = page.url
    page.goto(f"{live_server.url}/clips/")
    page.goto(bookmarked)
    assert _ids_shown(page) == selected[:50]

    # Search finds one clip by its id, case-insensitively, filters cleared.
    page.click("#clear-filters")
    page.fill("input[name=q]", "l0321")
    page.press("input[name=q]", "Enter")
    page.wait_for_url("**/clips/?q=l0321&sort=-mean")
    assert _ids_shown(page) == ["L0321"]
    assert page.get_attribute("#clip-table a:text-is('L0321')", "href") == "/clips/L0321/"

    # A bad parameter: a 400 page that says what was wrong, no server error.
    answer = page.goto(f"{live_server.url}/clips/?sort=colour&votes_min=many")
    assert answer is not None and answer.status == 400
    assert page.is_visible("#clip-list-error a:text-is('Show all clips')")
    message = page.text_content("ul.messages li.error")
    assert "sort must be one of clip, patient" in message
    assert "votes_min must be a whole number of 0 or more, not 'many'" in message
    page.screenshot(path=str(_shots() / "clip-list-bad-parameter.png"))
    assert [e for e in page_errors(page) if "status of 400" not in e] == []


def test_the_compare_page_replays_a_graded_clip_frame_by_frame(
    live_server,
    browser_page,
    make_user,
    make_clip,
    cast_votes,
    settings,
) -> None:
    settings.SHOW_PANEL_AFTER_VOTE = True
    expert = make_user("expert")
    first, second = make_clip(n_frames=8), make_clip(n_frames=6)
    cast_votes(first, "AAB")
    cast_votes(second, "DDE")
    grade_offered(expert, first, "E")  # far from the panel: the first row
    grade_offered(expert, second, "D")
    page = browser_page
    _at_1366(page)
    login(page, live_server, expert.username, PASSWORD)
    page.goto(f"{live_server.url}/grade/compare/")
    page.wait_for_function("() => window.mersvPlayer && window.mersvPlayer.image.complete")

    def corner_level() -> int:
        # The test filmstrip fills each frame with its own grey level; its corner shows it.
        return page.evaluate(
            "() => document.getElementById('crop-canvas').getContext('2d')"
            ".getImageData(2, 2, 1, 1).data[0]"
        )

    assert page.text_content("#replay-clip").strip() == first.external_id
    assert page.text_content("#frame-total").strip() == "8"
    assert page.text_content("#frame-no").strip() == "1"  # no autoplay: frame 1 waits
    assert corner_level() == frame_level(0)
    page.click("#btn-fwd")
    assert page.text_content("#frame-no").strip() == "2"
    assert corner_level() == frame_level(1)
    page.keyboard.press("ArrowRight")
    assert page.text_content("#frame-no").strip() == "3"
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    assert page.text_content("#frame-no").strip() == "1"
    assert page.is_disabled("#btn-fullfield")  # the full-field video is a curator's file

    # Replay the second row's clip: it loads and plays; pausing and stepping work on it.
    page.click(f"tr[data-clip={second.external_id}] button.replay")
    assert page.text_content("#replay-clip").strip() == second.external_id
    assert page.text_content("#frame-total").strip() == "6"
    page.wait_for_function("() => Number(document.getElementById('frame-no').textContent) > 2")
    assert page.text_content("#btn-play").strip() == "Pause"
    page.click("#btn-play")
    shown = int(page.text_content("#frame-no"))
    page.click("#btn-fwd")
    assert int(page.text_content("#frame-no")) == shown % 6 + 1
    assert corner_level() == frame_level(shown % 6)
    assert "replaying" in (page.get_attribute(f"tr[data-clip={second.external_id}]", "class") or "")
    page.screenshot(path=str(_shots() / "grade-compare-replay.png"))
    assert page_errors(page) == []


def test_triage_cards_show_the_first_frame_and_kinematics_with_units(
    live_server,
    browser_page,
    make_user,
    make_clip,
    practice_clips,
) -> None:
    practice_set = practice_clips("AB")
    first, second = make_clip(n_frames=5), make_clip(n_frames=5)
    Clip.objects.filter(pk=second.pk).update(
        video=first.video, target_index=1, vcl=87.25, speed=87.25
    )
    run = run_with_predictions(
        practice_set.version,
        {first.pk: [0.1, 0.1, 0.3, 0.3, 0.2], second.pk: [0.6, 0.2, 0.1, 0.05, 0.05]},
    )
    video = Video.objects.get(pk=first.video_id)
    page = browser_page
    _at_1366(page)
    login(page, live_server, make_user("curator").username, PASSWORD)
    page.goto(f"{live_server.url}/triage/?video={video.pk}&run={run.pk}")
    cards = page.query_selector_all("#triage article[data-clip]")
    assert [c.get_attribute("data-clip") for c in cards] == [second.external_id, first.external_id]
    for card in cards:
        image = card.query_selector(".first-frame img")
        image.scroll_into_view_if_needed()
        page.wait_for_function("(img) => img.complete", arg=image)
        assert image.evaluate("(img) => img.naturalWidth") == 150  # the crop's width
        # The box shows one square tile: frame 0 of the filmstrip, not the whole strip.
        box = card.query_selector(".first-frame").bounding_box()
        assert box is not None and box["width"] == box["height"] == 120
        assert image.evaluate("(img) => img.naturalHeight") == 5 * 150
        names = [th.text_content().strip() for th in card.query_selector_all(".kin th")]
        assert names == ["VCL", "VSL", "VAP", "LIN", "STR", "WOB", "ALH", "BCF"]  # no SPEED
        units = {
            row.query_selector("th").text_content().strip(): row.query_selector(
                ".unit"
            ).text_content()
            for row in card.query_selector_all(".kin tr")
        }
        assert units == {
            "VCL": "µm/s", "VSL": "µm/s", "VAP": "µm/s", "LIN": "", "STR": "", "WOB": "",
            "ALH": "µm", "BCF": "Hz",
        }  # fmt: skip
    assert cards[0].query_selector(".kin tr td.num").text_content().strip() == "87.3"  # VCL
    page.screenshot(path=str(_shots() / "triage-cards.png"))
    assert page_errors(page) == []
