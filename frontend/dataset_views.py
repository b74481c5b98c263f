"""Dataset version pages (curators and admins)."""

from __future__ import annotations

from django import forms
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from annotation.access.audit import audit_record
from annotation.access.roles import CURATOR, signed_in
from annotation.grades import GRADES
from datasets import selectors, services
from datasets.models import DatasetVersion
from frontend.charts import bar_chart
from frontend.markdown_html import markdown_html
from frontend.refusals import refusal_shown
from frontend.views import role_required


class DatasetVersionForm(forms.Form):
    name = forms.SlugField(max_length=64, help_text="Letters, digits, - and _; e.g. mersv-2026-11")
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    licence = forms.CharField(max_length=200, initial="Internal research use only")
    min_votes = forms.IntegerField(min_value=1, max_value=10**6, initial=1)
    retired_only = forms.BooleanField(required=False)
    created_from = forms.DateTimeField(required=False, help_text="clips ingested from (UTC)")
    created_to = forms.DateTimeField(required=False, help_text="clips ingested until (UTC)")
    exclude_cannot_judge_majority = forms.BooleanField(required=False, initial=True)
    exclude_raters = forms.CharField(
        required=False,
        max_length=5000,
        help_text="expert ids whose votes are left out, separated by commas or spaces",
    )
    exclude_fast_grades = forms.BooleanField(
        required=False, help_text="leave out the grades the dashboard flags as very fast"
    )
    max_rater_model_emd = forms.FloatField(
        required=False,
        min_value=0.0,
        max_value=4.0,
        label="Max rater-model EMD",
        help_text="leave out clips whose severity-corrected distribution lies further than this "
        "(EMD, 0..4) from the raw one; empty: keep all",
    )
    n_folds = forms.IntegerField(min_value=2, max_value=20, initial=3)
    seed = forms.IntegerField(initial=0, min_value=0, max_value=2**31 - 1)
    pseudonymous_clip_ids = forms.BooleanField(
        required=False,
        initial=True,
        label="Pseudonymous clip ids",
        help_text="the export names clips by per-version pseudonyms (unticked: the platform's ids)",
    )

    def clean_exclude_raters(self) -> list[str]:
        return self.cleaned_data["exclude_raters"].replace(",", " ").split()


@require_http_methods(["GET", "POST"])
@role_required(CURATOR)
def dataset_list(request: HttpRequest) -> HttpResponse:
    # ?name=... fills in the name (the link on a failed version's page: its name is free).
    form = DatasetVersionForm(request.POST or None, initial={"name": request.GET.get("name", "")})
    if request.method == "POST" and form.is_valid():
        with refusal_shown(request, form=form) as refused:
            version = services.dataset_version_create(
                created_by=signed_in(request), **form.cleaned_data
            )
        if not refused:
            return redirect("dataset-detail", name=version.name)
    versions = DatasetVersion.objects.all()
    return render(
        request,
        "frontend/dataset_list.html",
        {"versions": versions, "form": form, "grades": GRADES},
    )


@require_GET
@role_required(CURATOR)
def dataset_detail(request: HttpRequest, name: str) -> HttpResponse:
    version = get_object_or_404(DatasetVersion, name=name)
    others = DatasetVersion.objects.filter(frozen=True).exclude(pk=version.pk)
    diff = None
    other_name = request.GET.get("diff")
    if other_name and version.frozen:
        other = get_object_or_404(DatasetVersion, name=other_name, frozen=True)
        diff = {"other": other, "result": selectors.version_diff(other, version)}
    figure3 = version.summary.get("figure3", {})
    return render(
        request,
        "frontend/dataset_detail.html",
        {
            "version": version,
            "balance": selectors.version_fold_balance(version),
            "datasheet": markdown_html(selectors.version_readme(version)),
            "filters": sorted(version.filters.items()),
            "mode_hist": figure3.get("mode_hist", {}),
            "mode_chart": bar_chart(figure3.get("mode_hist", {})),
            "others": others,
            "diff": diff,
            "export_problems": services.export_problems(version),
        },
    )


@require_GET
@role_required(CURATOR)
def dataset_download(request: HttpRequest, name: str) -> HttpResponseBase:
    """The export, or back to the version page (which lists what differs) when its files no
    longer match the frozen manifest."""
    version = get_object_or_404(DatasetVersion, name=name, frozen=True)
    with refusal_shown(request) as refused:
        response = services.export_download_response(version, user=request.user, request=request)
    if refused:
        return redirect("dataset-detail", name=version.name)
    audit_record(action="export_download", user=request.user, obj=version, request=request)
    return response
