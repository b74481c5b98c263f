"""REST API of dataset versions (curators and admins only). Versions are created and read;
no endpoint changes or deletes a built version."""

from __future__ import annotations

from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access.audit import audit_record
from annotation.access.permissions import IsCurator
from annotation.access.roles import signed_in
from datasets import selectors, services
from datasets.models import DatasetVersion


class DatasetVersionSerializer(serializers.ModelSerializer):
    fold_balance = serializers.SerializerMethodField()

    class Meta:
        model = DatasetVersion
        fields = [
            "id", "name", "description", "licence", "filters", "n_folds", "seed",
            "inner_val_fraction", "status", "frozen", "progress", "progress_message", "error",
            "content_hash", "n_clips", "n_ratings", "n_patients", "summary", "fold_balance",
            "pseudonymous_clip_ids",
            "created_at", "started_at", "finished_at",
        ]  # fmt: skip
        read_only_fields = fields

    def get_fold_balance(self, version: DatasetVersion) -> list[dict]:
        return selectors.version_fold_balance(version)


class SelectionSerializer(serializers.Serializer):
    """The filters and fold settings of a build (`datasets.selection`)."""

    min_votes = serializers.IntegerField(required=False, min_value=1, max_value=10**6, default=1)
    retired_only = serializers.BooleanField(required=False, default=False)
    created_from = serializers.DateTimeField(required=False, allow_null=True)
    created_to = serializers.DateTimeField(required=False, allow_null=True)
    exclude_cannot_judge_majority = serializers.BooleanField(required=False, default=True)
    exclude_raters = serializers.ListField(
        child=serializers.CharField(max_length=150), required=False, default=list, max_length=500
    )
    exclude_fast_grades = serializers.BooleanField(required=False, default=False)
    max_rater_model_emd = serializers.FloatField(
        required=False, allow_null=True, default=None, min_value=0.0, max_value=4.0
    )
    n_folds = serializers.IntegerField(required=False, min_value=2, max_value=20, default=3)
    # The version's seed column is a 32-bit integer; numpy takes no negative seed.
    seed = serializers.IntegerField(required=False, default=0, min_value=0, max_value=2**31 - 1)


class DatasetVersionCreateSerializer(SelectionSerializer):
    name = serializers.SlugField(max_length=64)
    description = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    licence = serializers.CharField(required=False, max_length=200)
    pseudonymous_clip_ids = serializers.BooleanField(
        required=False,
        default=True,
        help_text="the export names clips by per-version pseudonyms (false: the platform's ids)",
    )


class SelectionPreviewSerializer(serializers.Serializer):
    clips = serializers.IntegerField()
    votes = serializers.IntegerField()
    patients = serializers.IntegerField()
    raters = serializers.IntegerField()
    modes = serializers.DictField(child=serializers.IntegerField())
    left_out = serializers.DictField(child=serializers.IntegerField())
    folds = serializers.ListField(child=serializers.DictField(child=serializers.IntegerField()))
    folds_exact = serializers.BooleanField()
    problem = serializers.CharField()
    filters = serializers.DictField()


class DatasetSelectionPreviewApi(APIView):
    """What a build with these filters (query parameters, as for POST /api/datasets/; repeat
    exclude_raters per id) would freeze now: clips, votes, patients, raters, grade modes, the
    estimated balance per fold, and what each filter left out. Nothing is written."""

    permission_classes = [IsCurator]

    @extend_schema(parameters=[SelectionSerializer], responses=SelectionPreviewSerializer)
    def get(self, request: Request) -> Response:
        data = SelectionSerializer(data=request.query_params)
        data.is_valid(raise_exception=True)
        return Response(services.selection_preview(**data.validated_data))


class DatasetVersionListCreateApi(generics.ListAPIView):
    """List versions; POST creates one and queues its build."""

    permission_classes = [IsCurator]
    serializer_class = DatasetVersionSerializer
    queryset = DatasetVersion.objects.all()

    @extend_schema(
        request=DatasetVersionCreateSerializer, responses={201: DatasetVersionSerializer}
    )
    def post(self, request: Request) -> Response:
        data = DatasetVersionCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = services.dataset_version_create(
            created_by=signed_in(request), **data.validated_data
        )
        return Response(DatasetVersionSerializer(version).data, status=status.HTTP_201_CREATED)


class DatasetVersionDetailApi(generics.RetrieveAPIView):
    """One version. There is no PUT, PATCH or DELETE: a built version is immutable."""

    permission_classes = [IsCurator]
    serializer_class = DatasetVersionSerializer
    queryset = DatasetVersion.objects.all()
    lookup_field = "name"


class DatasetVersionDownloadApi(APIView):
    """The export as one uncompressed tar archive, streamed (memory stays bounded)."""

    permission_classes = [IsCurator]

    @extend_schema(responses={(200, "application/x-tar"): OpenApiTypes.BINARY})
    def get(self, request: Request, name: str) -> HttpResponseBase:
        version = get_object_or_404(DatasetVersion, name=name, frozen=True)
        response = services.export_download_response(version, user=request.user, request=request)
        audit_record(action="export_download", user=request.user, obj=version, request=request)
        return response


class ClipChangeSerializer(serializers.Serializer):
    clip_id = serializers.CharField()
    emd = serializers.FloatField()
    p_a = serializers.ListField(child=serializers.FloatField())
    p_b = serializers.ListField(child=serializers.FloatField())


class VersionDiffSerializer(serializers.Serializer):
    a = serializers.CharField()
    b = serializers.CharField()
    added = serializers.ListField(child=serializers.CharField())
    removed = serializers.ListField(child=serializers.CharField())
    unchanged = serializers.IntegerField()
    changed = ClipChangeSerializer(many=True)


class DatasetVersionDiffApi(APIView):
    """Clips added and removed, and distributions changed (EMD per clip), from a to b."""

    permission_classes = [IsCurator]

    @extend_schema(responses=VersionDiffSerializer)
    def get(self, request: Request, name: str, other: str) -> Response:
        a = get_object_or_404(DatasetVersion, name=name, frozen=True)
        b = get_object_or_404(DatasetVersion, name=other, frozen=True)
        diff = selectors.version_diff(a, b)
        return Response(
            {
                "a": a.name,
                "b": b.name,
                "added": diff.added,
                "removed": diff.removed,
                "unchanged": diff.unchanged,
                "changed": [
                    {"clip_id": c.clip_id, "emd": c.emd, "p_a": c.p_a, "p_b": c.p_b}
                    for c in diff.changed
                ],
            }
        )
