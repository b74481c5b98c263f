"""Headless Chromium on the live run and grid pages: a real training run in the real worker
grows its learning curves, per-fold progress and training time on the open page without a
reload; the metrics table fits a 1366 px screen with every metric; the grid page's rank tables
fill in as its settings finish."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from annotation.access.accounts import user_create
from datasets.models import DatasetVersion
from modeling import services
from modeling.models import EpochRecord, ExperimentGrid, TrainingRun
from modeling.report import METRIC_LABELS
from tests.browser_support import login, page_errors
from tests.conftest import PASSWORD
from tests.modeling.conftest import TINY_CONFIG, build_version

SCREEN = {"width": 1366, "height": 768}
# Where the screenshots go: under MERSV_VAR_DIR (var/, ignored by git) unless told otherwise.
SHOTS = Path(os.environ.get("MERSV_SCREENSHOTS") or Path(settings.VAR_DIR) / "screenshots")

# Vertices the learning-curve figure draws: the points of its polylines, plus the dot drawn for
# a series of a single epoch.
CURVE_POINTS_JS = """() => {
  const svg = document.getElementById('learning-curves');
  if (!svg) return 0;
  let n = svg.querySelectorAll('circle').length;
  for (const line of svg.querySelectorAll('polyline')) n += line.points.numberOfItems;
  return n;
}"""
ELAPSED_JS = "() => Number(document.getElementById('run-elapsed').dataset.seconds)"
FOLD_EPOCHS_JS = """() => Array.from(document.querySelectorAll('#run-folds tbody tr'))
  .map(row => Number(row.dataset.epochs)).reduce((a, b) => a + b, 0)"""


@pytest.fixture
def remove_run_folders() -> Iterator[None]:
    yield
    for folder in TrainingRun.objects.values_list("checkpoint_dir", flat=True):
        shutil.rmtree(folder, ignore_errors=True)


def _table_fits(page, selector: str) -> dict[str, Any]:
    """The widths of the table and of its card, and whether the page scrolls sideways (a
    table's own scrollWidth equals its clientWidth: it grows rather than overflow, so it is
    measured against its card's)."""
    return page.eval_on_selector(
        selector,
        """table => ({
            table: table.scrollWidth, box: table.clientWidth,
            card: table.closest('section').clientWidth,
            cardScroll: table.closest('section').scrollWidth,
            page: document.documentElement.scrollWidth, screen: window.innerWidth,
            right: table.getBoundingClientRect().right,
        })""",
    )


@pytest.mark.browser
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_running_training_grows_its_curves_fold_progress_and_time_on_the_open_page(
    celery_worker_process, live_server, browser_page, synthetic_small: Path, remove_run_folders
) -> None:
    version = build_version(synthetic_small, name="live-run")
    user_create(username="researcher", role="curator", password=PASSWORD)
    page = browser_page
    page.set_default_timeout(120_000)  # two shared cores: a worker, a live server, Chromium
    page.set_viewport_size(SCREEN)
    login(page, live_server, "researcher", PASSWORD)
    # More epochs than the test waits for (no early stopping): the page is sure to see the run
    # part-way however fast or slow the machine, and the test then cancels it from the page.
    config = {**TINY_CONFIG, "epochs": 200, "early_stopping_patience": None}
    run = services.training_run_start(version=version, config=config, created_by=None)
    page.goto(f"{live_server.url}/training/{run.pk}/")
    page.evaluate("() => { window.mersvNoReload = true; }")  # gone if the page reloads

    # First observation: the worker has written epochs of fold 1, the page drew them.
    page.wait_for_function(f"() => ({CURVE_POINTS_JS})() >= 2")
    assert TrainingRun.objects.get(pk=run.pk).status == "running"
    first = {"points": page.evaluate(CURVE_POINTS_JS), "elapsed": page.evaluate(ELAPSED_JS),
             "epochs": page.evaluate(FOLD_EPOCHS_JS)}  # fmt: skip
    assert first["elapsed"] > 0  # the training time no longer reads 0 s while running
    assert page.text_content("#run-folds tbody tr:first-child td:first-child") == "fold 1"
    assert page.text_content("#run-status-text") == "Running"
    assert page.query_selector("#run-remaining") is not None  # an estimate of the time left
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "run-page-running-1366x768.png"))

    # Second observation, same page: more points, more epochs in the fold table, more time.
    page.wait_for_function(
        f"() => ({CURVE_POINTS_JS})() > {first['points']} && ({FOLD_EPOCHS_JS})() > "
        f"{first['epochs']} && ({ELAPSED_JS})() > {first['elapsed']}"
    )
    second = {"points": page.evaluate(CURVE_POINTS_JS), "epochs": page.evaluate(FOLD_EPOCHS_JS)}
    assert second["points"] > first["points"] and second["epochs"] > first["epochs"]
    message = page.text_content("#run-progress-message") or ""
    # One fold numbering: the message's "fold k/3" and the fold table count from 1 alike.
    assert re.search(r"fold [1-3]/3", message), message
    assert "fold 0" not in page.content()

    # Cancelled from the page: the page draws the end by itself, still without a reload.
    with page.expect_navigation():  # the cancel form posts and comes back to the page
        page.click("#cancel-run")
    page.evaluate("() => { window.mersvNoReload = true; }")
    page.wait_for_function(
        "() => document.getElementById('run-status-text').textContent === 'Cancelled'",
        timeout=300_000,
    )
    run.refresh_from_db()
    assert run.status == "cancelled" and run.duration_s > 0
    assert page.evaluate("() => window.mersvNoReload") is True  # drawn live, not reloaded
    page.wait_for_function(
        "() => !document.querySelector('#cancel-run') && !document.querySelector('#run-remaining')"
    )
    assert abs(page.evaluate(ELAPSED_JS) - run.duration_s) <= 1  # the final training time
    points = EpochRecord.objects.filter(run=run).count()
    assert points >= second["points"] // 2
    page.wait_for_function(f"() => ({CURVE_POINTS_JS})() === {2 * points}")  # train + val
    assert page_errors(page) == []


def _finished_fields(n_folds: int, seed: float) -> dict[str, Any]:
    """The metric fields a worker writes when a run ends (every metric of the fold table)."""
    metrics = {m: round(0.1 + seed + 0.01 * i, 4) for i, m in enumerate(METRIC_LABELS)}
    return {
        "status": "succeeded",
        "progress": 1.0,
        "folds_done": n_folds,
        "fold_metrics": {str(k): metrics for k in range(n_folds)},
        "fold_summaries": {
            str(k): {"best_epoch": 2, "epochs_run": 3, "stopped_early": False}
            for k in range(n_folds)
        },
        "metrics_mean": metrics,
        "metrics_std": {m: 0.0123 for m in metrics},
        "pooled_metrics": {**metrics, "per_class": {}},
        "finished_at": timezone.now(),
    }


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("n_folds", [3, 8, 20])
def test_the_metrics_table_shows_every_metric_within_a_1366_px_screen(
    live_server, browser_page, version: DatasetVersion, tiny_config: dict[str, Any], n_folds: int
) -> None:
    run = services.training_run_start(
        version=version, config=tiny_config, created_by=None, enqueue=False
    )
    TrainingRun.objects.filter(pk=run.pk).update(n_folds=n_folds, **_finished_fields(n_folds, 0))
    user_create(username="researcher", role="curator", password=PASSWORD)
    page = browser_page
    page.set_viewport_size(SCREEN)
    login(page, live_server, "researcher", PASSWORD)
    page.goto(f"{live_server.url}/training/{run.pk}/")
    tables = page.query_selector_all("#run-metrics table.grid")
    assert len(tables) == -(-n_folds // 8)  # 8 folds a table, the rest continue below
    for i in range(1, len(tables) + 1):
        fits = _table_fits(page, f"#run-metrics-table-{i}")
        # No horizontal overflow: the table is no wider than its card, which does not scroll.
        assert fits["table"] <= fits["card"], fits
        assert fits["cardScroll"] <= fits["card"] and fits["page"] <= fits["screen"], fits
    first = "#run-metrics-table-1"
    labels = page.eval_on_selector_all(
        f"{first} tbody td:first-child", "c => c.map(x => x.textContent)"
    )
    assert [label.rsplit(" ", 1)[0] for label in labels] == list(METRIC_LABELS.values())
    # Every metric's row is on screen (scrolled to), none clipped at the right edge.
    for label in ("Macro F1", "Top25% HI", "Top75% HI"):
        cell = page.locator(f"{first} tbody tr", has_text=label).locator("td").last
        cell.scroll_into_view_if_needed()
        box = cell.bounding_box()
        assert box is not None and box["x"] + box["width"] <= SCREEN["width"], (label, box)
        assert cell.is_visible()
    header = page.eval_on_selector_all(f"{first} thead th", "c => c.map(x => x.textContent)")
    assert header[1] == "fold 1" and header[-2:] == ["mean ± std", "pooled out-of-fold"]
    assert page_errors(page) == []


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_grid_pages_rank_tables_fill_in_as_its_settings_finish(
    live_server, browser_page, version: DatasetVersion
) -> None:
    grid = services.experiment_grid_start(
        version=version, backbones=["resnet", "timesformer"], losses=["ce", "emd"], epochs=2,
        created_by=None, enqueue=False,
    )  # fmt: skip
    ExperimentGrid.objects.filter(pk=grid.pk).update(status="running", started_at=timezone.now())
    runs = list(grid.runs.order_by("pk"))
    user_create(username="researcher", role="curator", password=PASSWORD)
    page = browser_page
    page.set_viewport_size(SCREEN)
    login(page, live_server, "researcher", PASSWORD)
    page.goto(f"{live_server.url}/training/grids/{grid.pk}/")
    page.evaluate("() => { window.mersvNoReload = true; }")

    def rank_rows(number: int) -> int:
        return page.evaluate(
            """(n) => {
                const title = Array.from(document.querySelectorAll('#grid-report h3'))
                    .find(h => h.textContent.startsWith('Table ' + n + '.'));
                return title ? title.nextElementSibling.querySelectorAll('tbody tr').length : -1;
            }""",
            number,
        )

    assert rank_rows(2) == 0 and rank_rows(3) == 0  # no setting finished yet
    # The settings finish one after another, as the worker would record them.
    for done, run in enumerate(runs, start=1):
        TrainingRun.objects.filter(pk=run.pk).update(**_finished_fields(3, 0.01 * done))
        page.wait_for_function(
            f"""() => document.querySelector('#grid-runs tr[data-run="{run.pk}"]')
                .dataset.status === 'succeeded'"""
        )
        backbones = {r.config["backbone"] for r in runs[:done]}
        losses = {r.config["loss"] for r in runs[:done]}
        page.wait_for_function(
            f"() => document.querySelector('#grid-report').textContent"
            f".includes('{done} of {len(runs)} settings finished')"
        )
        assert rank_rows(2) == len(backbones), done  # Table 2: a row per backbone ranked
        assert rank_rows(3) == len(losses), done  # Table 3: a row per loss ranked
        assert rank_rows(6) == len(backbones) and rank_rows(7) == len(losses)
    # Once every setting has finished the grid ends; the page stops polling on its final state.
    ExperimentGrid.objects.filter(pk=grid.pk).update(status="succeeded")
    page.wait_for_function(
        "() => document.getElementById('grid-status-text').textContent === 'Succeeded'"
    )
    assert page.query_selector("#cancel-grid") is None
    assert page.evaluate("() => window.mersvNoReload") is True
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "grid-page-1366x768.png"), full_page=True)
    assert page_errors(page) == []
