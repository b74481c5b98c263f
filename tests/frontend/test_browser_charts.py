"""Headless Chromium at 1366x768: every chart of the dashboard, the session summary, the
trainee's progress, the run page, the compare page and triage has an axis with ticks and a
legend, is drawn at its full size, and is reachable by keyboard; the expert table sorts, the
heatmap has a colour scale and Fleiss' kappa an interval.

Each test saves full-page screenshots under MERSV_VAR_DIR/screenshots/ (never in git) for a
person to look at."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from django.conf import settings
from django.utils import timezone

from annotation.access.accounts import user_create
from datasets.models import DatasetClip
from datasets.practice import trainee_rating_submit
from modeling.models import EpochRecord, TrainingRun
from tests.browser_support import login, page_errors
from tests.conftest import PASSWORD
from tests.datasets.practice.conftest import run_with_predictions
from tests.grading_support import grade_offered

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

VIEWPORT = {"width": 1366, "height": 768}


def _sized(page: Page) -> Page:
    """The page at 1366x768; a generous timeout, as these pages load many charts on a
    machine that may be busy."""
    page.set_viewport_size(VIEWPORT)
    page.set_default_timeout(60_000)
    return page


def _screenshot(page: Page, name: str) -> Path:
    folder = Path(settings.VAR_DIR) / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def _assert_charts_read_well(page: Page, *, at_least: int) -> int:
    """Every chart figure: an axis (.axis-x or .axis-y) with at least two labels, a visible
    legend, drawn at (nearly) its own size so its 10-11 px text is not shrunk, and inside the
    1366 px window. Returns the number of charts."""
    figures = page.locator("figure.chart-figure")
    n = figures.count()
    assert n >= at_least, f"{n} charts, expected at least {at_least}"
    for i in range(n):
        figure = figures.nth(i)
        what = figure.locator("svg").first.get_attribute("aria-label")
        axes = figure.locator("svg .axis-x, svg .axis-y")
        assert axes.count() >= 1, f"no axis in {what}"
        assert axes.first.locator("text").count() >= 2, f"no tick labels on {what}'s axis"
        legend = figure.locator(".legend").first
        assert legend.count() == 1 and legend.is_visible(), f"no legend in {what}"
        assert (legend.text_content() or "").strip(), f"an empty legend in {what}"
        svg = figure.locator("svg").first
        box = svg.bounding_box()
        intrinsic = float(svg.get_attribute("width") or 0)
        assert box is not None and intrinsic > 0
        assert box["width"] >= 0.9 * intrinsic, f"{what} shrunk to {box['width']:.0f} px"
        assert box["x"] >= 0 and box["x"] + box["width"] <= VIEWPORT["width"], what
    scroll_width = page.evaluate("() => document.documentElement.scrollWidth")
    assert scroll_width <= VIEWPORT["width"], "the page scrolls sideways at 1366 px"
    return n


def _tab_until(page: Page, wanted: str, *, presses: int = 80) -> str:
    """Press Tab until the focused element's aria-label contains `wanted`; returns it."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        label = page.evaluate(
            "() => document.activeElement && document.activeElement.getAttribute('aria-label')"
        )
        if label and wanted in label:
            return str(label)
    raise AssertionError(f"no focusable chart mark says {wanted!r} within {presses} Tabs")


def _column(page: Page, table: str, index: int) -> list[str]:
    return [
        (cell.text_content() or "").strip()
        for cell in page.locator(f"{table} tbody tr td:nth-child({index})").all()
    ]


def test_the_curator_dashboard_charts_have_axes_legends_a_colour_scale_and_intervals(
    make_clips,
    make_experts,
    add_votes,
    live_server,
    browser_page,
) -> None:
    clips = make_clips(8)
    raters = make_experts(5)
    # Experts with different workloads (a space skips that expert), so sorting shows.
    for clip, grades in zip(
        clips,
        ["AABBC", "BBBCC", "CCDD ", "DEEE ", "ABCD ", "AAB  ", "BBC  ", "E    "],
        strict=True,
    ):
        add_votes(clip, grades, raters)
    user_create(username="cura-01", role="curator", password=PASSWORD)
    page = _sized(browser_page)
    login(page, live_server, "cura-01", PASSWORD)
    page.goto(f"{live_server.url}/dashboard/")

    # retirement, mean/std, modes, votes per grade, agreement, votes per clip, per expert
    assert _assert_charts_read_well(page, at_least=7) >= 7
    # The heatmap's colour scale: shades from 1 clip up to the fullest cell, labelled.
    scale = page.locator("svg.heatmap .legend.colour-scale")
    assert scale.locator("rect.scale-step").count() >= 1
    ticks = [t.strip() for t in scale.locator("text.tick").all_text_contents()]
    darkest = page.locator("svg.heatmap rect.heat-cell:not(.scale-step) title").all_text_contents()
    fullest = max(int(t.rsplit(": ", 1)[1].split()[0]) for t in darkest)
    assert ticks[0] == "1" and ticks[-1] == str(fullest)
    # Bar charts: a y-axis with round count ticks and the count written on each bar.
    modes = page.locator("#modes figure.chart-figure").first
    y_labels = modes.locator(".axis-y text.tick").all_text_contents()
    assert y_labels[0] == "0" and len(y_labels) >= 2
    assert modes.locator("text.value").count() >= 1
    # Both agreement statistics have an interval (whiskers), and the table says so.
    rows = page.locator("#agreement .interval-row")
    assert rows.count() == 2
    for k in range(2):
        assert rows.nth(k).locator("line.whisker").count() == 3  # bar and two caps
        assert "% CI" in (rows.nth(k).get_attribute("aria-label") or "")
    assert "95% CI" in page.text_content("#kappa-interval")
    # Keyboard: Tab reaches the bars, each saying what it counts.
    assert _tab_until(page, "clips").endswith("clips")

    # Every expert is in the table beside the chart, and the table sorts by its headers.
    assert sorted(_column(page, "#expert-votes", 1)) == sorted(r.username for r in raters)
    page.click("#expert-votes thead th:nth-child(2) button")
    ascending = [int(v) for v in _column(page, "#expert-votes", 2)]
    assert ascending == sorted(ascending) and ascending[0] < ascending[-1]
    assert page.get_attribute("#expert-votes thead th:nth-child(2)", "aria-sort") == "ascending"
    page.click("#expert-votes thead th:nth-child(2) button")
    descending = [int(v) for v in _column(page, "#expert-votes", 2)]
    assert descending == sorted(ascending, reverse=True)
    page.click("#expert-votes thead th:nth-child(1) button")
    names = _column(page, "#expert-votes", 1)
    assert names == sorted(names)
    # The full experts table below sorts too (kappa column, numbers, blanks last).
    page.click("table.experts thead th:nth-child(5) button")
    kappas = [v for v in _column(page, "table.experts", 5) if v != "—"]
    assert [float(v) for v in kappas] == sorted(float(v) for v in kappas)

    page.evaluate("() => window.scrollTo(0, 0)")
    _screenshot(page, "dashboard")
    assert page_errors(page) == []


def test_the_run_page_and_triage_charts_have_axes_and_legends(
    practice_clips,
    make_clip,
    live_server,
    browser_page,
) -> None:
    practice_set = practice_clips("AAB", "BBC", "CCD", "DDE", "EEA", "ABB")
    version = practice_set.version
    dclips = list(DatasetClip.objects.filter(version=version).order_by("pk"))
    shares = [0.5, 0.2, 0.15, 0.1, 0.05]
    # Each clip gets the same shares, rotated: clip k puts 50% on grade k.
    rotated = {d.clip_id: shares[-k:] + shares[:-k] if k else shares for k, d in enumerate(dclips)}
    run = run_with_predictions(version, rotated)
    for fold in (0, 1):
        EpochRecord.objects.bulk_create(
            EpochRecord(
                run=run,
                fold=fold,
                epoch=e,
                train_loss=1 / e,
                val_loss=1.2 / e + 0.05,
                best_epoch=4,
                seconds=1.0,
            )
            for e in range(1, 6)
        )
    points = [[d.clip_external_id, k * 0.3, k % 3 - 1.0, d.mode] for k, d in enumerate(dclips)]
    TrainingRun.objects.filter(pk=run.pk).update(
        pca={"0": {"points": points, "explained": [0.6, 0.2]}},
        started_at=timezone.now(),
    )
    user_create(username="cura-02", role="curator", password=PASSWORD)
    page = _sized(browser_page)
    login(page, live_server, "cura-02", PASSWORD)

    page.goto(f"{live_server.url}/training/{run.pk}/")
    # learning curves, HI by grade mode, PCA: the model figures, each with axes and a legend
    _assert_charts_read_well(page, at_least=3)
    assert page.locator("#learning-curves .axis-y").count() == 2  # one panel per fold
    _screenshot(page, "training_detail")

    clip = dclips[0].clip
    page.goto(f"{live_server.url}/triage/?video={clip.video_id}&run={run.pk}")
    assert _assert_charts_read_well(page, at_least=1) == page.locator("#triage article").count()
    label = page.get_attribute("#triage article svg.chart", "aria-label") or ""
    assert "predicted" in label and "A 50%" in label  # one keyboard stop reads the shares
    _screenshot(page, "triage")
    assert page_errors(page) == []


def test_an_experts_summary_and_compare_charts_have_axes_legends_and_counts(
    make_clip,
    cast_votes,
    live_server,
    browser_page,
    settings,
) -> None:
    settings.SHOW_PANEL_AFTER_VOTE = True
    expert = user_create(username="expert-07", role="expert", password=PASSWORD)
    clips = [make_clip() for _ in range(4)]
    for clip, panel in zip(clips, ["AAB", "BBC", "CCD", "AAA"], strict=True):
        cast_votes(clip, panel)
    page = _sized(browser_page)
    login(page, live_server, "expert-07", PASSWORD)
    expert.refresh_from_db()  # the session counts answers after this login
    for clip, grade in zip(clips, "ABBE", strict=True):
        grade_offered(expert, clip, grade, time_spent_ms=1500)

    page.goto(f"{live_server.url}/grade/summary/")
    _assert_charts_read_well(page, at_least=1)
    chart = page.locator("figure.chart-figure").first
    # The counts are on the bars (A 1, B 2, E 1) and on a y-axis from 0.
    assert chart.locator("text.value").all_text_contents() == ["1", "2", "0", "0", "1"]
    assert chart.locator(".axis-y text.tick").first.text_content() == "0"
    assert "total 4" in (chart.locator(".legend").text_content() or "")
    assert _tab_until(page, "B: 2 clips") == "B: 2 clips"
    _screenshot(page, "grade_summary")

    page.goto(f"{live_server.url}/grade/compare/")
    n = _assert_charts_read_well(page, at_least=4)
    assert n == page.locator("#compare-table tr[data-clip]").count()
    legend = page.locator("#compare-table .legend").first.text_content() or ""
    assert "panel" in legend and "your grade" in legend
    _screenshot(page, "grade_compare")
    assert page_errors(page) == []


def test_a_trainees_one_session_progress_chart_reads_as_labelled_values(
    practice_clips,
    make_user,
    live_server,
    browser_page,
    settings,
) -> None:
    settings.TRAINEE_PASS_KAPPA = 0.6
    practice_set = practice_clips("AAB", "BBC", "CCD", "DDE")
    trainee = make_user("trainee")
    for dclip, grade in zip(practice_set.clips.order_by("pk"), "ABDD", strict=True):
        trainee_rating_submit(
            trainee=trainee, practice_set=practice_set, dataset_clip=dclip, grade=grade,
            time_spent_ms=900,
        )  # fmt: skip
    page = _sized(browser_page)
    login(page, live_server, trainee.username, PASSWORD)
    page.goto(f"{live_server.url}/practice/progress/")

    _assert_charts_read_well(page, at_least=1)
    chart = page.locator("#progress figure.chart-figure")
    # One session: each series is a level mark with its value written, not a lone dot.
    assert chart.locator("line.level").count() == 2
    values = chart.locator("text.value").all_text_contents()
    assert len(values) == 2 and all(0 <= float(v) <= 1 for v in values)
    assert chart.locator("svg.chart line.reference").count() == 1  # the qualifying kappa
    assert "kappa needed to qualify (0.60)" in (chart.locator(".legend").text_content() or "")
    assert "session" in (chart.locator(".axis-x").text_content() or "")
    assert "weighted kappa, session 1" in _tab_until(page, "weighted kappa")
    _screenshot(page, "practice_progress")
    assert page_errors(page) == []


def test_a_40_expert_dashboard_reads_at_1366_with_every_expert_in_the_table(
    make_clips, make_experts, add_votes, live_server, browser_page
) -> None:
    clips = make_clips(30)
    raters = make_experts(40)
    for k, clip in enumerate(clips):
        # Expert j skips clip k when (j + k) % 4 == 0: votes per expert differ.
        grades = "".join(
            " " if (j + k) % 4 == 0 else "ABCDE"[(j // 8 + k) % 5] for j in range(len(raters))
        )
        add_votes(clip, grades, raters)
    user_create(username="cura-40", role="curator", password=PASSWORD)
    page = _sized(browser_page)
    login(page, live_server, "cura-40", PASSWORD)
    page.goto(f"{live_server.url}/dashboard/")

    _assert_charts_read_well(page, at_least=7)
    chart = page.locator("#ratings-per-expert figure.chart-figure")
    assert chart.locator("rect.bar").count() == 40
    # The sparse expert labels under the bars never overlap one another.
    boxes = [t.bounding_box() for t in chart.locator(".axis-x text.tick").all()]
    assert len(boxes) >= 5
    for left, right in itertools.pairwise(sorted(boxes, key=lambda b: b["x"])):
        assert left["x"] + left["width"] <= right["x"], "expert labels overlap"
    # Every expert's name is in the table beside it (scrolling), and Tab reaches each bar.
    assert sorted(_column(page, "#expert-votes", 1)) == sorted(r.username for r in raters)
    assert page.locator("#ratings-per-expert rect.bar[tabindex='0']").count() == 40
    page.evaluate("() => document.getElementById('ratings-per-expert').scrollIntoView()")
    _screenshot(page, "dashboard_40_experts")
    assert page_errors(page) == []
