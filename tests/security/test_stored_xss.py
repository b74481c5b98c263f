"""Stored XSS: payloads in every writable text field, rendered in headless Chromium, run nothing.

Each payload would set window.__xss if it ever ran; CSP refusals (an unescaped inline script
or handler the policy blocked) show up as console errors, so an escaping bug fails the test
even though CSP stopped the script.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from tests.browser_support import login, page_errors
from tests.security.conftest import PASSWORD, World, version_make

PAYLOADS = {
    "script": "<script>window.__xss=1</script>",
    "img-onerror": '"><img src=x onerror="window.__xss=1">',
    "javascript-url": "javascript:window.__xss=1",
    "svg-onload": "<svg onload=window.__xss=1>",
    "attr-break": "' autofocus onfocus='window.__xss=1' x='",
}

INJECTED = (
    "script:not([src]):not([type='application/json']), img[onerror], svg[onload], [onload],"
    " [onerror], [onfocus], iframe, a[href^='javascript:' i]"
)


def _store_payload(world: World, payload: str, make_user: Any) -> dict[str, str]:
    """Writes the payload into every text field people can fill; returns the pages to visit."""
    from annotation.models import AuditEvent, CannotJudge, Patient, Rating, VideoAttempt
    from datasets.models import DatasetVersion
    from modeling.models import ExperimentGrid, TrainingRun

    clip = world.objects["clip"]
    video = clip.video
    patient = Patient.objects.create(code=payload[:64])
    video.patient = patient
    video.original_name = payload
    video.error = payload
    video.save(update_fields=["patient", "original_name", "error"])
    VideoAttempt.objects.create(
        video=video, number=99, status=VideoAttempt.Status.FAILED, error=payload,
        target_results=[{"index": 0, "result": "lost", "error": payload}],
    )  # fmt: skip
    # user_create refuses such a name now (pseudonymous ids only); an account made before the
    # rule, or by hand in the database, may still carry one, so it is written directly.
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    rater = get_user_model().objects.create(username=("u" + payload)[:150])
    rater.groups.add(Group.objects.get_or_create(name="expert")[0])
    Rating.objects.filter(pk=world.objects["rating_own"].pk).update(
        telemetry={"plays": payload, "speeds_used": [payload]}
    )
    CannotJudge.objects.create(clip=clip, rater=rater, reason=payload[:32])
    CannotJudge.objects.create(
        clip=clip, rater=make_user("expert"), reason=CannotJudge.Reason.OTHER, note=payload[:200]
    )
    version = version_make("xss-version", world.users["curator"])
    # An unbuilt version carries the text fields (a frozen one refuses later updates).
    version2 = DatasetVersion.objects.create(
        name="xss-text", description=payload, licence=payload[:200], progress_message=payload[:200],
        error=payload, pseudonym_salt="s", created_by=world.users["curator"],
    )  # fmt: skip
    run = TrainingRun.objects.create(
        version=version, name=payload[:120], config={"note": payload}, n_folds=3,
        error=payload, progress_message=payload[:200], created_by=world.users["curator"],
    )  # fmt: skip
    grid = ExperimentGrid.objects.create(
        version=version, name=payload[:120], backbones=["resnet"], losses=["emd"], epochs=1,
        error=payload, created_by=world.users["curator"],
    )  # fmt: skip
    AuditEvent.objects.create(action="login_failed", username=payload, detail={"x": payload})
    return {
        "video list": reverse("video-list"),
        "video detail": reverse("video-detail", kwargs={"pk": video.pk}),
        "clip list": reverse("clip-list"),
        "clip detail": reverse("clip-detail", kwargs={"clip_id": clip.external_id}),
        "dashboard": reverse("dashboard"),
        "dataset list": reverse("dataset-list"),
        "dataset detail": reverse("dataset-detail", kwargs={"name": version2.name}),
        "training runs": reverse("training-run-list"),
        "training run": reverse("training-run-detail", kwargs={"pk": run.pk}),
        "grids": reverse("experiment-grid-list"),
        "grid": reverse("experiment-grid-detail", kwargs={"pk": grid.pk}),
        "audit log": reverse("audit-log"),
        "admin users": "/admin/auth/user/",
        "admin videos": "/admin/annotation/video/",
        "admin patients": "/admin/annotation/patient/",
        "admin attempts": "/admin/annotation/videoattempt/",
        "admin attempt": reverse(
            "admin:annotation_videoattempt_change",
            args=[VideoAttempt.objects.get(video=video, number=99).pk],
        ),
        "admin cannot judge": "/admin/annotation/cannotjudge/",
        "admin rating": reverse(
            "admin:annotation_rating_change", args=[world.objects["rating_own"].pk]
        ),
        "admin audit": "/admin/annotation/auditevent/",
    }


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_stored_payloads_execute_nothing(
    name: str, world: World, make_user, live_server, browser_page
) -> None:
    payload = PAYLOADS[name]
    pages = _store_payload(world, payload, make_user)
    page = browser_page
    login(page, live_server, "sec-admin", PASSWORD)
    for what, url in pages.items():
        response = page.goto(f"{live_server.url}{url}")
        assert response is not None and response.status == 200, (what, response and response.status)
        page.wait_for_load_state("load")
        assert page.evaluate("window.__xss") is None, f"{name} ran on the {what} page"
        assert page.eval_on_selector_all(INJECTED, "els => els.length") == 0, (name, what)
        assert page_errors(page) == [], (name, what, page_errors(page))
    # The payload is on the pages as text, escaped, not dropped.
    page.goto(f"{live_server.url}{pages['video detail']}")
    assert payload in page.inner_text("body")
    page.goto(f"{live_server.url}{pages['clip detail']}")
    assert payload[:200] in page.inner_text("#cannot-judge")
