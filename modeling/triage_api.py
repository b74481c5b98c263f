"""The sample triage API (curators only): a sample's clips ranked by a model's prediction.
The trainee practice API is modeling.practice_api."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access.permissions import IsCurator
from annotation.models import Video
from modeling import feedback
from modeling.models import JobStatus, TrainingRun


class GradeMapField(serializers.DictField):
    child = serializers.FloatField()


class TriageRowOutputSerializer(serializers.Serializer):
    rank = serializers.IntegerField(allow_null=True, help_text="1 = best; null: no prediction.")
    clip_id = serializers.CharField(source="clip.external_id")
    target_index = serializers.IntegerField(source="clip.target_index")
    p_good = serializers.FloatField(allow_null=True, help_text="Predicted p_A + p_B.")
    prediction = GradeMapField(allow_null=True)
    kinematics = GradeMapField()


class TriageOutputSerializer(serializers.Serializer):
    video = serializers.IntegerField(source="video.pk")
    run = serializers.IntegerField(source="run.pk")
    model_version = serializers.CharField(source="run.model_version")
    pending = serializers.IntegerField(help_text="Clips whose prediction is still being made.")
    error = serializers.CharField(help_text="Why predictions could not be made; empty if fine.")
    clips = TriageRowOutputSerializer(source="rows", many=True)


def triage_run(run_id: str | None) -> TrainingRun:
    """The run asked for (succeeded runs only), else the newest succeeded run."""
    runs = feedback.runs_succeeded()
    if not run_id:
        run = runs.first()
        if run is None:
            raise ValidationError({"run": "no training run has succeeded yet; train a model"})
        return run
    try:
        return runs.get(pk=int(run_id))
    except (TypeError, ValueError, TrainingRun.DoesNotExist):
        raise ValidationError(
            {"run": f"run {run_id!r} is not a {JobStatus.SUCCEEDED.label.lower()} training run"}
        ) from None


class TriageApi(APIView):
    """Curators only: a model's prediction must never reach an expert before they grade."""

    permission_classes = [IsCurator]

    @extend_schema(
        operation_id="triage",
        summary="The sample's clips ranked by predicted p_A + p_B (best first)",
        parameters=[OpenApiParameter("run", int, required=False)],
        responses=TriageOutputSerializer,
    )
    def get(self, request: Request, video_id: int) -> Response:
        video = get_object_or_404(Video, pk=video_id)
        run = triage_run(request.query_params.get("run"))
        return Response(TriageOutputSerializer(feedback.sample_triage(video=video, run=run)).data)
