"""Headless Chromium: a curator logs in and sees a clip play on its page."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import call_command

from annotation.access.accounts import user_create
from tests.browser_support import login, page_errors
from tests.conftest import PASSWORD


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_curator_logs_in_and_sees_a_clip_play(
    live_server, browser_page, synthetic_small: Path
) -> None:
    call_command("import_dataset", str(synthetic_small), "--no-progress")
    user_create(username="cur", role="curator", password=PASSWORD)
    page = browser_page
    login(page, live_server, "cur", PASSWORD)
    page.goto(f"{live_server.url}/clips/")
    page.click("text=c0001")
    page.wait_for_url("**/clips/c0001/")
    # The player autoplays: the frame counter moves on by itself, and the canvas shows pixels.
    # (Functions, not expression strings: the page's CSP forbids eval.)
    page.wait_for_function("() => Number(document.getElementById('frame-no').textContent) > 3")
    painted = page.evaluate(
        """() => {
          const c = document.getElementById('crop-canvas');
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          let sum = 0; for (let i = 0; i < d.length; i += 4) sum += d[i];
          return sum / (d.length / 4);
        }"""
    )
    assert painted > 20  # mean grey level of a real frame, not a black canvas
    # Pausing stops it: the counter stays put.
    page.click("#btn-play")
    frame = page.text_content("#frame-no")
    page.wait_for_timeout(400)
    assert page.text_content("#frame-no") == frame
    # The full-field view plays the H.264 preview with the track drawn over it.
    page.click("#btn-fullfield")
    page.wait_for_function(
        "() => document.getElementById('fullfield-video').readyState >= 2 && "
        "document.getElementById('fullfield-video').videoWidth > 0"
    )
    # The curator's retirement card: the rule's verdict on the clip and its inputs.
    status = page.text_content("#retirement-status") or ""
    assert status.startswith(("Retired:", "Open:")), status
    assert page.is_visible("#retirement-table")
    assert "Votes used" in (page.text_content("#retirement-table") or "")
    assert page_errors(page) == []
