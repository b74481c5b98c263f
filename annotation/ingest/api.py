"""REST API of ingestion: videos (upload, status) and clips, for curators.

Experts reach clips only through the grading API (blind: no votes, no predictions).
"""

from __future__ import annotations

from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from annotation.access.permissions import IsCurator
from annotation.access.roles import signed_in
from annotation.ingest import services
from annotation.ingest.serializers import (
    ClipCuratorSerializer,
    VideoSerializer,
    VideoUploadSerializer,
)
from annotation.models import Clip, Video


class VideoListCreateApi(generics.ListAPIView):
    """List videos with their ingestion status; POST uploads a video (multipart)."""

    permission_classes = [IsCurator]
    serializer_class = VideoSerializer
    parser_classes = [MultiPartParser]

    def get_queryset(self):
        return Video.objects.select_related("patient").prefetch_related(
            Prefetch("clips", queryset=Clip.objects.only("id", "external_id", "video_id"))
        )

    @extend_schema(request=VideoUploadSerializer, responses={201: VideoSerializer})
    def post(self, request: Request) -> Response:
        data = VideoUploadSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["file"]
        video = services.video_create(
            fileobj=upload,
            original_name=upload.name,
            patient_code=data.validated_data["patient_code"],
            pixel_size_um=data.validated_data["pixel_size_um"],
            targets=[services.Target(**t) for t in data.validated_data["targets"]],
            uploaded_by=signed_in(request),
        )
        return Response(VideoSerializer(video).data, status=status.HTTP_201_CREATED)


class VideoDetailApi(generics.RetrieveAPIView):
    permission_classes = [IsCurator]
    serializer_class = VideoSerializer
    queryset = Video.objects.select_related("patient").prefetch_related("clips")


class ClipListApi(generics.ListAPIView):
    permission_classes = [IsCurator]
    serializer_class = ClipCuratorSerializer
    queryset = Clip.objects.select_related("video__patient").order_by("external_id")


class ClipDetailApi(generics.RetrieveAPIView):
    permission_classes = [IsCurator]
    serializer_class = ClipCuratorSerializer
    queryset = Clip.objects.select_related("video__patient")
    lookup_field = "external_id"
    lookup_url_kwarg = "clip_id"
