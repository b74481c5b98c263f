"""The grading API for experts: next clip, grades, "cannot judge", progress.

Blind by construction: the clip an expert receives carries media and geometry only (no votes,
no predictions); a distribution comes back only in the answer to the expert's own grade, and
only when SHOW_PANEL_AFTER_VOTE is on (`annotation.grading.answers.clip_panel_for_expert`).
Each view parses, checks the role, calls one service and renders; its errors rise to the
API's handler (`annotation.api_errors`): ServiceError becomes 400, a second answer to the same
clip or an answer to a clip not on offer 409.
"""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access.permissions import IsExpert
from annotation.access.roles import signed_in
from annotation.api_errors import field_validator
from annotation.grading import answers as grading
from annotation.grading import checks
from annotation.models import CannotJudge, Clip, ClipAssignment, Rating
from annotation.player import ClipPlayerSerializer


class PanelOutputSerializer(serializers.Serializer):
    A = serializers.IntegerField()
    B = serializers.IntegerField()
    C = serializers.IntegerField()
    D = serializers.IntegerField()
    E = serializers.IntegerField()


class GradingProgressOutputSerializer(serializers.Serializer):
    rated = serializers.IntegerField()
    cannot_judge = serializers.IntegerField()
    remaining = serializers.IntegerField(help_text="Clips your queue could still offer you.")


class NextOutputSerializer(serializers.Serializer):
    """What the page shows after an answer: the next clip (null: queue empty) and progress."""

    clip = ClipPlayerSerializer(allow_null=True)
    progress = GradingProgressOutputSerializer()


def _next_field() -> serializers.BooleanField:
    return serializers.BooleanField(
        required=False,
        default=False,
        help_text="Also return the next clip to grade and your progress (saves a round trip).",
    )


def _next_if_asked(expert, asked: bool) -> dict | None:
    if not asked:
        return None
    return {
        "clip": grading.clip_next_for_expert(expert=expert),
        "progress": grading.grading_progress(expert=expert),
    }


class RatingOutputSerializer(serializers.ModelSerializer):
    clip_id = serializers.CharField(source="clip.external_id")

    class Meta:
        model = Rating
        fields = [
            "id",
            "clip_id",
            "grade",
            "time_spent_ms",
            "telemetry",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


def _telemetry_field() -> serializers.JSONField:
    return serializers.JSONField(
        required=False,
        default=dict,
        validators=[field_validator(checks.telemetry_clean)],
        help_text=(
            "plays, frames_stepped (whole numbers), speeds_used (list of "
            f"{', '.join(f'{s:g}' for s in checks.TELEMETRY_SPEEDS)}), "
            "zoom_used, full_field_opened (booleans)"
        ),
    )


def _time_spent_field(**kwargs: Any) -> serializers.IntegerField:
    return serializers.IntegerField(min_value=0, max_value=checks.MAX_TIME_SPENT_MS, **kwargs)


def _clip_for(clip_id: str) -> Clip:
    """The clip an answer names, by its external id (404 when there is none). Only its id and
    external id are read: the service locks and reads the row itself."""
    return get_object_or_404(Clip.objects.only("id", "external_id"), external_id=clip_id)


class GradingNextApi(APIView):
    permission_classes = [IsExpert]

    @extend_schema(
        operation_id="grading_next",
        summary="The clip to grade now (held for you for a few minutes); 204 when none is left",
        responses={
            200: ClipPlayerSerializer,
            204: OpenApiResponse(description="Your queue is empty."),
        },
    )
    def get(self, request: Request) -> Response:
        clip = grading.clip_next_for_expert(expert=signed_in(request))
        if clip is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(ClipPlayerSerializer(clip).data)


class RatingSubmitInputSerializer(serializers.Serializer):
    clip_id = serializers.CharField(max_length=64)
    grade = serializers.CharField(max_length=8, validators=[field_validator(checks.grade_check)])
    time_spent_ms = _time_spent_field()
    telemetry = _telemetry_field()
    next = _next_field()


class RatingSubmitOutputSerializer(RatingOutputSerializer):
    panel = PanelOutputSerializer(
        allow_null=True,
        help_text="The panel's vote counts including yours; null when the lab hides them.",
    )
    next = NextOutputSerializer(allow_null=True, help_text="Only when asked for with next.")

    class Meta(RatingOutputSerializer.Meta):
        fields = [*RatingOutputSerializer.Meta.fields, "panel", "next"]
        read_only_fields = fields


def _rating_answer(rating: Rating, expert, *, next_asked: bool = False) -> dict:
    # Two answer-only fields the output serializer reads off the instance; no model fields.
    rating.panel = grading.clip_panel_for_expert(expert=expert, clip=rating.clip)  # type: ignore[attr-defined]
    rating.next = _next_if_asked(expert, next_asked)  # type: ignore[attr-defined]
    return RatingSubmitOutputSerializer(rating).data


class RatingListSubmitApi(generics.ListAPIView):
    """GET: your own ratings, newest first. POST: grade a clip."""

    permission_classes = [IsExpert]
    serializer_class = RatingOutputSerializer

    def get_queryset(self):
        # A clip held for the expert right now is left out: a pending hidden repeat must not be
        # recognisable from the expert's own list of grades.
        held = ClipAssignment.objects.filter(expert=signed_in(self.request)).values("clip_id")
        return (
            Rating.objects.filter(rater=signed_in(self.request))
            .exclude(clip_id__in=held)
            .select_related("clip")
        )

    @extend_schema(
        operation_id="grading_rating_submit",
        request=RatingSubmitInputSerializer,
        responses={
            201: RatingSubmitOutputSerializer,
            409: OpenApiResponse(description="You already answered this clip."),
        },
    )
    def post(self, request: Request) -> Response:
        data = RatingSubmitInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        clip = _clip_for(data.validated_data["clip_id"])
        rating = grading.rating_submit(
            expert=signed_in(request),
            clip=clip,
            grade=data.validated_data["grade"],
            time_spent_ms=data.validated_data["time_spent_ms"],
            telemetry=data.validated_data["telemetry"],
        )
        answer = _rating_answer(rating, signed_in(request), next_asked=data.validated_data["next"])
        return Response(answer, status=status.HTTP_201_CREATED)


class RatingChangeInputSerializer(serializers.Serializer):
    grade = serializers.CharField(max_length=8, validators=[field_validator(checks.grade_check)])
    time_spent_ms = _time_spent_field(required=False, default=0)
    telemetry = _telemetry_field()


class RatingChangeApi(APIView):
    """PATCH: change your own grade for a clip (another expert's rating is a 404)."""

    permission_classes = [IsExpert]

    @extend_schema(
        operation_id="grading_rating_change",
        request=RatingChangeInputSerializer,
        responses={200: RatingSubmitOutputSerializer},
    )
    def patch(self, request: Request, pk: int) -> Response:
        # Object-level permission: only the owner's ratings exist for this lookup.
        rating = get_object_or_404(
            Rating.objects.select_related("clip"), pk=pk, rater=signed_in(request)
        )
        data = RatingChangeInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        rating = grading.rating_change(
            expert=signed_in(request), rating=rating, **data.validated_data
        )
        return Response(_rating_answer(rating, signed_in(request)))


class CannotJudgeInputSerializer(serializers.Serializer):
    clip_id = serializers.CharField(max_length=64)
    reason = serializers.ChoiceField(choices=CannotJudge.Reason.choices)
    # Checked by the service together with the reason (required for "other" only); the
    # serializer keeps spaces so that the service strips and counts once.
    note = serializers.CharField(
        required=False,
        default="",
        allow_blank=True,
        trim_whitespace=False,
        help_text=(
            f"Why, in a few words (at most {CannotJudge.NOTE_MAX_LENGTH} characters): required "
            "with the reason 'other', refused with the others."
        ),
    )
    time_spent_ms = _time_spent_field(required=False, default=0)
    next = _next_field()


class CannotJudgeOutputSerializer(serializers.ModelSerializer):
    clip_id = serializers.CharField(source="clip.external_id")
    next = NextOutputSerializer(allow_null=True, help_text="Only when asked for with next.")

    class Meta:
        model = CannotJudge
        # No id: the answer to a hidden repeat is stored as no row, and must read the same.
        fields = ["clip_id", "reason", "note", "time_spent_ms", "created_at", "next"]
        read_only_fields = fields


class CannotJudgeSubmitApi(APIView):
    """POST: you cannot judge this clip (reason given). Recorded apart, never a grade."""

    permission_classes = [IsExpert]

    @extend_schema(
        operation_id="grading_cannot_judge",
        request=CannotJudgeInputSerializer,
        responses={201: CannotJudgeOutputSerializer, 409: OpenApiResponse()},
    )
    def post(self, request: Request) -> Response:
        data = CannotJudgeInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        clip = _clip_for(data.validated_data["clip_id"])
        answer = grading.cannot_judge_submit(
            expert=signed_in(request),
            clip=clip,
            reason=data.validated_data["reason"],
            note=data.validated_data["note"],
            time_spent_ms=data.validated_data["time_spent_ms"],
        )
        # An answer-only field the output serializer reads off the instance; no model field.
        answer.next = _next_if_asked(signed_in(request), data.validated_data["next"])  # type: ignore[attr-defined]
        return Response(CannotJudgeOutputSerializer(answer).data, status=status.HTTP_201_CREATED)


class GradingProgressApi(APIView):
    permission_classes = [IsExpert]

    @extend_schema(operation_id="grading_progress", responses=GradingProgressOutputSerializer)
    def get(self, request: Request) -> Response:
        progress = grading.grading_progress(expert=signed_in(request))
        return Response(GradingProgressOutputSerializer(progress).data)
