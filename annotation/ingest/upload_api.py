"""REST API of uploads straight to the bucket (object storage only), for curators.

POST /api/uploads/ opens one (201: its id, the part size and a presigned URL per part);
GET /api/uploads/<id>/ tells its state, and while it is open which parts the bucket holds,
with fresh URLs for the others (to resume); POST /api/uploads/<id>/complete/ with the parts'
ETags joins them and queues the verification (202). See annotation/ingest/services.py.
"""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access.permissions import IsCurator
from annotation.access.roles import signed_in
from annotation.ingest import services as direct_upload
from annotation.models import DirectUpload


class DirectUploadStartSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    size = serializers.IntegerField(min_value=1)
    patient_code = serializers.RegexField(r"^[A-Za-z0-9_.-]{1,64}$")
    pixel_size_um = serializers.FloatField(min_value=0.001, max_value=100)
    sha256 = serializers.RegexField(r"^[0-9a-fA-F]{64}$", required=False, allow_blank=True)


class PartSerializer(serializers.Serializer):
    part_number = serializers.IntegerField(min_value=1, max_value=direct_upload.MAX_PARTS)
    etag = serializers.CharField(max_length=200)


class DirectUploadCompleteSerializer(serializers.Serializer):
    parts = PartSerializer(many=True, allow_empty=False)


def _signed(parts: list[direct_upload.SignedPart]) -> list[dict[str, Any]]:
    return [{"part_number": p.part_number, "url": p.url} for p in parts]


def _state(upload: DirectUpload) -> dict[str, Any]:
    return {
        "id": str(upload.token),
        "status": upload.status,
        "error": upload.error,
        "size": upload.size_bytes,
        "part_bytes": upload.part_bytes,
        "video_id": upload.video_id,
        "video_url": f"/videos/{upload.video_id}/" if upload.video_id else None,
    }


def _own(request: Request, token: str) -> DirectUpload:
    # Another curator's upload is a 404: its id says nothing to them.
    return get_object_or_404(DirectUpload, token=token, created_by=signed_in(request))


class DirectUploadStartApi(APIView):
    permission_classes = [IsCurator]

    @extend_schema(request=DirectUploadStartSerializer, responses={201: dict})
    def post(self, request: Request) -> Response:
        data = DirectUploadStartSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        upload, parts = direct_upload.direct_upload_start(
            original_name=data.validated_data["name"],
            size_bytes=data.validated_data["size"],
            patient_code=data.validated_data["patient_code"],
            pixel_size_um=data.validated_data["pixel_size_um"],
            sha256=data.validated_data.get("sha256") or "",
            created_by=signed_in(request),
        )
        return Response({**_state(upload), "parts": _signed(parts)}, status=status.HTTP_201_CREATED)


class DirectUploadDetailApi(APIView):
    permission_classes = [IsCurator]

    @extend_schema(responses={200: dict})
    def get(self, request: Request, token: str) -> Response:
        upload = _own(request, token)
        done, missing = direct_upload.direct_upload_parts(upload=upload)
        return Response({**_state(upload), "parts_done": done, "parts": _signed(missing)})


class DirectUploadCompleteApi(APIView):
    permission_classes = [IsCurator]

    @extend_schema(request=DirectUploadCompleteSerializer, responses={202: dict})
    def post(self, request: Request, token: str) -> Response:
        upload = _own(request, token)
        data = DirectUploadCompleteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        upload = direct_upload.direct_upload_complete(
            upload_id=upload.pk, parts=list(data.validated_data["parts"]), by=signed_in(request)
        )
        return Response(_state(upload), status=status.HTTP_202_ACCEPTED)
