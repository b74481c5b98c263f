"""The expert's grading page and session summary. The page talks to the grading API
(`annotation.grading.api`); the first clip is rendered into the page to save a round trip."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from annotation.access.roles import EXPERT, signed_in
from annotation.grades import GRADE_DESCRIPTIONS, GRADES
from annotation.grading import answers as grading
from annotation.models import CannotJudge
from annotation.player import ClipPlayerSerializer
from frontend.charts import bar_chart
from frontend.views import role_required


@require_GET
@role_required(EXPERT, admins=False)  # grades count: experts only
def grade(request: HttpRequest) -> HttpResponse:
    clip = grading.clip_next_for_expert(expert=signed_in(request))
    config = {
        "urls": {
            "next": reverse("api-grading-next"),
            "ratings": reverse("api-grading-ratings"),
            "cannotJudge": reverse("api-grading-cannot-judge"),
            "progress": reverse("api-grading-progress"),
            "fieldGuide": reverse("api-field-guide"),
        },
        # Keys the page's remembered state (tutorial seen) by account in this browser.
        "account": request.user.pk,
        "otherReason": CannotJudge.Reason.OTHER.value,
        "showPanel": settings.SHOW_PANEL_AFTER_VOTE,
        "grades": list(GRADES),
        "reasons": [value for value, _ in CannotJudge.Reason.choices],
    }
    context = {
        # The one blind player payload, as GET /api/grading/next/: nothing about votes.
        "clip": ClipPlayerSerializer(clip).data if clip else None,
        "config": config,
        "player": {"size": clip.crop_size if clip else settings.INGEST_CROP_SIZE},
        "progress": grading.grading_progress(expert=signed_in(request)),
        "grades": [(g, GRADE_DESCRIPTIONS[g]) for g in GRADES],
        "reasons": CannotJudge.Reason.choices,
        "other_reason": CannotJudge.Reason.OTHER.value,
        "note_max_length": CannotJudge.NOTE_MAX_LENGTH,
    }
    return render(request, "frontend/grade.html", context)


@require_GET
@role_required(EXPERT, admins=False)  # grades count: experts only
def grade_summary(request: HttpRequest) -> HttpResponse:
    summary = grading.grading_session_summary(expert=signed_in(request))
    # Only the expert's own grades of this session: nothing about anyone's votes (blindness).
    chart = bar_chart(summary.grade_counts, width=340, height=180, unit="clips", x_label="grade")
    context = {
        "summary": summary,
        "median_s": None if summary.median_time_ms is None else summary.median_time_ms / 1000,
        "grade_counts": list(summary.grade_counts.items()),
        "chart": chart,
        "idle_hours": settings.GRADING_SESSION_IDLE_HOURS,
        "progress": grading.grading_progress(expert=signed_in(request)),
    }
    return render(request, "frontend/grade_summary.html", context)
