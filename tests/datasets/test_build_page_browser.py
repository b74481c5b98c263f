"""Headless Chromium on the build form and the version page: the live count follows the filters
and equals what the build then freezes, a failed build's name is built again, and the
datasheet's tables render as tables."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.core.management import call_command

from annotation.access.accounts import user_create
from annotation.models import Rating
from datasets.models import DatasetVersion
from tests.browser_support import login, page_errors
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]
SHOTS = Path(os.environ.get("MERSV_SCREENSHOTS", "/tmp/mersv-screenshots"))


def _count(page, cell: str) -> int:
    return int(page.text_content(f"#preview-{cell}") or "-1")


def _wait_for_build(page) -> None:
    # dataset.js reloads the page once the worker has finished the build.
    page.wait_for_selector("#content-hash, .error", timeout=120_000)


def test_the_live_count_follows_the_filters_and_equals_what_the_build_freezes(
    celery_worker_process, live_server, browser_page, synthetic_small: Path
) -> None:
    call_command("import_dataset", str(synthetic_small), "--no-progress")
    user_create(username="cur", role="curator", password=PASSWORD)
    left_out = sorted(set(Rating.objects.values_list("rater__username", flat=True)))[:3]
    page = browser_page
    page.set_default_timeout(30_000)  # two shared cores, a worker and a live server
    login(page, live_server, "cur", PASSWORD)
    page.goto(f"{live_server.url}/datasets/")
    page.wait_for_function("() => document.getElementById('preview-clips').textContent === '6'")
    assert _count(page, "votes") == Rating.objects.count()
    # Leaving three experts out lowers the votes; the count follows without a reload.
    page.fill("#id_exclude_raters", ", ".join(left_out))
    expected = Rating.objects.exclude(rater__username__in=left_out).count()
    page.wait_for_function(
        f"() => document.getElementById('preview-votes').textContent === '{expected}'"
    )
    page.fill("#id_n_folds", "2")
    page.wait_for_function(
        "() => document.querySelectorAll('#preview-folds tbody tr').length === 2"
    )
    preview = {cell: _count(page, cell) for cell in ("clips", "votes", "patients", "raters")}
    modes = page.eval_on_selector_all(
        "#preview-folds tfoot td[data-mode]", "cells => cells.map(c => c.textContent)"
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "dataset-build-preview.png"), full_page=True)
    page.fill("#id_name", "planned-v1")
    page.click("#build-form button[type=submit]")
    page.wait_for_url("**/datasets/planned-v1/")
    _wait_for_build(page)
    version = DatasetVersion.objects.get(name="planned-v1")
    assert version.status == "ready", version.error
    assert preview == {
        "clips": version.n_clips,
        "votes": version.n_ratings,
        "patients": version.n_patients,
        "raters": version.summary["counts"]["raters"],
    }
    assert [int(m) for m in modes] == [version.clips.filter(mode=g).count() for g in "ABCDE"]
    # The datasheet renders as HTML: the agreement table has one row per measure, each with
    # as many cells as its header, and the left-out experts are listed on the page.
    tables = page.locator("#datasheet table")
    agreement = tables.filter(has=page.locator("th", has_text="confidence interval"))
    headers = agreement.locator("thead th").all_text_contents()
    assert headers == ["measure", "estimate", "confidence interval", "details"]
    rows = agreement.locator("tbody tr")
    assert rows.count() == 2
    for i in range(2):
        assert rows.nth(i).locator("th, td").count() == 4
    alpha = rows.filter(has_text="krippendorff alpha ordinal").locator("td").all_text_contents()
    assert alpha[1].startswith("95% CI ") and "n_resamples=1000" in alpha[2]
    assert page.locator("#datasheet h2", has_text="Fold balance").count() == 1
    assert "#" not in (page.text_content("#datasheet h1") or "")
    filters = page.text_content("#version-filters") or ""
    assert all(rater in filters for rater in left_out)
    page.screenshot(path=str(SHOTS / "dataset-version-datasheet.png"), full_page=True)
    assert page_errors(page) == []


def test_a_failed_build_name_is_built_again_from_the_page(
    celery_worker_process, live_server, browser_page, synthetic_small: Path
) -> None:
    call_command("import_dataset", str(synthetic_small), "--no-progress")
    user_create(username="cur", role="curator", password=PASSWORD)
    page = browser_page
    page.set_default_timeout(30_000)  # two shared cores, a worker and a live server
    login(page, live_server, "cur", PASSWORD)
    page.goto(f"{live_server.url}/datasets/")
    page.fill("#id_min_votes", "500")
    page.wait_for_function(
        "() => document.getElementById('preview-state').textContent.includes('no clip matches')"
    )
    page.fill("#id_name", "second-try")
    page.click("#build-form button[type=submit]")
    page.wait_for_url("**/datasets/second-try/")
    _wait_for_build(page)
    assert "no clip matches" in (page.text_content("#version-status") or "")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "dataset-build-failed.png"), full_page=True)
    page.click("text=build a version of that name")
    assert page.input_value("#id_name") == "second-try"  # the link fills the name in
    page.fill("#id_min_votes", "1")
    page.wait_for_function("() => document.getElementById('preview-clips').textContent === '6'")
    page.click("#build-form button[type=submit]")
    page.wait_for_url("**/datasets/second-try/")
    _wait_for_build(page)
    version = DatasetVersion.objects.get(name="second-try")
    assert version.status == "ready" and version.n_clips == 6
    assert page.text_content("#content-hash") == version.content_hash
    assert page_errors(page) == []
