"""REST API of the annotation app: videos (upload, status) and clips, for curators.

Experts reach clips only through the grading API (blind: no votes, no predictions).
"""

from __future__ import annotations

from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import Throttled, ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from annotation import services
from annotation.login_throttle import locked_message
from annotation.models import Clip, Video
from annotation.permissions import IsCurator
from annotation.roles import signed_in
from annotation.serializers import ClipCuratorSerializer, VideoSerializer, VideoUploadSerializer


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


class TokenObtainApi(ObtainAuthToken):
    """POST username + password, get the API token for scripts (Authorization: Token ...).
    Failed attempts are throttled like the login page's; a locked account gets 429."""

    def post(self, request: Request, *args: object, **kwargs: object) -> Response:
        try:
            return super().post(request, *args, **kwargs)
        except ValidationError:
            locked_s = getattr(request, "mersv_login_locked_s", None)
            if locked_s:
                raise Throttled(wait=locked_s, detail=locked_message(locked_s)) from None
            raise


token_obtain = TokenObtainApi.as_view()
