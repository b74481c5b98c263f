"""The experts' compare page (their grades against the panel and the model) and sample
triage (curators). Trainee practice pages are frontend.practice_views."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from annotation.access.roles import CURATOR, EXPERT, signed_in
from annotation.grades import GRADES
from annotation.models import Video
from frontend.charts import distribution_bars
from frontend.views import role_required
from modeling import feedback


@require_GET
@role_required(EXPERT, admins=False)  # an expert's own grades
def grade_compare(request: HttpRequest) -> HttpResponse:
    rows = feedback.expert_comparison(expert=signed_in(request))
    page = Paginator(rows, 25).get_page(request.GET.get("page"))
    items = [(row, _compare_chart(row)) for row in page.object_list]
    return render(request, "frontend/grade_compare.html", {"page": page, "items": items})


def _compare_chart(row: feedback.CompareRow) -> dict[str, object]:
    series: list[tuple[str, dict[str, float] | dict[str, int] | None]] = [("panel", row.panel)]
    if row.prediction is not None:
        series.append(("model", row.prediction))
    series.append(("your grade", {g: float(g == row.grade) for g in GRADES}))
    return distribution_bars(series, width=300, height=130)


@require_GET
@role_required(CURATOR)
def triage(request: HttpRequest) -> HttpResponse:
    """Choose a sample (video) and a model; its sperm ranked by predicted p_A + p_B. Curators
    only: experts never see a model's prediction of a clip they may still grade."""
    videos = Video.objects.filter(status=Video.Status.READY).order_by("-created_at")[:200]
    runs = feedback.runs_succeeded()
    video_id, run_id = request.GET.get("video"), request.GET.get("run")
    result, cards = None, []
    if video_id and video_id.isdigit():
        video = get_object_or_404(Video, pk=int(video_id))
        run = runs.filter(pk=int(run_id)).first() if run_id and run_id.isdigit() else runs.first()
        if run is None:
            messages.error(request, "no succeeded training run to predict with: train a model")
        else:
            result = feedback.sample_triage(video=video, run=run)
            cards = [
                (row, distribution_bars([("predicted", row.prediction)], width=300, height=130))
                for row in result.rows
            ]
    context = {
        "videos": videos,
        "runs": runs[:50],
        "result": result,
        "cards": cards,
        "video_id": int(video_id) if video_id and video_id.isdigit() else None,
        "run_id": int(run_id) if run_id and run_id.isdigit() else None,
    }
    return render(request, "frontend/triage.html", context)
