"""REST API of grade distributions and panel statistics, for curators and admins only.

GET /api/distributions/            every clip's distribution, raw and severity-corrected (paged;
                                   sort and filters as on the clips page)
GET /api/distributions/<clip_id>/  one clip's
GET /api/distributions.csv         the distribution table: clip_id, p_A..p_E, n, mean, std, mode
                                   (clips without votes are left out)
GET /api/statistics/?bootstrap=N   Figure 3, agreement, per-expert table, retirement progress
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access.permissions import IsCurator
from annotation.aggregation import clip_list, selectors
from annotation.models import Clip

_GRADE_MAP_HELP = 'keyed by grade: {"A": .., "B": .., "C": .., "D": .., "E": ..}'


class DistributionOutputSerializer(serializers.Serializer):
    clip_id = serializers.CharField()
    counts = serializers.DictField(child=serializers.IntegerField(), help_text=_GRADE_MAP_HELP)
    p = serializers.DictField(
        child=serializers.FloatField(),
        allow_null=True,
        help_text=f"the grade distribution (counts / n), {_GRADE_MAP_HELP}; null without votes",
    )
    n = serializers.IntegerField(help_text="expert votes")
    mean = serializers.FloatField(allow_null=True, help_text="mean grade score, A=1 .. E=5")
    std = serializers.FloatField(allow_null=True, help_text="population std of the scores")
    mode = serializers.CharField(help_text='the most voted grade (tie rule: see docs); "" if none')
    entropy = serializers.FloatField(allow_null=True, help_text="Shannon entropy of p in bits")
    retired = serializers.BooleanField(help_text="left the rating queue (settled)")
    corrected = serializers.DictField(
        child=serializers.FloatField(),
        allow_null=True,
        help_text="severity-corrected distribution from the rater model (the whole fitted "
        "panel's expected votes); null without votes",
    )


# The API pages with limit/offset; the clip list's own parameters (annotation.aggregation.
# clip_list) sort and filter, except its page number.
_PAGER_PARAMETERS = ("limit", "offset", "format")


@extend_schema_view(
    get=extend_schema(
        parameters=[
            OpenApiParameter(name, str, description=text)
            for name, text in clip_list.PARAMETER_HELP.items()
            if name != "page"  # the API pages with limit and offset
        ]
    )
)
class DistributionListApi(ListAPIView):
    """Every clip's grade distribution, raw and severity-corrected; sorted (default: by clip id)
    and filtered with the clips page's parameters: q, status, retired, votes_min, votes_max,
    mode, agreement_min, agreement_max, patient, sort (see annotation.aggregation.clip_list)."""

    permission_classes = [IsCurator]
    serializer_class = DistributionOutputSerializer
    queryset = Clip.objects.order_by("external_id")

    def get_queryset(self) -> QuerySet[Clip]:
        params = {
            key: str(value)  # the last value of a repeated parameter, as on the page
            for key, value in self.request.query_params.items()
            if key not in _PAGER_PARAMETERS and key != "page"
        }
        # A ClipListQueryError is a ServiceError: the API's handler answers 400 with it.
        return clip_list.clip_list_queryset(clip_list.clip_list_query_parse(params))

    def list(self, request: Request, *args: object, **kwargs: object) -> Response:
        # One page's distributions at once (vectorised), then the page's serializer.
        page = self.paginate_queryset(self.get_queryset())
        assert page is not None  # the API has a default paginator (settings.REST_FRAMEWORK)
        rows = selectors.clip_distributions(page, snapshot=selectors.rater_model_latest().snapshot)
        return self.get_paginated_response(DistributionOutputSerializer(rows, many=True).data)


class DistributionDetailApi(APIView):
    permission_classes = [IsCurator]

    @extend_schema(responses=DistributionOutputSerializer)
    def get(self, request: Request, clip_id: str) -> Response:
        """One clip's grade distribution, raw and severity-corrected."""
        clip = get_object_or_404(Clip, external_id=clip_id)
        snapshot = selectors.rater_model_latest().snapshot
        row = selectors.clip_distributions([clip], snapshot=snapshot)[0]
        return Response(DistributionOutputSerializer(row).data)


class _Echo:
    """A file-like object whose write returns the line, for csv.writer in a streamed reply."""

    def write(self, line: str) -> str:
        return line


def _csv_lines(rows: Iterable[list[str]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    for row in rows:
        yield writer.writerow(row)


class CsvRenderer(BaseRenderer):
    """Lets clients ask for text/csv (content negotiation happens before the view runs); the
    table itself is streamed by the view, so this only renders errors, as their detail text."""

    media_type = "text/csv"
    format = "csv"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        detail = data.get("detail", data) if isinstance(data, dict) else data
        return f"{detail}\n".encode()


class DistributionCsvApi(APIView):
    permission_classes = [IsCurator]
    renderer_classes = [JSONRenderer, CsvRenderer]

    @extend_schema(
        operation_id="distributions_csv",
        tags=["distributions"],
        responses={
            (200, "text/csv"): OpenApiResponse(
                response=OpenApiTypes.STR,
                description="clip_id, p_A, p_B, p_C, p_D, p_E, n, mean, std, mode: one row per "
                "clip with at least one vote, ordered by clip_id; p, mean and std with six "
                "decimals. Clips without votes are left out.",
            )
        },
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        """The grade distribution table as CSV, streamed."""
        response = StreamingHttpResponse(
            _csv_lines(selectors.distributions_csv_rows()), content_type="text/csv"
        )
        response["Content-Disposition"] = 'attachment; filename="distributions.csv"'
        return response


class AgreementOutputSerializer(serializers.Serializer):
    alpha = serializers.FloatField(allow_null=True, help_text="Krippendorff's alpha, ordinal")
    alpha_ci_low = serializers.FloatField(allow_null=True)
    alpha_ci_high = serializers.FloatField(allow_null=True)
    confidence = serializers.FloatField(help_text="of the percentile bootstrap interval")
    n_resamples = serializers.IntegerField(help_text="bootstrap resamples (0 = no interval)")
    n_clips_pairable = serializers.IntegerField(help_text="clips with at least two votes")
    fleiss_kappa = serializers.FloatField(allow_null=True)
    fleiss_kappa_ci_low = serializers.FloatField(
        allow_null=True, help_text="percentile bootstrap over clips, as alpha's"
    )
    fleiss_kappa_ci_high = serializers.FloatField(allow_null=True)


class ConsistencyOutputSerializer(serializers.Serializer):
    n_pairs = serializers.IntegerField(help_text="hidden repeats answered")
    exact_agreement = serializers.FloatField(allow_null=True)
    mean_abs_diff = serializers.FloatField(allow_null=True, help_text="in grade steps")


class ExpertOutputSerializer(serializers.Serializer):
    rater = serializers.CharField(help_text="pseudonymous user name")
    n_votes = serializers.IntegerField()
    n_compared = serializers.IntegerField(help_text="votes on clips someone else also rated")
    severity = serializers.FloatField(
        allow_null=True, help_text="mean score minus the leave-one-out panel mean (+ = harsher)"
    )
    model_severity = serializers.FloatField(
        allow_null=True, help_text="rater model severity in latent units (+ = harsher)"
    )
    kappa_quadratic = serializers.FloatField(
        allow_null=True, help_text="weighted kappa against the leave-one-out panel grade"
    )
    mean_emd = serializers.FloatField(
        allow_null=True, help_text="EMD of the vote to the leave-one-out distribution"
    )
    repeat_pairs = serializers.IntegerField()
    repeat_agreement = serializers.FloatField(allow_null=True)
    repeat_mean_abs_diff = serializers.FloatField(allow_null=True)
    median_time_ms = serializers.FloatField(allow_null=True)
    n_timed = serializers.IntegerField(help_text="grades with a measured time (not imported)")
    n_fast = serializers.IntegerField(help_text="very fast grades (see fast_grade_ms)")
    fast_share = serializers.FloatField(allow_null=True)
    flagged = serializers.BooleanField(help_text="has very fast grades")
    n_changed_after_panel = serializers.IntegerField(
        help_text="grade changes after seeing the panel (kept apart, never counted)"
    )


class RetirementOutputSerializer(serializers.Serializer):
    n_clips = serializers.IntegerField()
    n_retired = serializers.IntegerField()
    n_open = serializers.IntegerField()
    max_votes = serializers.IntegerField()
    votes_on_retired = serializers.IntegerField()
    votes_saved = serializers.IntegerField(
        help_text="votes the retired clips did not need, against max_votes each"
    )
    votes_saved_share = serializers.FloatField(allow_null=True)


class RaterModelOutputSerializer(serializers.Serializer):
    fitted_at = serializers.DateTimeField()
    fit_seconds = serializers.FloatField()
    converged = serializers.BooleanField()
    n_ratings = serializers.IntegerField(help_text="the expert ratings the fit saw")
    thresholds = serializers.ListField(child=serializers.FloatField())
    age_s = serializers.FloatField(help_text="seconds since the fit")
    stale = serializers.BooleanField(
        help_text="ratings changed since the fit: it is served until the queued refit is done"
    )
    refit_queued = serializers.BooleanField(help_text="a refit is queued or running")


class StatisticsOutputSerializer(serializers.Serializer):
    n_clips = serializers.IntegerField()
    n_rated_clips = serializers.IntegerField()
    n_raters = serializers.IntegerField()
    n_ratings = serializers.IntegerField()
    figure3 = serializers.JSONField(
        help_text="mean_edges, std_edges, mean_std_hist (rows = mean bins), mode_hist, "
        "votes_per_grade, ratings_per_clip (item k = clips with k votes), ratings_per_expert "
        "(aligned with experts)"
    )
    agreement = AgreementOutputSerializer()
    consistency = ConsistencyOutputSerializer()
    experts = ExpertOutputSerializer(many=True)
    retirement = RetirementOutputSerializer()
    rater_model = RaterModelOutputSerializer(allow_null=True)
    fast_grade_ms = serializers.IntegerField()
    fast_grade_fraction = serializers.FloatField()


class StatisticsQuerySerializer(serializers.Serializer):
    bootstrap = serializers.IntegerField(
        min_value=0,
        max_value=selectors.MAX_BOOTSTRAP,
        default=1000,
        help_text="bootstrap resamples of the alpha confidence interval (0 = none)",
    )


class StatisticsApi(APIView):
    permission_classes = [IsCurator]

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "bootstrap",
                int,
                description=f"resamples of alpha's CI, 0..{selectors.MAX_BOOTSTRAP} (default 1000)",
            )
        ],
        responses=StatisticsOutputSerializer,
    )
    def get(self, request: Request) -> Response:
        """The panel's statistics: Figure 3, agreement, per expert, retirement, rater model."""
        query = StatisticsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        stats = selectors.panel_statistics(bootstrap=query.validated_data["bootstrap"])
        return Response(StatisticsOutputSerializer(stats).data)
