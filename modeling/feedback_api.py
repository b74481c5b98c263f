"""The trainee API (next clip, grade with feedback, progress) and the sample triage API.

Trainees are blind until they grade: the clip they receive is the experts' blind clip
serializer; the expert distribution and the model's prediction come only in the answer to
their own grade. Views parse, check the role, call one service or selector, render.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access.permissions import IsCurator, IsTrainee
from annotation.access.roles import signed_in
from annotation.grades import GRADES
from annotation.grading.api import GradingClipOutputSerializer
from annotation.grading.checks import MAX_TIME_SPENT_MS
from annotation.models import Video
from datasets import training
from datasets.models import DatasetClip, TraineeRating, TrainingSet
from modeling import feedback
from modeling.models import JobStatus, Prediction, TrainingRun

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def _training_set(trainee: User, set_id: str | None) -> TrainingSet:
    try:
        wanted = None if not set_id else int(set_id)
    except (TypeError, ValueError):
        raise ValidationError({"set": "give the training set's id, a whole number"}) from None
    found = training.trainee_set_current(trainee=trainee, set_id=wanted)
    if found is None:
        raise ValidationError({"set": "no active training set; ask a curator to open one"})
    return found


class TraineeClipOutputSerializer(serializers.Serializer):
    training_set = serializers.IntegerField(source="training_set.pk")
    clip = GradingClipOutputSerializer(source="dataset_clip.clip")
    remaining = serializers.IntegerField(help_text="Clips of the set you have not graded.")


def trainee_remaining(trainee, training_set: TrainingSet) -> int:
    graded = TraineeRating.objects.filter(trainee=trainee, training_set=training_set)
    return training_set.clips.exclude(pk__in=graded.values("dataset_clip_id")).count()


class TraineeNextApi(APIView):
    permission_classes = [IsTrainee]

    @extend_schema(
        operation_id="trainee_next",
        summary="The next training clip (no votes, no prediction); 204 when the set is done",
        parameters=[OpenApiParameter("set", int, required=False)],
        responses={200: TraineeClipOutputSerializer, 204: OpenApiResponse()},
    )
    def get(self, request: Request) -> Response:
        training_set = _training_set(signed_in(request), request.query_params.get("set"))
        dclip = training.trainee_clip_next(trainee=signed_in(request), training_set=training_set)
        if dclip is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        answer = {
            "training_set": training_set,
            "dataset_clip": dclip,
            "remaining": trainee_remaining(signed_in(request), training_set),
        }
        return Response(TraineeClipOutputSerializer(answer).data)


class GradeMapField(serializers.DictField):
    child = serializers.FloatField()


class ScoreOutputSerializer(serializers.Serializer):
    share = serializers.FloatField(help_text="Share of experts who gave your grade.")
    deviation = serializers.FloatField(
        help_text="Your score minus the panel's mean score, A=1..E=5; positive = harsher."
    )
    panel_mean = serializers.FloatField()
    panel_grade = serializers.CharField()


class PredictionOutputSerializer(serializers.Serializer):
    p = serializers.SerializerMethodField()
    run = serializers.IntegerField(source="run_id")
    model_version = serializers.CharField()

    def get_p(self, prediction: Prediction) -> dict[str, float]:
        return dict(zip(GRADES, prediction.p, strict=True))


class FeedbackOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="rating.pk")
    clip_id = serializers.CharField(source="rating.dataset_clip.clip_external_id")
    grade = serializers.CharField(source="rating.grade")
    session = serializers.IntegerField(source="rating.session")
    experts = GradeMapField(source="p", help_text="The frozen expert distribution, A..E.")
    n_experts = serializers.IntegerField()
    score = ScoreOutputSerializer()
    prediction = PredictionOutputSerializer(
        allow_null=True, help_text="The model's prediction; null: no model prediction."
    )
    descriptions = serializers.DictField(child=serializers.CharField())


def feedback_answer(rating: TraineeRating) -> dict:
    """The feedback on a trainee's own grade, with the model's prediction when one exists."""
    found = training.trainee_feedback(rating=rating)
    answer = {
        **{f: getattr(found, f) for f in ("rating", "p", "n_experts", "score", "descriptions")},
        "prediction": feedback.trainee_prediction(
            training_set=rating.training_set, clip_id=rating.dataset_clip.clip_id
        ),
    }
    return FeedbackOutputSerializer(answer).data


class TraineeRatingInputSerializer(serializers.Serializer):
    training_set = serializers.IntegerField()
    clip_id = serializers.CharField(max_length=64)
    grade = serializers.CharField(max_length=8)
    time_spent_ms = serializers.IntegerField(min_value=0, max_value=MAX_TIME_SPENT_MS)


class TraineeRatingSubmitApi(APIView):
    permission_classes = [IsTrainee]

    @extend_schema(
        operation_id="trainee_rating_submit",
        request=TraineeRatingInputSerializer,
        responses={201: FeedbackOutputSerializer, 409: OpenApiResponse()},
    )
    def post(self, request: Request) -> Response:
        data = TraineeRatingInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        training_set = get_object_or_404(TrainingSet, pk=data.validated_data["training_set"])
        dclip = get_object_or_404(
            DatasetClip.objects.select_related("clip"),
            version=training_set.version,
            clip_external_id=data.validated_data["clip_id"],
        )
        rating = training.trainee_rating_submit(
            trainee=signed_in(request),
            training_set=training_set,
            dataset_clip=dclip,
            grade=data.validated_data["grade"],
            time_spent_ms=data.validated_data["time_spent_ms"],
        )
        return Response(feedback_answer(rating), status=status.HTTP_201_CREATED)


class PerformanceOutputSerializer(serializers.Serializer):
    n = serializers.IntegerField()
    mean_share = serializers.FloatField(allow_null=True)
    kappa = serializers.FloatField(allow_null=True)
    tendency = serializers.FloatField(allow_null=True, help_text="Positive = harsher.")
    confusion = serializers.ListField(
        child=serializers.ListField(child=serializers.IntegerField()),
        help_text="[your grade][panel grade], A..E.",
    )


class SessionOutputSerializer(serializers.Serializer):
    session = serializers.IntegerField()
    started_at = serializers.DateTimeField()
    performance = PerformanceOutputSerializer()


class TraineeProgressOutputSerializer(serializers.Serializer):
    overall = PerformanceOutputSerializer()
    sessions = SessionOutputSerializer(many=True)
    pass_kappa = serializers.FloatField(allow_null=True)
    min_clips = serializers.IntegerField()
    qualified = serializers.BooleanField()


class TraineeProgressApi(APIView):
    permission_classes = [IsTrainee]

    @extend_schema(operation_id="trainee_progress", responses=TraineeProgressOutputSerializer)
    def get(self, request: Request) -> Response:
        progress = training.trainee_progress(trainee=signed_in(request))
        return Response(TraineeProgressOutputSerializer(progress).data)


# --- sample triage --------------------------------------------------------------------------


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
