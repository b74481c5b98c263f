"""Headless Chromium and the real worker: a curator uploads a video in a format browsers
cannot play, sees the server-made first frame, zooms, clicks near a head (snapped to the
detected candidate), starts the ingestion and gets the clip; typed coordinates of any
precision are taken; a refused form keeps the chosen file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from annotation.access.accounts import user_create
from annotation.models import Clip, Video
from tests.annotation.ingest.formats import SUFFIX, heads_frames, write_video
from tests.browser_support import login, page_errors
from tests.conftest import PASSWORD, wait_for

HEADS = [(120.0, 90.0), (300.0, 200.0), (573.354, 100.25)]
FRAME_WIDTH = """() => new Promise((resolve) => {
  const image = new Image();
  image.onload = () => resolve([image.naturalWidth, image.naturalHeight]);
  image.src = document.getElementById('tagger').dataset.frameUrl;
})"""
CANVAS_MEAN = """() => {
  const c = document.getElementById('first-frame');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let sum = 0; for (let i = 0; i < d.length; i += 4) sum += d[i];
  return sum / (d.length / 4);
}"""


def _video_file(tmp_path: Path, kind: str) -> Path:
    frames = heads_frames(width=640, height=360, heads=HEADS, n_frames=20, step_px=(1.0, 0.5))
    return write_video(frames, tmp_path / f"field{SUFFIX[kind]}", kind)


def _upload_through_the_page(page, live_server, path: Path) -> Video:  # type: ignore[no-untyped-def]
    page.goto(f"{live_server.url}/videos/upload/")
    page.set_input_files("input[name=file]", str(path))
    page.fill("input[name=patient_code]", "P-browser")
    page.fill("input[name=pixel_size_um]", "0.5")
    page.click("#upload-form button[type=submit]")
    page.wait_for_url(re.compile(r"/videos/\d+/$"))
    video_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    # The worker decodes frame 0; the page reloads by itself to show it.
    page.wait_for_selector("#first-frame", timeout=60_000)
    return Video.objects.get(pk=video_id)


def _canvas_point(page, x: float, y: float) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Where frame pixel (x, y) lies on the screen, from the canvas's current view."""
    view = page.evaluate(
        """() => { const c = document.getElementById('first-frame');
          const r = c.getBoundingClientRect();
          return [r.left, r.top, r.width / c.width, Number(c.dataset.scale),
                  Number(c.dataset.originX), Number(c.dataset.originY)]; }"""
    )
    left, top, css, scale, origin_x, origin_y = view
    return left + (x - origin_x) * scale * css, top + (y - origin_y) * scale * css


@pytest.mark.browser
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["mpeg4", "mjpeg"])
def test_a_curator_tags_a_snapped_head_on_the_server_made_first_frame_and_ingests(
    kind: str, celery_worker_process, live_server, browser_page, tmp_path: Path
) -> None:
    user_create(username="cur", role="curator", password=PASSWORD)
    page = browser_page
    page.set_default_timeout(60_000)  # a shared, busy test machine
    login(page, live_server, "cur", PASSWORD)
    video = _upload_through_the_page(page, live_server, _video_file(tmp_path, kind))
    assert page.evaluate(FRAME_WIDTH) == [640, 360]  # frame 0 at full resolution, from the server
    assert page.evaluate(CANVAS_MEAN) > 60  # drawn: not the black canvas of a browser decode
    candidates = json.loads(page.text_content("#candidates-data"))
    head = min(candidates, key=lambda c: abs(c["x"] - HEADS[1][0]) + abs(c["y"] - HEADS[1][1]))
    assert abs(head["x"] - HEADS[1][0]) < 1 and abs(head["y"] - HEADS[1][1]) < 1

    fitted = float(page.get_attribute("#first-frame", "data-scale"))
    page.mouse.move(*_canvas_point(page, head["x"], head["y"]))
    for _ in range(6):
        page.mouse.wheel(0, -100)
    page.wait_for_function(
        f"() => Number(document.getElementById('first-frame').dataset.scale) > {fitted * 3}"
    )
    zoomed = float(page.get_attribute("#first-frame", "data-scale"))
    # Zoomed in, each frame pixel is drawn as a block of equal canvas pixels (no smoothing):
    # across a row of 5 frame pixels at the head there are at most 5 distinct grey levels.
    levels = page.evaluate(
        """([x, y]) => { const c = document.getElementById('first-frame');
          const s = Number(c.dataset.scale), ox = Number(c.dataset.originX),
                oy = Number(c.dataset.originY);
          const left = Math.round((Math.floor(x) - 2 - ox) * s), top = Math.round((y - oy) * s);
          const row = c.getContext('2d').getImageData(left, top, Math.round(5 * s), 1).data;
          const seen = new Set(); for (let i = 0; i < row.length; i += 4) seen.add(row[i]);
          return seen.size; }""",
        [head["x"], head["y"]],
    )
    assert levels <= 6
    # A click 2.5 px (of the frame) beside the head tags the detected head itself.
    page.mouse.click(*_canvas_point(page, head["x"] + 2.5, head["y"] - 1.5))
    tagged = json.loads(page.input_value("input[name=targets]"))
    assert tagged == [{"x": head["x"], "y": head["y"]}]
    assert zoomed > fitted * 3
    page.click("#zoom-fit")
    assert float(page.get_attribute("#first-frame", "data-scale")) == pytest.approx(fitted)

    page.click("#targets-form button[type=submit]")
    page.wait_for_selector("#clip-links li a", timeout=90_000)  # reloads when ready
    clip = Clip.objects.get(video=video)
    assert (clip.start_x, clip.start_y) == (head["x"], head["y"])
    assert len(clip.track) == 16 and clip.vcl > 0
    assert page_errors(page) == []


@pytest.mark.browser
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_typed_coordinates_of_any_precision_are_taken_and_a_refused_form_keeps_the_file(
    celery_worker_process, live_server, browser_page, tmp_path: Path
) -> None:
    user_create(username="cur", role="curator", password=PASSWORD)
    page = browser_page
    page.set_default_timeout(60_000)  # a shared, busy test machine
    login(page, live_server, "cur", PASSWORD)
    page.goto(f"{live_server.url}/videos/upload/")
    page.set_input_files("input[name=file]", str(_video_file(tmp_path, "mjpeg")))
    page.fill("input[name=patient_code]", "not a code!")  # the server refuses it
    page.fill("input[name=pixel_size_um]", "0.5")
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector("[data-field=patient_code] .error")
    assert "/videos/upload/" in page.url and not Video.objects.exists()
    # The chosen file is still chosen: correcting the code is enough.
    assert page.evaluate("() => document.querySelector('input[name=file]').files.length") == 1
    page.fill("input[name=patient_code]", "P-typed")
    page.click("#upload-form button[type=submit]")
    page.wait_for_url(re.compile(r"/videos/\d+/$"))
    page.wait_for_selector("#first-frame", timeout=60_000)

    # "Tag all" tags every detected head (one clip each); "Clear tags" undoes it.
    page.click("#tag-all")
    tagged = json.loads(page.input_value("input[name=targets]"))
    assert len(tagged) == len(HEADS) == len(json.loads(page.text_content("#candidates-data")))
    page.click("#tag-clear")
    assert json.loads(page.input_value("input[name=targets]")) == []
    page.fill("#manual-x", "573.354")
    page.fill("#manual-y", "100.25")
    page.click("#manual-add")
    assert json.loads(page.input_value("input[name=targets]")) == [{"x": 573.354, "y": 100.25}]
    page.click("#targets-form button[type=submit]")
    page.wait_for_selector("#clip-links li a", timeout=90_000)
    video = Video.objects.get()
    assert video.targets[0]["x"] == 573.354 and video.status == "ready"
    wait_for(lambda: Clip.objects.filter(video=video).exists(), what="the clip")
    # The refused form's answer (400) is the only error the browser noted.
    assert [e for e in page_errors(page) if "status of 400" not in e] == []
