from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from annotation.access import api as access_api
from annotation.aggregation import api as aggregation_api
from annotation.grading import api as grading_api
from annotation.grading import field_guide_api
from annotation.ingest import api as annotation_api
from annotation.ingest import upload_api
from datasets import api as datasets_api
from modeling import api as modeling_api
from modeling import practice_api, triage_api

api_patterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("token/", access_api.token_obtain, name="api-token"),
    path("tokens/", access_api.TokenListCreateApi.as_view(), name="api-tokens"),
    path("tokens/<int:pk>/", access_api.TokenRevokeApi.as_view(), name="api-token-revoke"),
    path(
        "tokens/revoke-all/", access_api.TokenRevokeAllApi.as_view(), name="api-tokens-revoke-all"
    ),
    path("videos/", annotation_api.VideoListCreateApi.as_view(), name="api-videos"),
    path("videos/<int:pk>/", annotation_api.VideoDetailApi.as_view(), name="api-video"),
    path(
        "videos/<int:pk>/ingest/", annotation_api.VideoIngestApi.as_view(), name="api-video-ingest"
    ),
    # Uploads straight to the bucket (object storage): direct_upload_* in the ingest services
    path("uploads/", upload_api.DirectUploadStartApi.as_view(), name="api-uploads"),
    path("uploads/<uuid:token>/", upload_api.DirectUploadDetailApi.as_view(), name="api-upload"),
    path(
        "uploads/<uuid:token>/complete/",
        upload_api.DirectUploadCompleteApi.as_view(),
        name="api-upload-complete",
    ),
    path("clips/", annotation_api.ClipListApi.as_view(), name="api-clips"),
    path("clips/<str:clip_id>/", annotation_api.ClipDetailApi.as_view(), name="api-clip"),
    path("distributions/", aggregation_api.DistributionListApi.as_view(), name="api-distributions"),
    path(
        "distributions.csv",
        aggregation_api.DistributionCsvApi.as_view(),
        name="api-distributions-csv",
    ),
    path(
        "distributions/<str:clip_id>/",
        aggregation_api.DistributionDetailApi.as_view(),
        name="api-distribution",
    ),
    path("statistics/", aggregation_api.StatisticsApi.as_view(), name="api-statistics"),
    path("datasets/", datasets_api.DatasetVersionListCreateApi.as_view(), name="api-datasets"),
    path(
        "dataset-preview/",
        datasets_api.DatasetSelectionPreviewApi.as_view(),
        name="api-dataset-preview",
    ),
    path(
        "datasets/<slug:name>/", datasets_api.DatasetVersionDetailApi.as_view(), name="api-dataset"
    ),
    path(
        "datasets/<slug:name>/download/",
        datasets_api.DatasetVersionDownloadApi.as_view(),
        name="api-dataset-download",
    ),
    path(
        "datasets/<slug:name>/diff/<slug:other>/",
        datasets_api.DatasetVersionDiffApi.as_view(),
        name="api-dataset-diff",
    ),
    path(
        "training-runs/", modeling_api.TrainingRunListCreateApi.as_view(), name="api-training-runs"
    ),
    path(
        "training-runs/<int:pk>/",
        modeling_api.TrainingRunDetailApi.as_view(),
        name="api-training-run",
    ),
    path(
        "training-runs/<int:pk>/cancel/",
        modeling_api.TrainingRunCancelApi.as_view(),
        name="api-training-run-cancel",
    ),
    path(
        "training-runs/<int:pk>/resume/",
        modeling_api.TrainingRunResumeApi.as_view(),
        name="api-training-run-resume",
    ),
    path(
        "training-runs/<int:pk>/predictions.csv",
        modeling_api.TrainingRunPredictionsCsvApi.as_view(),
        name="api-training-run-predictions-csv",
    ),
    path(
        "training-runs/<int:pk>/predictions/<str:clip_id>/",
        modeling_api.TrainingRunClipPredictionApi.as_view(),
        name="api-training-run-prediction",
    ),
    path(
        "experiment-grids/",
        modeling_api.ExperimentGridListCreateApi.as_view(),
        name="api-experiment-grids",
    ),
    path(
        "experiment-grids/<int:pk>/",
        modeling_api.ExperimentGridDetailApi.as_view(),
        name="api-experiment-grid",
    ),
    path(
        "experiment-grids/<int:pk>/cancel/",
        modeling_api.ExperimentGridCancelApi.as_view(),
        name="api-experiment-grid-cancel",
    ),
    path("grading/next/", grading_api.GradingNextApi.as_view(), name="api-grading-next"),
    path("grading/ratings/", grading_api.RatingListSubmitApi.as_view(), name="api-grading-ratings"),
    path(
        "grading/ratings/<int:pk>/",
        grading_api.RatingChangeApi.as_view(),
        name="api-grading-rating",
    ),
    path(
        "grading/cannot-judge/",
        grading_api.CannotJudgeSubmitApi.as_view(),
        name="api-grading-cannot-judge",
    ),
    path(
        "grading/progress/", grading_api.GradingProgressApi.as_view(), name="api-grading-progress"
    ),
    path("field-guide/", field_guide_api.FieldGuideApi.as_view(), name="api-field-guide"),
    path(
        "reference-clips/",
        field_guide_api.ReferenceClipListAddApi.as_view(),
        name="api-reference-clips",
    ),
    path(
        "reference-clips/<int:pk>/",
        field_guide_api.ReferenceClipRemoveApi.as_view(),
        name="api-reference-clip",
    ),
    path("practice/next/", practice_api.PracticeNextApi.as_view(), name="api-practice-next"),
    path(
        "practice/ratings/",
        practice_api.PracticeRatingSubmitApi.as_view(),
        name="api-practice-ratings",
    ),
    path(
        "practice/progress/",
        practice_api.PracticeProgressApi.as_view(),
        name="api-practice-progress",
    ),
    path("triage/<int:video_id>/", triage_api.TriageApi.as_view(), name="api-triage"),
]

# 503 with a message while the database is unreachable; Django's own 500 page otherwise.
handler500 = "frontend.middleware.server_error"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include(api_patterns)),
    path("", include("frontend.urls")),
]

# The 403 page records the denial (audit log, one log line); both pages use the site's layout.
handler403 = "frontend.error_views.permission_denied"
handler404 = "frontend.error_views.page_not_found"
