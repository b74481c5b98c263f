"""Shared fixtures: users per role, a real Celery worker process, the synthetic data set."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def make_user(db) -> Callable:
    from annotation.access.accounts import user_create

    counter = {"n": 0}

    def make(role: str, username: str | None = None):
        counter["n"] += 1
        return user_create(
            username=username or f"{role}{counter['n']}", role=role, password=PASSWORD
        )

    return make


def _test_database_url() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        raise RuntimeError("worker tests need PostgreSQL: run them through `make test`")
    name = db["NAME"]
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{name}"


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker) -> Iterator[subprocess.Popen]:
    """A real, separate `celery worker` process on the test database and the test broker."""
    env = dict(os.environ)
    env["DATABASE_URL"] = _test_database_url()
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    with worker_running(env, ("celery", "training"), Path(settings.VAR_DIR), "test") as proc:
        yield proc


@contextlib.contextmanager
def worker_running(
    env: dict[str, str], queues: tuple[str, ...], var_dir: Path, name: str
) -> Iterator[subprocess.Popen]:
    """A `celery worker` process (solo pool) with `env`, consuming `queues` (emptied first),
    its log in var_dir/worker.log; stopped at the end. Waits for it to be ready: up to 180 s,
    as a loaded test machine takes its time to import torch."""
    from config.celery import app

    with app.connection_for_write() as conn:  # start from empty queues
        for queue in queues:
            with contextlib.suppress(Exception):  # the queue may not exist yet
                conn.default_channel.queue_purge(queue)
    log_path = var_dir / "worker.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "config", "worker", "-P", "solo",
            "-Q", ",".join(queues), "--without-heartbeat", "--without-gossip",
            "--without-mingle", "-l", "INFO", "-n", f"{name}-{os.getpid()}@%h",
        ],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the {name} worker exited: {log_path.read_text()[-2000:]}")
            if "ready." in log_path.read_text():
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"the {name} worker did not start within 180 s")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def wait_for(predicate: Callable[[], bool], *, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")


@pytest.fixture(scope="session")
def synthetic_small(tmp_path_factory) -> Path:
    """A small synthetic data set in the exchange format: 6 clips, 12 experts, 400x300 px."""
    from simulator.synthetic import SyntheticConfig, generate_dataset

    out = tmp_path_factory.mktemp("synthetic_small")
    generate_dataset(
        out,
        SyntheticConfig(n_clips=6, n_experts=12, seed=3, width=400, height=300, n_frames=20),
    )
    return out


def copy_dataset(source: Path, target: Path) -> Path:
    """A writable copy of a generated data set (tests edit their copy)."""
    import shutil

    shutil.copytree(source, target)
    return target


@pytest.fixture(autouse=True)
def _media_per_test(request, settings, tmp_path):
    """Each test writes media into its own folder, except tests that share files with the
    worker process (which reads MERSV_VAR_DIR/media)."""
    if "celery_worker_process" not in request.fixturenames:
        settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(scope="session")
def chromium_browser():
    """One headless Chromium for the whole session (tests/browser_support.py)."""
    from django.urls import get_resolver
    from playwright.sync_api import sync_playwright

    from tests.browser_support import chromium_launch

    # The live server imports the URLconf (datasets, modeling: scikit-learn, scipy, torch) on
    # its first request; on a loaded machine that alone can outlast a page's 15 s timeout when
    # a browser test runs first in its process. Import it here, before any page is opened.
    get_resolver().url_patterns  # noqa: B018

    # Playwright's sync API keeps an event loop in this thread; the ORM calls the tests make
    # between browser steps are still synchronous, so Django's async guard must stand down.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = chromium_launch(playwright)
        yield browser
        browser.close()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def browser_page(chromium_browser):
    """A fresh browser context and page; page errors and console errors (CSP refusals
    included) are collected for `tests.browser_support.page_errors`."""
    context = chromium_browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.mersv_errors = errors

    def on_console(msg) -> None:
        where = (msg.location or {}).get("url", "")
        if msg.type == "error" and not where.endswith("favicon.ico"):
            errors.append(f"console: {msg.text} ({where})")

    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.on("console", on_console)
    yield page
    context.close()
