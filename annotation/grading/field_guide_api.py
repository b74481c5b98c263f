"""The field guide API: experts read it, curators choose its clips (`grading.field_guide`).

A reference clip carries media, the curator's grade and note; never the clip's votes.
Service errors rise to the API's handler (`annotation.api_errors`): 400, and 409 for a clip
not settled or already in the guide.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access.permissions import IsCurator
from annotation.access.roles import CURATOR, EXPERT, signed_in, user_has_role
from annotation.grades import GRADE_DESCRIPTIONS
from annotation.grading import field_guide
from annotation.models import Clip, ReferenceClip
from annotation.player import ClipPlayerSerializer


class IsExpertOrCurator(BasePermission):
    """Experts (the guide is for them) and curators and admins (who choose its clips).
    Trainees are left out: their practice sets take settled clips too, and the guide would
    hand them the answer."""

    message = "only experts and curators may open the field guide"

    def has_permission(self, request, view) -> bool:
        return user_has_role(request.user, EXPERT, CURATOR)


class ReferenceClipOutputSerializer(ClipPlayerSerializer):
    """A reference clip as the field guide shows it: its clip's player payload (the one
    builder, `annotation.player`) with the reference's id, the curator's grade and note."""

    id = serializers.IntegerField(source="reference.pk")
    grade = serializers.CharField(source="reference.grade")
    note = serializers.CharField(source="reference.note")

    class Meta(ClipPlayerSerializer.Meta):
        fields = ["id", "grade", "note", *ClipPlayerSerializer.Meta.fields[1:]]
        read_only_fields = fields

    def to_representation(self, instance: ReferenceClip) -> dict:
        return super().to_representation(instance.clip)  # clip.reference: the cached instance


class FieldGuideSectionOutputSerializer(serializers.Serializer):
    grade = serializers.CharField()
    description = serializers.SerializerMethodField()
    references = ReferenceClipOutputSerializer(many=True)

    def get_description(self, section: field_guide.FieldGuideSection) -> str:
        return GRADE_DESCRIPTIONS[section.grade]


def field_guide_data() -> list[dict]:
    """The field guide as the API and the grading page hand it out (one owner of its shape)."""
    # The DRF stubs type .data as a ReturnDict; with many=True it is a ReturnList of dicts.
    return FieldGuideSectionOutputSerializer(field_guide.field_guide(), many=True).data  # type: ignore[return-value]


class FieldGuideApi(APIView):
    permission_classes = [IsExpertOrCurator]

    @extend_schema(
        operation_id="field_guide",
        summary="Reference clips per grade A..E, chosen by curators from settled clips",
        responses=FieldGuideSectionOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        return Response(field_guide_data())


class ReferenceClipCuratorOutputSerializer(ReferenceClipOutputSerializer):
    chosen_by = serializers.CharField(
        source="reference.chosen_by.username", allow_null=True, default=None
    )
    created_at = serializers.DateTimeField(source="reference.created_at")

    class Meta(ReferenceClipOutputSerializer.Meta):
        fields = [*ReferenceClipOutputSerializer.Meta.fields, "chosen_by", "created_at"]
        read_only_fields = fields


class ReferenceClipAddInputSerializer(serializers.Serializer):
    clip_id = serializers.CharField(max_length=64)
    grade = serializers.CharField(max_length=8)
    note = serializers.CharField(required=False, default="", allow_blank=True)


class ReferenceClipListAddApi(APIView):
    """GET: every reference clip (curators). POST: add a settled clip to the field guide."""

    permission_classes = [IsCurator]

    @extend_schema(
        operation_id="reference_clip_list",
        responses=ReferenceClipCuratorOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        references = ReferenceClip.objects.select_related("clip__video", "chosen_by")
        return Response(ReferenceClipCuratorOutputSerializer(references, many=True).data)

    @extend_schema(
        operation_id="reference_clip_add",
        request=ReferenceClipAddInputSerializer,
        responses={
            201: ReferenceClipCuratorOutputSerializer,
            409: OpenApiResponse(description="The clip is not settled, or in the guide already."),
        },
    )
    def post(self, request: Request) -> Response:
        data = ReferenceClipAddInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        clip = get_object_or_404(Clip, external_id=data.validated_data["clip_id"])
        reference = field_guide.reference_clip_add(
            curator=signed_in(request),
            clip=clip,
            grade=data.validated_data["grade"],
            note=data.validated_data["note"],
        )
        return Response(
            ReferenceClipCuratorOutputSerializer(reference).data, status=status.HTTP_201_CREATED
        )


class ReferenceClipRemoveApi(APIView):
    """DELETE: take a clip out of the field guide (curators)."""

    permission_classes = [IsCurator]

    @extend_schema(operation_id="reference_clip_remove", responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        reference = get_object_or_404(ReferenceClip.objects.select_related("clip"), pk=pk)
        field_guide.reference_clip_remove(curator=signed_in(request), reference=reference)
        return Response(status=status.HTTP_204_NO_CONTENT)
