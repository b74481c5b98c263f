"""Trainee mode (grade, feedback, progress; the curators' table of trainees), the experts'
compare page and sample triage. The trainee pages post a form; the JSON API of the same
operations is modeling.feedback_api."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from annotation.access.roles import CURATOR, EXPERT, TRAINEE, signed_in
from annotation.grades import GRADE_DESCRIPTIONS, GRADES
from annotation.grading.api import GradingClipOutputSerializer
from annotation.models import Video
from datasets import training
from datasets.models import DatasetClip, DatasetVersion, TraineeRating, TrainingSet
from frontend.charts import distribution_bars, line_chart
from frontend.refusals import refusal_shown
from frontend.views import role_required
from modeling import feedback
from modeling.feedback_api import trainee_remaining


def _player(clip) -> dict[str, object]:
    """The player's data from the blind clip serializer (nothing about votes)."""
    data = GradingClipOutputSerializer(clip).data
    return {
        "filmstrip": data["filmstrip_url"],
        "nFrames": data["n_frames"],
        "size": data["crop_size"],
        "fps": data["fps"],
        "preview": data["preview_url"],
        "track": data["track"],
        "videoWidth": data["video_width"],
        "videoHeight": data["video_height"],
    }


def _set_id(request: HttpRequest) -> int | None:
    raw = request.GET.get("set") or request.POST.get("training_set")
    return int(raw) if raw and raw.isdigit() else None


@require_http_methods(["GET", "POST"])
@role_required(TRAINEE)
def trainee(request: HttpRequest) -> HttpResponse:
    """GET: the next training clip, blind. POST: grade it, then see the feedback."""
    training_set = training.trainee_set_current(trainee=signed_in(request), set_id=_set_id(request))
    dclip: DatasetClip | None
    if request.method == "POST" and training_set is not None:
        dclip = get_object_or_404(
            DatasetClip, version=training_set.version, clip_external_id=request.POST.get("clip_id")
        )
        with refusal_shown(request, also=(ValueError,)) as refused:
            try:
                rating = training.trainee_rating_submit(
                    trainee=signed_in(request),
                    training_set=training_set,
                    dataset_clip=dclip,
                    grade=request.POST.get("grade", ""),
                    time_spent_ms=int(request.POST.get("time_spent_ms") or 0),
                )
            except training.AlreadyGradedError as exc:  # a second post: show its feedback
                rating = exc.rating
        if refused:
            return redirect(f"{request.path}?set={training_set.pk}")
        return redirect("trainee-feedback", pk=rating.pk)
    dclip = (
        training.trainee_clip_next(trainee=signed_in(request), training_set=training_set)
        if training_set
        else None
    )
    context = {
        "training_set": training_set,
        "sets": training.training_sets_active(),
        "dclip": dclip,
        "player": _player(dclip.clip) if dclip else None,
        "remaining": trainee_remaining(signed_in(request), training_set) if training_set else 0,
        "grades": [(g, GRADE_DESCRIPTIONS[g]) for g in GRADES],
    }
    return render(request, "frontend/trainee.html", context)


@require_GET
@role_required(TRAINEE)
def trainee_feedback(request: HttpRequest, pk: int) -> HttpResponse:
    # Object-level permission: a trainee sees feedback on their own grades only.
    rating = get_object_or_404(
        TraineeRating.objects.select_related("dataset_clip__clip__video", "training_set"),
        pk=pk,
        trainee=signed_in(request),
    )
    found = training.trainee_feedback(rating=rating)
    prediction = feedback.trainee_prediction(
        training_set=rating.training_set, clip_id=rating.dataset_clip.clip_id
    )
    mine = {g: float(g == rating.grade) for g in GRADES}
    series = [(f"experts (n={found.n_experts})", found.p)]
    if prediction is not None:
        series.append(
            (f"model ({prediction.run.name})", dict(zip(GRADES, prediction.p, strict=True)))
        )
    series.append(("your grade", mine))
    context = {
        "rating": rating,
        "feedback": found,
        "prediction": prediction,
        "chart": distribution_bars(series, width=380),
        "player": _player(rating.dataset_clip.clip),
        "grades": [(g, GRADE_DESCRIPTIONS[g], found.p[g]) for g in GRADES],
        "remaining": trainee_remaining(signed_in(request), rating.training_set),
    }
    return render(request, "frontend/trainee_feedback.html", context)


def _progress_chart(progress: training.TraineeProgress) -> dict[str, object]:
    sessions = progress.sessions
    return line_chart(
        [
            ("mean share of experts agreeing", [s.performance.mean_share for s in sessions]),
            ("weighted kappa", [s.performance.kappa for s in sessions]),
        ],
        x_labels=[str(s.session) for s in sessions],
        low=0.0,
        high=1.0,
    )


def _confusion_rows(confusion: list[list[int]]) -> list[tuple[str, list[tuple[int, bool]]]]:
    return [
        (g, [(n, i == j) for j, n in enumerate(row)])
        for i, (g, row) in enumerate(zip(GRADES, confusion, strict=True))
    ]


@require_GET
@role_required(TRAINEE)
def trainee_progress(request: HttpRequest) -> HttpResponse:
    progress = training.trainee_progress(trainee=signed_in(request))
    context = {
        "progress": progress,
        "chart": _progress_chart(progress),
        "confusion": _confusion_rows(progress.overall.confusion),
        "grades": GRADES,
    }
    return render(request, "frontend/trainee_progress.html", context)


@require_http_methods(["GET", "POST"])
@role_required(CURATOR)
def trainee_list(request: HttpRequest) -> HttpResponse:
    """All trainees' progress; POST opens a training set of a dataset version's clips."""
    if request.method == "POST":
        version = get_object_or_404(DatasetVersion, pk=request.POST.get("version") or 0)
        with refusal_shown(request, also=(ValueError,)) as refused:
            training_set = training.training_set_create(
                name=request.POST.get("name", ""),
                version=version,
                min_votes=int(request.POST.get("min_votes") or 1),
                created_by=signed_in(request),
            )
        if not refused:
            messages.success(request, f"training set {training_set.name} opened")
        return redirect("trainee-list")
    context = {
        "rows": training.trainees_overview(),
        "sets": TrainingSet.objects.select_related("version").order_by("-created_at"),
        "versions": DatasetVersion.objects.filter(status=DatasetVersion.Status.READY),
        "pass_kappa": training.pass_kappa(),
    }
    return render(request, "frontend/trainee_list.html", context)


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
