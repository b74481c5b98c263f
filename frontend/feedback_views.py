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
from annotation.ingest.kinematics import kinematics_units
from annotation.models import Clip, Video
from annotation.player import clip_player
from frontend.charts import distribution_bars
from frontend.views import role_required
from modeling import feedback


@require_GET
@role_required(EXPERT, admins=False)  # an expert's own grades
def grade_compare(request: HttpRequest) -> HttpResponse:
    rows = feedback.expert_comparison(expert=signed_in(request))
    page = Paginator(rows, 25).get_page(request.GET.get("page"))
    items = [(row, _compare_chart(row)) for row in page.object_list]
    # The frame-exact player of the grading page replays any clip of the page: every row is a
    # clip this expert answered (expert_comparison), and the payload is the blind one anyway.
    players = [_replay_payload(row.clip) for row in page.object_list]
    context: dict[str, object] = {"page": page, "items": items, "players": players}
    if players:
        context["player"] = players[0]
    return render(request, "frontend/grade_compare.html", context)


def _replay_payload(clip: Clip) -> dict[str, object]:
    # Full-field previews are a curator's files (the media rule refuses them to experts): the
    # player's full-field button stays off instead of loading a refused video.
    return clip_player(clip) | {"clipId": clip.external_id, "preview": ""}


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
            units = kinematics_units(pixel_size_known=bool(video.pixel_size_um))
            cards = [
                (
                    row,
                    distribution_bars([("predicted", row.prediction)], width=300, height=130),
                    _kinematics_rows(row.kinematics, units),
                )
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


def _kinematics_rows(values: dict[str, float], units: dict[str, str]) -> list[dict[str, object]]:
    """A card's kinematics table: (name, value, unit), ratios with two decimals; ``speed`` is
    left out, being VCL again under another name (the model's input ``v``)."""
    return [
        {
            "name": "STR" if key == "str" else key.upper(),
            "value": value,
            "decimals": 1 if units[key] else 2,
            "unit": units[key],
        }
        for key, value in values.items()
        if key != "speed"
    ]
