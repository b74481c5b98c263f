from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from frontend import aggregation_views, dataset_views, grading_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path(
        "login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("dashboard/", aggregation_views.dashboard, name="dashboard"),
    path("clips/", views.clip_list, name="clip-list"),
    path("clips/<str:clip_id>/", views.clip_detail, name="clip-detail"),
    path("videos/", views.video_list, name="video-list"),
    path("videos/upload/", views.video_upload, name="video-upload"),
    path("videos/<int:pk>/", views.video_detail, name="video-detail"),
    path("media/<path:path>", views.media, name="media"),
    path("datasets/", dataset_views.dataset_list, name="dataset-list"),
    path("datasets/<slug:name>/", dataset_views.dataset_detail, name="dataset-detail"),
    path("datasets/<slug:name>/download/", dataset_views.dataset_download, name="dataset-download"),
    path("grade/", grading_views.grade, name="grade"),
    path("grade/summary/", grading_views.grade_summary, name="grade-summary"),
]
