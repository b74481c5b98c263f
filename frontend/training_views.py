"""Training run and experiment grid pages (curators and admins; researchers are curators).

The figures are SVG strings from ``modeling.figures`` (every text escaped, colours as SVG
attributes), marked safe here. While a run or a grid is active, static/frontend/training_live.js
polls the page's live endpoint (``training_run_live``, ``experiment_grid_live``) and swaps in
the regions it redraws with the same templates, so curves grow per epoch without a reload.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotation.access.roles import CURATOR, signed_in
from annotation.aggregation.retirement_service import retirement_policy
from datasets.models import DatasetVersion
from frontend.refusals import refusal_shown
from frontend.views import role_required
from modeling import selectors, services
from modeling.ml.backbones import BACKBONES
from modeling.ml.options import RECIPE_HELP, RECIPES, TrainOption
from modeling.ml.train import TRAIN_OPTIONS
from modeling.models import ExperimentGrid, JobStatus, TrainingRun
from modeling.report import report_body_html, table_html


def _markup(text: str) -> SafeString:
    """SVG/HTML built by modeling.figures and modeling.report, which escape every text
    (labels, names, captions) they put in their markup."""
    return mark_safe(text)  # noqa: S308


def _choices(values: Sequence[str]) -> list[tuple[str, str]]:
    return [(v, v) for v in values]


def training_option_form_fields(
    options: Sequence[TrainOption], *, exclude: Collection[str] = ()
) -> dict[str, forms.Field]:
    """One form field per training option (modeling.ml.options), showing its default as the
    initial value. Choices always have a value; any other option may be left blank, which
    takes the recipe's value or the default (a blank-allowed one: the preset's)."""
    generated: dict[str, forms.Field] = {}
    for option in options:
        if option.name in exclude:
            continue
        common: dict[str, Any] = {
            "initial": option.surface_default, "help_text": option.help, "label": option.spec.label,
        }  # fmt: skip
        bounds: dict[str, Any] = {"min_value": option.spec.min, "max_value": option.spec.max}
        if option.kind is bool and option.blank_allowed:
            generated[option.name] = forms.NullBooleanField(required=False, **common)
        elif option.kind is bool:
            generated[option.name] = forms.BooleanField(required=False, **common)
        elif option.spec.choices:
            generated[option.name] = forms.ChoiceField(
                choices=_choices(option.spec.choices), **common
            )
        elif option.kind is int:
            generated[option.name] = forms.IntegerField(required=False, **bounds, **common)
        elif option.kind is float:
            generated[option.name] = forms.FloatField(required=False, **bounds, **common)
        else:
            generated[option.name] = forms.CharField(
                required=False, max_length=option.spec.max_length, **common
            )
    return generated


class TrainingRequestForm(forms.Form):
    """What starting a run or a grid takes besides the training options."""

    dataset = forms.ModelChoiceField(
        queryset=DatasetVersion.objects.filter(frozen=True, status=DatasetVersion.Status.READY),
        to_field_name="name",
        help_text="a built dataset version",
    )
    name = forms.CharField(max_length=120, required=False)
    recipe = forms.ChoiceField(
        choices=[("", "none: the defaults below"), *_choices(tuple(RECIPES))],
        required=False,
        help_text=RECIPE_HELP,
    )

    def training_config(self) -> dict[str, Any]:
        """The TrainConfig fields asked for: the recipe's, overridden by the options changed
        from the default shown (a page cannot tell an untouched default from a chosen one)."""
        return services.training_config_from_options(
            self.cleaned_data, recipe=self.cleaned_data["recipe"], given=self.changed_data
        )


def training_request_form(
    name: str,
    options: Sequence[TrainOption],
    *,
    exclude: Collection[str] = (),
    extra: dict[str, forms.Field] | None = None,
) -> type[TrainingRequestForm]:
    """A request form with a field per option in ``options`` (and ``extra``), the request's
    own fields first."""
    attrs: dict[str, Any] = {
        **training_option_form_fields(options, exclude=exclude),
        **(extra or {}),
    }
    attrs["field_order"] = ["dataset", "name", *(extra or {}), "recipe"]
    return type(name, (TrainingRequestForm,), attrs)


TrainingRunForm = training_request_form("TrainingRunForm", TRAIN_OPTIONS)
ExperimentGridForm = training_request_form(
    "ExperimentGridForm",
    TRAIN_OPTIONS,
    exclude=("backbone", "loss"),
    extra={
        "backbones": forms.MultipleChoiceField(
            choices=_choices(list(BACKBONES)),
            initial=list(BACKBONES),
            widget=forms.CheckboxSelectMultiple,
        ),
        "losses": forms.MultipleChoiceField(
            choices=_choices(list(services.GRID_LOSSES)),
            initial=list(services.GRID_LOSSES),
            widget=forms.CheckboxSelectMultiple,
        ),
    },
)


def _start_from_form(
    request: HttpRequest, form: forms.Form, start: Callable[[dict[str, Any]], Any]
) -> Any:
    """Call ``start(cleaned_data)`` for a valid POSTed form; a service error goes to the form."""
    if request.method != "POST" or not form.is_valid():
        return None
    with refusal_shown(request, form=form):
        return start(dict(form.cleaned_data))
    return None


@require_POST
@role_required(CURATOR)
def training_run_production(request: HttpRequest, pk: int) -> HttpResponse:
    """Make the run the production run of retirement (action "choose"), or stop using any
    run (action "clear"). Audited; the rule is applied again to every clip."""
    from modeling.retirement_prior import retirement_run_choose

    def choose(run: TrainingRun) -> str:
        clear = request.POST.get("action") == "clear"
        policy, summary = retirement_run_choose(
            run=None if clear else run, user=signed_in(request), request=request
        )
        changed = f"{summary.retired} clip(s) retired, {summary.reopened} reopened"
        if clear:
            return f"retirement no longer uses a model prior; {changed}"
        return (
            f"run {run.pk} steers retirement with m = {policy.prior_weight:g} "
            f"({run.retirement_prior_fit.get('reason', '')}); {changed}"
        )

    return _run_action(request, pk, choose)


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
            config=form.training_config(),
            created_by=signed_in(request),
        ),
    )
    if run is not None:
        return redirect("training-run-detail", pk=run.pk)
    runs = TrainingRun.objects.select_related("version", "created_by")
    page = Paginator(runs, 50).get_page(request.GET.get("page"))
    return render(request, "frontend/training_list.html", {"page": page, "form": form})


def duration_text(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``: a training time as people read it."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


# The live regions of the run page: element id -> the template that draws its content. The
# page includes each once; the live endpoint redraws them for training_live.js.
RUN_REGIONS: dict[str, str] = {
    "run-progress": "frontend/_run_progress.html",
    "run-actions": "frontend/_run_actions.html",
    "run-folds-box": "frontend/_run_folds.html",
    "run-results": "frontend/_run_results.html",
}
GRID_REGIONS: dict[str, str] = {
    "grid-runs-box": "frontend/_grid_runs.html",
    "grid-report": "frontend/_grid_report.html",
}


def _run_context(run: TrainingRun) -> dict[str, Any]:
    """What the run page's live regions draw (one query per table they read)."""
    curves = selectors.run_curves(run)
    figures = [(f.caption, _markup(f.svg)) for f in selectors.run_figures(run, curves=curves)]
    metrics = _markup(
        "".join(
            table_html(table, table_id=f"run-metrics-table-{i + 1}")
            for i, table in enumerate(selectors.run_fold_tables(run))
        )
        if run.fold_metrics
        else ""
    )
    elapsed = selectors.run_elapsed_s(run)
    remaining = selectors.run_remaining_s(run, elapsed)
    stalled = services.training_run_is_stalled(run)
    stale_for = (
        duration_text((timezone.now() - run.heartbeat_at).total_seconds())
        if stalled and run.heartbeat_at is not None
        else ""
    )
    return {
        "run": run,
        "figures": figures,
        "curve_summaries": selectors.run_curve_summaries(curves),
        "metrics_table": metrics,
        "folds": selectors.run_fold_progress(run, curves),
        "n_epochs": sum(len(c.epochs) for c in curves),
        "epoch_limit": run.config.get("epochs"),
        "patience": run.config.get("early_stopping_patience"),
        "elapsed_s": elapsed,
        "elapsed_text": duration_text(elapsed),
        "remaining_text": duration_text(remaining) if remaining is not None else "",
        "stalled": stale_for,
        "n_predictions": run.predictions.count(),
        "retirement_policy": retirement_policy(),
        "resumable": run.status in (JobStatus.FAILED, JobStatus.CANCELLED)
        or (run.status == JobStatus.PENDING and run.attempt > 0)
        or stalled,
    }


def _live_answer(
    request: HttpRequest,
    regions: dict[str, str],
    context: dict[str, Any],
    *,
    active: bool,
    status: str,
    status_display: str,
) -> JsonResponse:
    """The live regions redrawn, for training_live.js: it swaps each region whose HTML
    changed, and stops polling once ``active`` is false (the final state drawn)."""
    answer = {
        "active": active,
        "status": status,
        "status_display": status_display,
        "regions": {
            region: render_to_string(template, context, request=request)
            for region, template in regions.items()
        },
    }
    response = JsonResponse(answer)
    response["Cache-Control"] = "no-store"
    return response


@require_GET
@role_required(CURATOR)
def training_run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(TrainingRun.objects.select_related("version", "grid"), pk=pk)
    context = _run_context(run)
    context["config"] = sorted(run.config.items())
    return render(request, "frontend/training_detail.html", context)


@require_GET
@role_required(CURATOR)
def training_run_live(request: HttpRequest, pk: int) -> JsonResponse:
    """The run page's live regions (progress, folds, metrics, figures) as they stand now."""
    run = get_object_or_404(TrainingRun.objects.select_related("version", "grid"), pk=pk)
    return _live_answer(
        request,
        RUN_REGIONS,
        _run_context(run),
        active=run.is_active,
        status=run.status,
        status_display=run.get_status_display(),
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
        run = services.training_run_cancel(run=run, by=signed_in(request))
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

    def start(data: dict[str, Any]) -> ExperimentGrid:
        config = form.training_config()
        return services.experiment_grid_start(
            version=data["dataset"],
            name=data["name"] or None,
            backbones=data["backbones"],
            losses=data["losses"],
            preset=config.pop("preset", services.training_option_default("preset")),
            epochs=config.pop("epochs", services.training_option_default("epochs")),
            base_config=config,
            created_by=signed_in(request),
        )

    grid = _start_from_form(request, form, start)
    if grid is not None:
        return redirect("experiment-grid-detail", pk=grid.pk)
    grids = ExperimentGrid.objects.select_related("version")
    page = Paginator(grids, 50).get_page(request.GET.get("page"))
    return render(request, "frontend/grid_list.html", {"page": page, "form": form})


def _grid_context(grid: ExperimentGrid) -> dict[str, Any]:
    report = selectors.grid_report(grid)
    body = report_body_html(
        intro=report.intro, tables=report.tables, figures=report.figures, inline_svg=True
    )
    return {
        "grid": grid,
        "active": grid.status in (JobStatus.PENDING, JobStatus.RUNNING),
        "runs": grid.runs.order_by("pk"),
        "report": _markup(body),
        "report_files": selectors.grid_report_file_names(grid, report),
    }


@require_GET
@role_required(CURATOR)
def experiment_grid_detail(request: HttpRequest, pk: int) -> HttpResponse:
    grid = get_object_or_404(ExperimentGrid.objects.select_related("version"), pk=pk)
    return render(request, "frontend/grid_detail.html", _grid_context(grid))


@require_GET
@role_required(CURATOR)
def experiment_grid_live(request: HttpRequest, pk: int) -> JsonResponse:
    """The grid page's runs table and report (the paper's tables, filled in by the settings
    finished so far) as they stand now."""
    grid = get_object_or_404(ExperimentGrid.objects.select_related("version"), pk=pk)
    context = _grid_context(grid)
    return _live_answer(
        request,
        GRID_REGIONS,
        context,
        active=context["active"],
        status=grid.status,
        status_display=grid.get_status_display(),
    )


# What a report file may do when a browser opens it: show itself and its figures (the SVGs
# beside it, same origin), never run a script or load anything else.
_REPORT_FILE_CSP = (
    "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; form-action 'none'"
)


@require_GET
@role_required(CURATOR)
def experiment_grid_report_file(request: HttpRequest, pk: int, name: str) -> HttpResponse:
    """A file of the grid's written report (report.html, report.md, its SVG figures), read
    from the runs storage: a report a training worker on another host wrote is served by
    any web process. Streamed through the app (files of some kB) so the role is checked on
    every file and report.html's relative links to its figures keep working."""
    grid = get_object_or_404(ExperimentGrid, pk=pk)
    data = selectors.grid_report_file(grid, name)
    if data is None:
        raise Http404("no such report file")
    content_type = selectors.REPORT_FILE_TYPES[name[name.rindex(".") :].lower()]
    response = HttpResponse(data, content_type=content_type)
    response["Content-Security-Policy"] = _REPORT_FILE_CSP
    response["Cache-Control"] = "private, no-cache"
    if name.endswith(".md"):
        response["Content-Disposition"] = f'attachment; filename="grid{grid.pk}-{name}"'
    return response


@require_POST
@role_required(CURATOR)
def experiment_grid_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    grid = get_object_or_404(ExperimentGrid, pk=pk)
    with refusal_shown(request):
        services.experiment_grid_cancel(grid=grid, by=signed_in(request))
        messages.success(request, "the grid's unfinished runs are being cancelled")
    return redirect("experiment-grid-detail", pk=grid.pk)
