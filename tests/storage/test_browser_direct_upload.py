"""Headless Chromium on the upload page with object storage: the page's script sends the file
in presigned parts straight to the S3 server (cross-origin, through the bucket's CORS rule),
the worker verifies it, and the page goes on to the new video."""

from __future__ import annotations

import hashlib
import re
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from annotation.access.accounts import user_create
from annotation.models import DirectUpload, Video
from tests.browser_support import login, page_errors
from tests.conftest import PASSWORD
from tests.storage.conftest import BUCKET

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_the_upload_page_sends_a_large_file_in_parts_straight_to_the_bucket(
    s3_worker: Path, object_storage, live_server, browser_page, synthetic_small: Path, tmp_path
) -> None:
    # The bucket's CORS rule, as a deployment writes it (moto's server also answers every
    # preflight by itself, so this test shows the rule suffices, not that it is needed).
    call_command("storage_cors", "--origin", live_server.url, stdout=StringIO())
    [rule] = object_storage.client().get_bucket_cors(Bucket=BUCKET)["CORSRules"]
    assert rule["AllowedOrigins"] == [live_server.url] and rule["ExposeHeaders"] == ["ETag"]
    video = next(synthetic_small.glob("videos/*"))
    big = tmp_path / "recording.mp4"
    # Over two 5 MB parts: the page must send three.
    big.write_bytes(video.read_bytes() + b"\0" * (11 * 1024 * 1024))
    user_create(username="curator-web", role="curator", password=PASSWORD)
    page = browser_page
    login(page, live_server, "curator-web", PASSWORD)
    page.goto(f"{live_server.url}/videos/upload/")
    assert page.get_attribute("#upload-form", "data-direct-upload") == "/api/uploads/"
    page.set_input_files("input[name=file]", str(big))
    page.fill("input[name=patient_code]", "P-browser-s3")
    page.fill("input[name=pixel_size_um]", "0.5")
    page.click("#upload-form button[type=submit]")
    page.wait_for_url(re.compile(r"/videos/\d+/$"), timeout=120_000)
    upload = DirectUpload.objects.get()
    assert upload.status == "ready" and upload.part_bytes == 5 * 1024 * 1024
    stored = Video.objects.get(pk=upload.video_id)
    assert page.url.endswith(f"/videos/{stored.pk}/")
    assert stored.sha256 == hashlib.sha256(big.read_bytes()).hexdigest()
    assert stored.original_name == "recording.mp4"
    assert page_errors(page) == []
