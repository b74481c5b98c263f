"""Training run and experiment grid pages (curators and admins; researchers are curators).

The figures are SVG strings from ``modeling.figures`` (every text escaped, colours as SVG
attributes), marked safe here; the live progress comes from static/frontend/training.js.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotation.roles import CURATOR
from datasets.models import DatasetVersion
from frontend.refusals import refusal_shown
from frontend.views import role_required
from modeling import selectors, services
from modeling.ml.backbones import BACKBONES
from modeling.ml.losses import LOSSES
from modeling.ml.train import OPTIMIZERS
from modeling.models import ExperimentGrid, JobStatus, TrainingRun
from modeling.report import report_body_html, table_html


def _markup(text: str) -> SafeString:
    """SVG/HTML built by modeling.figures and modeling.report, which escape every text
    (labels, names, captions) they put in their markup."""
    return mark_safe(text)  # noqa: S308


def _choices(values: tuple[str, ...] | list[str]) -> list[tuple[str, str]]:
    return [(v, v) for v in values]


class TrainingOptionsForm(forms.Form):
    dataset = forms.ModelChoiceField(
        queryset=DatasetVersion.objects.filter(frozen=True, status=DatasetVersion.Status.READY),
        to_field_name="name",
        help_text="a built dataset version",
    )
    name = forms.CharField(max_length=120, required=False)
    preset = forms.ChoiceField(
        choices=_choices(["small", "paper"]),
        help_text="small: trains from scratch on a CPU; paper: the paper's networks (GPU)",
    )
    # Initial values: what trained best from scratch on the small presets in
    # benchmarks/training.py. The paper fine-tunes pretrained backbones with SGD, lr 1e-3.
    epochs = forms.IntegerField(min_value=1, max_value=10000, initial=40)
    optimizer = forms.ChoiceField(
        choices=_choices(list(OPTIMIZERS)),
        initial="adamw",
        help_text="the paper: SGD (momentum 0.9) on pretrained backbones; from scratch, AdamW "
        "learns much faster",
    )
    lr = forms.FloatField(
        min_value=1e-8,
        max_value=10.0,
        initial=3e-4,
        label="Learning rate",
        help_text="3e-4 from scratch (small presets); 1e-3 with SGD on pretrained weights",
    )
    head_lr_scale = forms.FloatField(
        min_value=1e-3,
        max_value=1000.0,
        required=False,
        initial=20.0,
        label="Head learning rate x",
        help_text="the head learns this many times faster than the backbone (the paper: 1)",
    )
    weight_decay = forms.FloatField(
        min_value=0.0,
        max_value=1.0,
        required=False,
        initial=0.05,
        help_text="blank: the optimiser's default (the paper: 5e-4 with SGD)",
    )
    batch_size = forms.IntegerField(
        min_value=1, required=False, initial=16, help_text="blank: the preset's (16 small)"
    )
    fair_sampling = forms.BooleanField(
        required=False, initial=False, help_text="balance grade-mode classes in every epoch"
    )
    augment = forms.BooleanField(
        required=False, initial=True, help_text="rotation, mirror, shift, brightness/contrast"
    )
    morphometry = forms.NullBooleanField(
        required=False,
        label="Head morphometry",
        help_text="the head also takes the head's measured shape and vacuoles; unknown: on "
        "for the small preset, off for paper",
    )
    head_hidden = forms.IntegerField(
        min_value=0,
        max_value=4096,
        required=False,
        label="Head hidden width",
        help_text="0: the paper's linear head; blank: 64 for the small preset, 0 for paper",
    )
    early_stopping_patience = forms.IntegerField(
        min_value=0, initial=10, label="Early-stopping patience", help_text="epochs; 0 = off"
    )
    seed = forms.IntegerField(min_value=0, initial=0)


class TrainingRunForm(TrainingOptionsForm):
    backbone = forms.ChoiceField(choices=_choices(list(BACKBONES)), initial="timesformer")
    loss = forms.ChoiceField(choices=_choices(list(LOSSES)), initial="emd")

    field_order = ["dataset", "name", "backbone", "loss"]


class ExperimentGridForm(TrainingOptionsForm):
    backbones = forms.MultipleChoiceField(
        choices=_choices(list(BACKBONES)),
        initial=list(BACKBONES),
        widget=forms.CheckboxSelectMultiple,
    )
    losses = forms.MultipleChoiceField(
        choices=_choices(list(services.GRID_LOSSES)),
        initial=list(services.GRID_LOSSES),
        widget=forms.CheckboxSelectMultiple,
    )

    field_order = ["dataset", "name", "backbones", "losses"]


def _start_from_form(
    request: HttpRequest, form: forms.Form, start: Callable[[dict[str, Any]], Any]
) -> Any:
    """Call ``start(cleaned_data)`` for a valid POSTed form; a service error goes to the form."""
    if request.method != "POST" or not form.is_valid():
        return None
    with refusal_shown(request, form=form):
        return start(dict(form.cleaned_data))
    return None


@require_http_methods(["GET", "POST"])
@role_required(CURATOR)
def training_run_list(request: HttpRequest) -> HttpResponse:
    form = TrainingRunForm(request.POST or None)
    run = _start_from_form(
        request,
        form,
        lambda data: services.training_run_start(
            version=data["dataset"],
            name=data["name"] or None,
            config=services.training_config_from_options(data),
            created_by=request.user,
        ),
    )
    if run is not None:
        return redirect("training-run-detail", pk=run.pk)
    runs = TrainingRun.objects.select_related("version", "created_by")
    page = Paginator(runs, 50).get_page(request.GET.get("page"))
    return render(request, "frontend/training_list.html", {"page": page, "form": form})


@require_GET
@role_required(CURATOR)
def training_run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(TrainingRun.objects.select_related("version", "grid"), pk=pk)
    figures = [(f.caption, _markup(f.svg)) for f in selectors.run_figures(run)]
    metrics = _markup(table_html(selectors.run_fold_table(run)) if run.fold_metrics else "")
    return render(
        request,
        "frontend/training_detail.html",
        {
            "run": run,
            "config": sorted(run.config.items()),
            "figures": figures,
            "metrics_table": metrics,
            "n_predictions": run.predictions.count(),
            "resumable": run.status in (JobStatus.FAILED, JobStatus.CANCELLED)
            or (run.status == JobStatus.PENDING and run.attempt > 0)
            or services.training_run_is_stalled(run),
        },
    )


def _run_action(
    request: HttpRequest, pk: int, action: Callable[[TrainingRun], str]
) -> HttpResponse:
    run = get_object_or_404(TrainingRun, pk=pk)
    with refusal_shown(request):
        messages.success(request, action(run))
    return redirect("training-run-detail", pk=run.pk)


@require_POST
@role_required(CURATOR)
def training_run_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    def cancel(run: TrainingRun) -> str:
        run = services.training_run_cancel(run=run, by=request.user)
        return "run cancelled" if run.status == JobStatus.CANCELLED else "stopping the run…"

    return _run_action(request, pk, cancel)


@require_POST
@role_required(CURATOR)
def training_run_resume(request: HttpRequest, pk: int) -> HttpResponse:
    def resume(run: TrainingRun) -> str:
        services.training_run_resume(run=run)
        return "queued: the run continues from its checkpoints"

    return _run_action(request, pk, resume)


@require_POST
@role_required(CURATOR)
def training_run_predict_new(request: HttpRequest, pk: int) -> HttpResponse:
    def predict(run: TrainingRun) -> str:
        n = services.predictions_new_clips_enqueue(run=run)
        return (
            f"queued predictions for {n} clip(s) outside the version"
            if n
            else ("every clip outside the version has a prediction of this run already")
        )

    return _run_action(request, pk, predict)


@require_http_methods(["GET", "POST"])
@role_required(CURATOR)
def experiment_grid_list(request: HttpRequest) -> HttpResponse:
    form = ExperimentGridForm(request.POST or None)
    grid = _start_from_form(
        request,
        form,
        lambda data: services.experiment_grid_start(
            version=data["dataset"],
            name=data["name"] or None,
            backbones=data["backbones"],
            losses=data["losses"],
            preset=data["preset"],
            epochs=data["epochs"],
            base_config={
                k: v
                for k, v in services.training_config_from_options(data).items()
                if k not in ("preset", "epochs")
            },
            created_by=request.user,
        ),
    )
    if grid is not None:
        return redirect("experiment-grid-detail", pk=grid.pk)
    grids = ExperimentGrid.objects.select_related("version")
    page = Paginator(grids, 50).get_page(request.GET.get("page"))
    return render(request, "frontend/grid_list.html", {"page": page, "form": form})


@require_GET
@role_required(CURATOR)
def experiment_grid_detail(request: HttpRequest, pk: int) -> HttpResponse:
    grid = get_object_or_404(ExperimentGrid.objects.select_related("version"), pk=pk)
    report = selectors.grid_report(grid)
    body = report_body_html(
        intro=report.intro, tables=report.tables, figures=report.figures, inline_svg=True
    )
    return render(
        request,
        "frontend/grid_detail.html",
        {
            "grid": grid,
            "runs": grid.runs.order_by("pk"),
            "report": _markup(body),
        },
    )


@require_POST
@role_required(CURATOR)
def experiment_grid_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    grid = get_object_or_404(ExperimentGrid, pk=pk)
    with refusal_shown(request):
        services.experiment_grid_cancel(grid=grid, by=request.user)
        messages.success(request, "the grid's unfinished runs are being cancelled")
    return redirect("experiment-grid-detail", pk=grid.pk)
