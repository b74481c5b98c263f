"""The trainee practice API: the next clip of a practice set, a grade with its feedback, and
the trainee's progress (routes under /api/practice/).

Trainees are blind until they grade: the clip they receive is the one blind player payload
(annotation.player); the expert distribution and the model's prediction come only in the
answer to their own grade. Views parse, check the role, call one service or selector, render.
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

from annotation.access.permissions import IsTrainee
from annotation.access.roles import signed_in
from annotation.grades import GRADES
from annotation.grading.checks import MAX_TIME_SPENT_MS
from annotation.player import ClipPlayerSerializer
from datasets import practice
from datasets.models import DatasetClip, TraineeRating, TrainingSet
from modeling import feedback
from modeling.models import Prediction
from modeling.triage_api import GradeMapField

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def _practice_set(trainee: User, set_id: str | None) -> TrainingSet:
    try:
        wanted = None if not set_id else int(set_id)
    except (TypeError, ValueError):
        raise ValidationError({"set": "give the practice set's id, a whole number"}) from None
    found = practice.trainee_set_current(trainee=trainee, set_id=wanted)
    if found is None:
        raise ValidationError({"set": "no active practice set; ask a curator to open one"})
    return found


class PracticeClipOutputSerializer(serializers.Serializer):
    practice_set = serializers.IntegerField(source="practice_set.pk")
    clip = ClipPlayerSerializer(source="dataset_clip.clip")
    remaining = serializers.IntegerField(help_text="Clips of the set you have not graded.")


class PracticeNextApi(APIView):
    permission_classes = [IsTrainee]

    @extend_schema(
        operation_id="practice_next",
        summary="The next practice clip (no votes, no prediction); 204 when the set is done",
        parameters=[OpenApiParameter("set", int, required=False)],
        responses={200: PracticeClipOutputSerializer, 204: OpenApiResponse()},
    )
    def get(self, request: Request) -> Response:
        practice_set = _practice_set(signed_in(request), request.query_params.get("set"))
        dclip = practice.trainee_clip_next(trainee=signed_in(request), practice_set=practice_set)
        if dclip is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        answer = {
            "practice_set": practice_set,
            "dataset_clip": dclip,
            "remaining": practice.practice_set_remaining(
                trainee=signed_in(request), practice_set=practice_set
            ),
        }
        return Response(PracticeClipOutputSerializer(answer).data)


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
    found = practice.trainee_feedback(rating=rating)
    answer = {
        **{f: getattr(found, f) for f in ("rating", "p", "n_experts", "score", "descriptions")},
        "prediction": feedback.trainee_prediction(
            practice_set=rating.training_set, clip_id=rating.dataset_clip.clip_id
        ),
    }
    return FeedbackOutputSerializer(answer).data


class PracticeRatingInputSerializer(serializers.Serializer):
    practice_set = serializers.IntegerField()
    clip_id = serializers.CharField(max_length=64)
    grade = serializers.CharField(max_length=8)
    time_spent_ms = serializers.IntegerField(min_value=0, max_value=MAX_TIME_SPENT_MS)


class PracticeRatingSubmitApi(APIView):
    permission_classes = [IsTrainee]

    @extend_schema(
        operation_id="practice_rating_submit",
        request=PracticeRatingInputSerializer,
        responses={201: FeedbackOutputSerializer, 409: OpenApiResponse()},
    )
    def post(self, request: Request) -> Response:
        data = PracticeRatingInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        practice_set = get_object_or_404(TrainingSet, pk=data.validated_data["practice_set"])
        dclip = get_object_or_404(
            DatasetClip.objects.select_related("clip"),
            version=practice_set.version,
            clip_external_id=data.validated_data["clip_id"],
        )
        rating = practice.trainee_rating_submit(
            trainee=signed_in(request),
            practice_set=practice_set,
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


class PracticeProgressApi(APIView):
    permission_classes = [IsTrainee]

    @extend_schema(operation_id="practice_progress", responses=TraineeProgressOutputSerializer)
    def get(self, request: Request) -> Response:
        progress = practice.trainee_progress(trainee=signed_in(request))
        return Response(TraineeProgressOutputSerializer(progress).data)
