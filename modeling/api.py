"""REST API of training runs, predictions and experiment grids (curators and admins only).

GET  /api/training-runs/                          runs, newest first (paged); POST starts one
GET  /api/training-runs/<id>/?logs=0              status, progress, metrics (+ epoch logs)
POST /api/training-runs/<id>/cancel/              ask a run to stop (checkpoints are kept)
POST /api/training-runs/<id>/resume/              queue a failed/cancelled/interrupted run again
GET  /api/training-runs/<id>/predictions.csv      clip_id, fold, p_A..p_E
GET  /api/training-runs/<id>/predictions/<clip>/  one clip's prediction
GET  /api/experiment-grids/                       grids; POST starts one
GET  /api/experiment-grids/<id>/                  a grid and its runs
POST /api/experiment-grids/<id>/cancel/

Predictions never appear in an endpoint experts can reach: the grading API stays blind.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.aggregation_api import CsvRenderer
from annotation.permissions import IsCurator
from datasets.models import DatasetVersion
from modeling import selectors, services
from modeling.ml.backbones import BACKBONES
from modeling.ml.losses import LOSSES
from modeling.ml.train import OPTIMIZERS
from modeling.models import ExperimentGrid, Prediction, TrainingRun

PRESETS = ("small", "paper")


class TrainingOptionsSerializer(serializers.Serializer):
    """TrainConfig options shared by runs and grids; unset ones take TrainConfig's defaults."""

    dataset = serializers.SlugField(help_text="name of a ready dataset version")
    name = serializers.CharField(required=False, allow_blank=True, max_length=120)
    preset = serializers.ChoiceField(choices=PRESETS, default="small")
    epochs = serializers.IntegerField(min_value=1, max_value=10000, default=100)
    optimizer = serializers.ChoiceField(choices=OPTIMIZERS, required=False)
    lr = serializers.FloatField(min_value=1e-8, max_value=10.0, required=False)
    weight_decay = serializers.FloatField(min_value=0.0, required=False)
    head_lr_scale = serializers.FloatField(
        min_value=1e-3,
        max_value=1000.0,
        required=False,
        help_text="the head learns this many times faster than the backbone (default 1)",
    )
    batch_size = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    fair_sampling = serializers.BooleanField(required=False)
    augment = serializers.BooleanField(required=False)
    morphometry = serializers.BooleanField(
        required=False,
        allow_null=True,
        help_text="the head also takes the clip's head morphometry; unset: on for the small "
        "preset, off for paper",
    )
    head_hidden = serializers.IntegerField(
        min_value=0,
        max_value=4096,
        required=False,
        allow_null=True,
        help_text="width of the head's hidden layer, 0 for the paper's linear head; unset: 64 "
        "for the small preset, 0 for paper",
    )
    early_stopping_patience = serializers.IntegerField(
        min_value=0, required=False, help_text="epochs without a better val loss; 0 = off"
    )
    seed = serializers.IntegerField(min_value=0, required=False)
    device = serializers.CharField(required=False, max_length=32, help_text="cpu, cuda, cuda:1")
    pretrained = serializers.CharField(
        required=False,
        max_length=500,
        help_text="backbone weights: a path on the training workers (never downloaded)",
    )

    def validate_dataset(self, name: str) -> DatasetVersion:
        version = DatasetVersion.objects.filter(name=name).first()
        if version is None:
            raise serializers.ValidationError(f"no dataset version named {name!r}")
        return version


class TrainingRunCreateSerializer(TrainingOptionsSerializer):
    backbone = serializers.ChoiceField(choices=BACKBONES, default="timesformer")
    loss = serializers.ChoiceField(choices=tuple(LOSSES), default="emd")


class ExperimentGridCreateSerializer(TrainingOptionsSerializer):
    backbones = serializers.ListField(
        child=serializers.ChoiceField(choices=BACKBONES), default=list(BACKBONES), min_length=1
    )
    losses = serializers.ListField(
        child=serializers.ChoiceField(choices=tuple(LOSSES)),
        default=list(services.GRID_LOSSES),
        min_length=1,
    )


class TrainingRunSerializer(serializers.ModelSerializer):
    dataset = serializers.CharField(source="version.name")
    created_by = serializers.CharField(source="created_by.username", default=None)

    class Meta:
        model = TrainingRun
        fields = [
            "id", "name", "dataset", "grid", "config", "status", "cancel_requested",
            "progress", "progress_message", "n_folds", "folds_done", "metrics_mean",
            "metrics_std", "pooled_metrics", "fold_metrics", "fold_summaries", "duration_s",
            "error", "checkpoint_dir", "model_version", "created_by", "created_at",
            "started_at", "finished_at",
        ]  # fmt: skip
        read_only_fields = fields


class TrainingRunDetailSerializer(TrainingRunSerializer):
    logs = serializers.SerializerMethodField(
        help_text='epoch records by fold: {"0": [{"epoch": 1, "train_loss": .., "val_loss": '
        '.., "val_hi": .., "val_emd": .., "best_epoch": .., "seconds": ..}, ...]}'
    )

    class Meta(TrainingRunSerializer.Meta):
        fields = [*TrainingRunSerializer.Meta.fields, "logs"]
        read_only_fields = fields

    def get_logs(self, run: TrainingRun) -> dict[str, list[dict[str, Any]]] | None:
        return selectors.run_logs(run) if self.context.get("with_logs", True) else None


class PredictionSerializer(serializers.ModelSerializer):
    clip_id = serializers.CharField(source="clip.external_id")
    p = serializers.SerializerMethodField(help_text='{"A": .., ..., "E": ..}, sums to 1')

    class Meta:
        model = Prediction
        fields = ["run", "clip_id", "fold", "p", "model_version", "created_at"]
        read_only_fields = fields

    def get_p(self, prediction: Prediction) -> dict[str, float]:
        return dict(zip("ABCDE", prediction.p, strict=True))


class ExperimentGridSerializer(serializers.ModelSerializer):
    dataset = serializers.CharField(source="version.name")
    runs = serializers.SerializerMethodField()

    class Meta:
        model = ExperimentGrid
        fields = [
            "id", "name", "dataset", "backbones", "losses", "preset", "epochs", "base_config",
            "status", "cancel_requested", "error", "report_dir", "created_at", "started_at",
            "finished_at", "runs",
        ]  # fmt: skip
        read_only_fields = fields

    def get_runs(self, grid: ExperimentGrid) -> list[dict[str, Any]]:
        return list(
            grid.runs.order_by("pk").values("id", "name", "status", "progress", "metrics_mean")
        )


class TrainingRunListCreateApi(generics.ListAPIView):
    """Training runs, newest first; POST starts one (queued on the training workers)."""

    permission_classes = [IsCurator]
    serializer_class = TrainingRunSerializer
    queryset = TrainingRun.objects.select_related("version", "created_by")

    @extend_schema(request=TrainingRunCreateSerializer, responses={201: TrainingRunSerializer})
    def post(self, request: Request) -> Response:
        data = TrainingRunCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        options = dict(data.validated_data)
        run = services.training_run_start(
            version=options.pop("dataset"),
            name=options.pop("name", "") or None,
            config=services.training_config_from_options(options),
            created_by=request.user,
        )
        return Response(TrainingRunSerializer(run).data, status=status.HTTP_201_CREATED)


class TrainingRunDetailApi(APIView):
    permission_classes = [IsCurator]

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "logs", OpenApiTypes.BOOL, description="include the epoch logs (default 1)"
            )
        ],
        responses=TrainingRunDetailSerializer,
    )
    def get(self, request: Request, pk: int) -> Response:
        """One run: status, progress, metrics per fold, mean ± std and pooled, epoch logs."""
        run = get_object_or_404(TrainingRun.objects.select_related("version", "created_by"), pk=pk)
        with_logs = request.query_params.get("logs", "1") not in ("0", "false", "no")
        return Response(TrainingRunDetailSerializer(run, context={"with_logs": with_logs}).data)


class TrainingRunCancelApi(APIView):
    permission_classes = [IsCurator]

    @extend_schema(request=None, responses=TrainingRunSerializer)
    def post(self, request: Request, pk: int) -> Response:
        """Cancel a pending run, or ask a running one to stop; its checkpoints are kept."""
        run = get_object_or_404(TrainingRun, pk=pk)
        run = services.training_run_cancel(run=run, by=request.user)
        return Response(TrainingRunSerializer(run).data)


class TrainingRunResumeApi(APIView):
    permission_classes = [IsCurator]

    @extend_schema(request=None, responses=TrainingRunSerializer)
    def post(self, request: Request, pk: int) -> Response:
        """Queue a failed, cancelled or interrupted run again; it continues from its
        checkpoints."""
        run = get_object_or_404(TrainingRun, pk=pk)
        run = services.training_run_resume(run=run)
        return Response(TrainingRunSerializer(run).data)


def predictions_csv_response(run: TrainingRun) -> HttpResponse:
    """The run's predictions as a CSV download (a few hundred rows: built in memory)."""
    response = HttpResponse(selectors.run_predictions_csv(run), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="run{run.pk}_predictions.csv"'
    return response


class TrainingRunPredictionsCsvApi(APIView):
    permission_classes = [IsCurator]
    renderer_classes = [JSONRenderer, CsvRenderer]

    @extend_schema(
        operation_id="training_run_predictions_csv",
        responses={
            (200, "text/csv"): OpenApiResponse(
                response=OpenApiTypes.STR,
                description="clip_id, fold, p_A, p_B, p_C, p_D, p_E: one row per predicted "
                "clip, ordered by clip_id; fold = the outer fold whose model predicted the clip "
                "(out-of-fold), empty for clips outside the run's dataset version.",
            )
        },
    )
    def get(self, request: Request, pk: int) -> HttpResponse:
        """The run's predictions as CSV."""
        return predictions_csv_response(get_object_or_404(TrainingRun, pk=pk))


class TrainingRunClipPredictionApi(APIView):
    permission_classes = [IsCurator]

    @extend_schema(responses=PredictionSerializer)
    def get(self, request: Request, pk: int, clip_id: str) -> Response:
        """The run's prediction for one clip (curators only, never shown to experts)."""
        run = get_object_or_404(TrainingRun, pk=pk)
        prediction = selectors.prediction_for_clip(run, clip_id)
        if prediction is None:
            return Response(
                {"detail": f"run {run.pk} has no prediction for clip {clip_id!r}"},
                status=status.HTTP_404_NOT_FOUND,
            )
        return Response(PredictionSerializer(prediction).data)


class ExperimentGridListCreateApi(generics.ListAPIView):
    """Experiment grids, newest first; POST starts one (its runs train one after another)."""

    permission_classes = [IsCurator]
    serializer_class = ExperimentGridSerializer
    queryset = ExperimentGrid.objects.select_related("version")

    @extend_schema(
        request=ExperimentGridCreateSerializer, responses={201: ExperimentGridSerializer}
    )
    def post(self, request: Request) -> Response:
        data = ExperimentGridCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        options = dict(data.validated_data)
        grid = services.experiment_grid_start(
            version=options.pop("dataset"),
            name=options.pop("name", "") or None,
            backbones=options.pop("backbones"),
            losses=options.pop("losses"),
            preset=options.pop("preset"),
            epochs=options.pop("epochs"),
            base_config=services.training_config_from_options(options),
            created_by=request.user,
        )
        return Response(ExperimentGridSerializer(grid).data, status=status.HTTP_201_CREATED)


class ExperimentGridDetailApi(generics.RetrieveAPIView):
    permission_classes = [IsCurator]
    serializer_class = ExperimentGridSerializer
    queryset = ExperimentGrid.objects.select_related("version")


class ExperimentGridCancelApi(APIView):
    permission_classes = [IsCurator]

    @extend_schema(request=None, responses=ExperimentGridSerializer)
    def post(self, request: Request, pk: int) -> Response:
        """Cancel the grid's unfinished runs; the grid then ends with a report of the others."""
        grid = get_object_or_404(ExperimentGrid, pk=pk)
        grid = services.experiment_grid_cancel(grid=grid, by=request.user)
        return Response(ExperimentGridSerializer(grid).data)
