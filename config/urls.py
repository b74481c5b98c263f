from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from annotation import api as annotation_api

api_patterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("token/", annotation_api.token_obtain, name="api-token"),
    path("videos/", annotation_api.VideoListCreateApi.as_view(), name="api-videos"),
    path("videos/<int:pk>/", annotation_api.VideoDetailApi.as_view(), name="api-video"),
    path("clips/", annotation_api.ClipListApi.as_view(), name="api-clips"),
    path("clips/<str:clip_id>/", annotation_api.ClipDetailApi.as_view(), name="api-clip"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include(api_patterns)),
    path("", include("frontend.urls")),
]
