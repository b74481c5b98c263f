"""Trainee practice pages: grade a practice clip, see the feedback, follow one's progress; the
curators' table of trainees, where they open practice sets. The pages post a form; the JSON
API of the same operations is modeling.practice_api. Old /train/... addresses redirect here."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from annotation.access.roles import CURATOR, TRAINEE, signed_in
from annotation.grades import GRADE_DESCRIPTIONS, GRADES
from annotation.player import clip_player
from datasets import practice
from datasets.models import DatasetClip, DatasetVersion, TraineeRating, TrainingSet
from frontend.charts import distribution_bars, line_chart
from frontend.refusals import refusal_shown
from frontend.views import role_required
from modeling import feedback


def _set_id(request: HttpRequest) -> int | None:
    raw = request.GET.get("set") or request.POST.get("practice_set")
    return int(raw) if raw and raw.isdigit() else None


@require_http_methods(["GET", "POST"])
@role_required(TRAINEE)
def practice_page(request: HttpRequest) -> HttpResponse:
    """GET: the next practice clip, blind. POST: grade it, then see the feedback."""
    practice_set = practice.trainee_set_current(trainee=signed_in(request), set_id=_set_id(request))
    dclip: DatasetClip | None
    if request.method == "POST" and practice_set is not None:
        dclip = get_object_or_404(
            DatasetClip, version=practice_set.version, clip_external_id=request.POST.get("clip_id")
        )
        with refusal_shown(request, also=(ValueError,)) as refused:
            try:
                rating = practice.trainee_rating_submit(
                    trainee=signed_in(request),
                    practice_set=practice_set,
                    dataset_clip=dclip,
                    grade=request.POST.get("grade", ""),
                    time_spent_ms=int(request.POST.get("time_spent_ms") or 0),
                )
            except practice.AlreadyGradedError as exc:  # a second post: show its feedback
                rating = exc.rating
        if refused:
            return redirect(f"{request.path}?set={practice_set.pk}")
        return redirect("practice-feedback", pk=rating.pk)
    dclip = (
        practice.trainee_clip_next(trainee=signed_in(request), practice_set=practice_set)
        if practice_set
        else None
    )
    context = {
        "practice_set": practice_set,
        "sets": practice.practice_sets_active(),
        "dclip": dclip,
        "player": clip_player(dclip.clip) if dclip else None,
        "remaining": (
            practice.practice_set_remaining(trainee=signed_in(request), practice_set=practice_set)
            if practice_set
            else 0
        ),
        "grades": [(g, GRADE_DESCRIPTIONS[g]) for g in GRADES],
    }
    return render(request, "frontend/practice.html", context)


@require_GET
@role_required(TRAINEE)
def practice_feedback(request: HttpRequest, pk: int) -> HttpResponse:
    # Object-level permission: a trainee sees feedback on their own grades only.
    rating = get_object_or_404(
        TraineeRating.objects.select_related("dataset_clip__clip__video", "training_set"),
        pk=pk,
        trainee=signed_in(request),
    )
    found = practice.trainee_feedback(rating=rating)
    prediction = feedback.trainee_prediction(
        practice_set=rating.training_set, clip_id=rating.dataset_clip.clip_id
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
        "player": clip_player(rating.dataset_clip.clip),
        "grades": [(g, GRADE_DESCRIPTIONS[g], found.p[g]) for g in GRADES],
        "remaining": practice.practice_set_remaining(
            trainee=signed_in(request), practice_set=rating.training_set
        ),
    }
    return render(request, "frontend/practice_feedback.html", context)


def _progress_chart(progress: practice.TraineeProgress) -> dict[str, object]:
    sessions = progress.sessions
    return line_chart(
        [
            ("mean share of experts agreeing", [s.performance.mean_share for s in sessions]),
            ("weighted kappa", [s.performance.kappa for s in sessions]),
        ],
        x_labels=[str(s.session) for s in sessions],
        low=0.0,
        high=1.0,
        x_label="session",
        reference=(
            ("kappa needed to qualify", progress.pass_kappa)
            if progress.pass_kappa is not None
            else None
        ),
    )


def _confusion_rows(confusion: list[list[int]]) -> list[tuple[str, list[tuple[int, bool]]]]:
    return [
        (g, [(n, i == j) for j, n in enumerate(row)])
        for i, (g, row) in enumerate(zip(GRADES, confusion, strict=True))
    ]


@require_GET
@role_required(TRAINEE)
def practice_progress(request: HttpRequest) -> HttpResponse:
    progress = practice.trainee_progress(trainee=signed_in(request))
    context = {
        "progress": progress,
        "chart": _progress_chart(progress),
        "confusion": _confusion_rows(progress.overall.confusion),
        "grades": GRADES,
    }
    return render(request, "frontend/practice_progress.html", context)


@require_http_methods(["GET", "POST"])
@role_required(CURATOR)
def trainee_list(request: HttpRequest) -> HttpResponse:
    """All trainees' progress; POST opens a practice set of a dataset version's clips."""
    if request.method == "POST":
        version = get_object_or_404(DatasetVersion, pk=request.POST.get("version") or 0)
        with refusal_shown(request, also=(ValueError,)) as refused:
            practice_set = practice.practice_set_create(
                name=request.POST.get("name", ""),
                version=version,
                min_votes=int(request.POST.get("min_votes") or 1),
                created_by=signed_in(request),
            )
        if not refused:
            messages.success(request, f"practice set {practice_set.name} opened")
        return redirect("trainee-list")
    context = {
        "rows": practice.trainees_overview(),
        "sets": TrainingSet.objects.select_related("version").order_by("-created_at"),
        "versions": DatasetVersion.objects.filter(status=DatasetVersion.Status.READY),
        "pass_kappa": practice.pass_kappa(),
    }
    return render(request, "frontend/trainee_list.html", context)
