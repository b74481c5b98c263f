"""Headless Chromium: the run page's progress bar follows the run live, without CSP errors."""

from __future__ import annotations

from typing import Any

import pytest

from annotation.access.accounts import user_create
from datasets.models import DatasetVersion
from modeling import services
from modeling.models import TrainingRun
from tests.browser_support import login, page_errors
from tests.conftest import PASSWORD


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_progress_bar_follows_a_running_run_and_the_page_draws_its_end(
    live_server, browser_page, version: DatasetVersion, tiny_config: dict[str, Any]
) -> None:
    run = services.training_run_start(
        version=version, config=tiny_config, created_by=None, enqueue=False
    )
    runs = TrainingRun.objects.filter(pk=run.pk)
    runs.update(status="running", progress=0.2, progress_message="fold 1/3 · epoch 1")
    user_create(username="researcher", role="curator", password=PASSWORD)
    page = browser_page
    login(page, live_server, "researcher", PASSWORD)
    page.goto(f"{live_server.url}/training/{run.pk}/")
    assert page.text_content("#run-progress-percent") == "20%"

    # The worker reports progress: the page follows without a reload, and the focused cancel
    # button keeps the keyboard focus while the regions around it are redrawn.
    page.focus("#cancel-run")
    runs.update(progress=0.55, progress_message="fold 2/3 · epoch 7")
    page.wait_for_function(
        "() => document.getElementById('run-progress-message').textContent.includes('epoch 7')"
    )
    assert page.text_content("#run-progress-percent") == "55%"
    assert page.eval_on_selector("#run-progress-bar", "bar => bar.value") == pytest.approx(0.55)
    assert page.evaluate("() => document.activeElement.id") == "cancel-run"

    # The run ends: the page draws the finished state (error, resume button) by itself.
    runs.update(status="failed", progress_message="failed", error="the training loss became nan")
    page.wait_for_selector("#run-error")
    assert "the training loss became nan" in page.text_content("#run-error")
    assert page.query_selector("#cancel-run") is None
    assert page.query_selector("#resume-run") is not None
    assert page_errors(page) == []
