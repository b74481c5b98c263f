from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path
from django.views.generic import RedirectView

from frontend import (
    account_views,
    aggregation_views,
    audit_views,
    dataset_views,
    feedback_views,
    grading_views,
    practice_views,
    training_views,
    views,
)
from frontend.forms import LoginForm

urlpatterns = [
    path("", views.home, name="home"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            redirect_authenticated_user=True, authentication_form=LoginForm
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/tokens/", account_views.account_tokens, name="account-tokens"),
    path("account/password/", account_views.password_change, name="password-change"),
    path("dashboard/", aggregation_views.dashboard, name="dashboard"),
    path("clips/", views.clip_list, name="clip-list"),
    path("clips/<str:clip_id>/", views.clip_detail, name="clip-detail"),
    path("clips/<str:clip_id>/reference/", views.clip_reference, name="clip-reference"),
    path("videos/", views.video_list, name="video-list"),
    path("videos/upload/", views.video_upload, name="video-upload"),
    path("videos/<int:pk>/", views.video_detail, name="video-detail"),
    path("videos/<int:pk>/ingest/", views.video_ingest, name="video-ingest"),
    path("media/<path:path>", views.media, name="media"),
    path("datasets/", dataset_views.dataset_list, name="dataset-list"),
    path("datasets/<slug:name>/", dataset_views.dataset_detail, name="dataset-detail"),
    path("datasets/<slug:name>/download/", dataset_views.dataset_download, name="dataset-download"),
    path("training/", training_views.training_run_list, name="training-run-list"),
    path("training/<int:pk>/", training_views.training_run_detail, name="training-run-detail"),
    path("training/<int:pk>/live/", training_views.training_run_live, name="training-run-live"),
    path(
        "training/<int:pk>/cancel/", training_views.training_run_cancel, name="training-run-cancel"
    ),
    path(
        "training/<int:pk>/resume/", training_views.training_run_resume, name="training-run-resume"
    ),
    path(
        "training/<int:pk>/predict-new/",
        training_views.training_run_predict_new,
        name="training-run-predict-new",
    ),
    path(
        "training/<int:pk>/production/",
        training_views.training_run_production,
        name="training-run-production",
    ),
    path("training/grids/", training_views.experiment_grid_list, name="experiment-grid-list"),
    path(
        "training/grids/<int:pk>/",
        training_views.experiment_grid_detail,
        name="experiment-grid-detail",
    ),
    path(
        "training/grids/<int:pk>/live/",
        training_views.experiment_grid_live,
        name="experiment-grid-live",
    ),
    path(
        "training/grids/<int:pk>/report/<str:name>",
        training_views.experiment_grid_report_file,
        name="experiment-grid-report-file",
    ),
    path(
        "training/grids/<int:pk>/cancel/",
        training_views.experiment_grid_cancel,
        name="experiment-grid-cancel",
    ),
    path("audit/", audit_views.audit_log, name="audit-log"),
    path("grade/", grading_views.grade, name="grade"),
    path("grade/summary/", grading_views.grade_summary, name="grade-summary"),
    path("grade/compare/", feedback_views.grade_compare, name="grade-compare"),
    path("practice/", practice_views.practice_page, name="practice"),
    path("practice/feedback/<int:pk>/", practice_views.practice_feedback, name="practice-feedback"),
    path("practice/progress/", practice_views.practice_progress, name="practice-progress"),
    path("practice/trainees/", practice_views.trainee_list, name="trainee-list"),
    path("triage/", feedback_views.triage, name="triage"),
    # Trainee practice lived under /train/ until "training" came to mean model training only:
    # the old addresses redirect for good (301, query string kept), so bookmarks still work.
    *(
        path(
            old,
            RedirectView.as_view(pattern_name=new, permanent=True, query_string=True),
            name=f"{new}-old",
        )
        for old, new in (
            ("train/", "practice"),
            ("train/feedback/<int:pk>/", "practice-feedback"),
            ("train/progress/", "practice-progress"),
            ("train/trainees/", "trainee-list"),
        )
    ),
]
