"""REST API of ingestion: videos (upload, status) and clips, for curators.

Experts reach clips only through the grading API (blind: no votes, no predictions).
"""

from __future__ import annotations

from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access.permissions import IsCurator
from annotation.access.roles import signed_in
from annotation.ingest import services
from annotation.ingest.serializers import (
    ClipCuratorSerializer,
    VideoDetailSerializer,
    VideoIngestSerializer,
    VideoSerializer,
    VideoUploadSerializer,
)
from annotation.models import Clip, Video


class VideoListCreateApi(generics.ListAPIView):
    """List videos with their ingestion status; POST uploads a video (multipart), with its
    targets (ingested at once) or without (it waits for targets: see VideoIngestApi)."""

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
            targets=[services.Target(**t) for t in data.validated_data.get("targets") or []],
            uploaded_by=signed_in(request),
        )
        return Response(VideoDetailSerializer(video).data, status=status.HTTP_201_CREATED)


class VideoDetailApi(generics.RetrieveAPIView):
    """A video's status, first frame, candidate heads and attempt history."""

    permission_classes = [IsCurator]
    serializer_class = VideoDetailSerializer
    queryset = Video.objects.select_related("patient").prefetch_related(
        "clips", "attempts__requested_by"
    )


class VideoIngestApi(APIView):
    """Start ingesting a stored video with these targets: the first time for a video uploaded
    without targets, again for a failed one (new or moved targets), or more targets for a
    ready one. 409 while it is being ingested."""

    permission_classes = [IsCurator]

    @extend_schema(request=VideoIngestSerializer, responses={202: VideoDetailSerializer})
    def post(self, request: Request, pk: int) -> Response:
        video = get_object_or_404(Video, pk=pk)
        data = VideoIngestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.video_ingest_start(
            video_id=video.pk,
            targets=[services.Target(**t) for t in data.validated_data["targets"]],
            requested_by=signed_in(request),
        )
        video.refresh_from_db()
        return Response(VideoDetailSerializer(video).data, status=status.HTTP_202_ACCEPTED)


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
