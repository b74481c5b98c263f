"""REST API of training runs, predictions and experiment grids (curators and admins only).

GET  /api/training-runs/                          runs, newest first (paged); POST starts one
GET  /api/training-runs/<id>/?logs=0              status, progress, elapsed and remaining time,
                                                  per-fold progress, metrics (+ epoch logs)
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

from collections.abc import Collection, Sequence
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

from annotation.access.permissions import IsCurator
from annotation.access.roles import signed_in
from annotation.aggregation.api import CsvRenderer
from datasets.models import DatasetVersion
from modeling import selectors, services
from modeling.ml.backbones import BACKBONES
from modeling.ml.losses import LOSSES
from modeling.ml.options import RECIPE_HELP, RECIPES, TrainOption
from modeling.ml.train import TRAIN_OPTIONS
from modeling.models import ExperimentGrid, Prediction, TrainingRun


def training_option_fields(
    options: Sequence[TrainOption], *, exclude: Collection[str] = ()
) -> dict[str, serializers.Field]:
    """One serializer field per training option (modeling.ml.options): its default, bounds
    and help; a blank-allowed option takes null (the config resolves it by preset)."""
    generated: dict[str, serializers.Field] = {}
    for option in options:
        if option.name in exclude:
            continue
        common: dict[str, Any] = {
            "default": option.surface_default, "help_text": option.help,
            "allow_null": option.blank_allowed,
        }  # fmt: skip
        if option.spec.label:
            common["label"] = option.spec.label
        bounds: dict[str, Any] = {"min_value": option.spec.min, "max_value": option.spec.max}
        if option.kind is bool:
            generated[option.name] = serializers.BooleanField(**common)
        elif option.spec.choices:
            generated[option.name] = serializers.ChoiceField(option.spec.choices, **common)
        elif option.kind is int:
            generated[option.name] = serializers.IntegerField(**bounds, **common)
        elif option.kind is float:
            generated[option.name] = serializers.FloatField(**bounds, **common)
        else:
            generated[option.name] = serializers.CharField(
                # DRF takes max_length=None (no limit); its stub says int.
                max_length=option.spec.max_length,  # type: ignore[arg-type]
                **common,
            )
    return generated


class TrainingRequestSerializer(serializers.Serializer):
    """What starting a run or a grid takes besides the training options."""

    dataset = serializers.SlugField(help_text="name of a ready dataset version")
    name = serializers.CharField(required=False, allow_blank=True, max_length=120)
    recipe = serializers.ChoiceField(
        choices=tuple(RECIPES), default=None, allow_null=True, help_text=RECIPE_HELP
    )

    def validate_dataset(self, name: str) -> DatasetVersion:
        version = DatasetVersion.objects.filter(name=name).first()
        if version is None:
            raise serializers.ValidationError(f"no dataset version named {name!r}")
        return version

    def training_config(self) -> dict[str, Any]:
        """The TrainConfig fields asked for: the recipe's, overridden by the options the
        request gives (an option left out takes the recipe's value, else its default)."""
        return services.training_config_from_options(
            self.validated_data,
            recipe=self.validated_data.get("recipe"),
            given=set(self.initial_data),
        )


def training_request_serializer(
    name: str,
    options: Sequence[TrainOption],
    *,
    exclude: Collection[str] = (),
    extra: dict[str, serializers.Field] | None = None,
) -> type[TrainingRequestSerializer]:
    """A request serializer with a field per option in ``options`` (and ``extra``)."""
    attrs: dict[str, Any] = {**training_option_fields(options, exclude=exclude), **(extra or {})}
    return type(name, (TrainingRequestSerializer,), attrs)


TrainingRunCreateSerializer = training_request_serializer(
    "TrainingRunCreateSerializer", TRAIN_OPTIONS
)
ExperimentGridCreateSerializer = training_request_serializer(
    "ExperimentGridCreateSerializer",
    TRAIN_OPTIONS,
    exclude=("backbone", "loss"),
    extra={
        "backbones": serializers.ListField(
            child=serializers.ChoiceField(choices=BACKBONES),
            default=list(BACKBONES),
            min_length=1,
        ),
        "losses": serializers.ListField(
            child=serializers.ChoiceField(choices=tuple(LOSSES)),
            default=list(services.GRID_LOSSES),
            min_length=1,
        ),
    },
)


class TrainingRunSerializer(serializers.ModelSerializer):
    dataset = serializers.CharField(source="version.name")
    # The folder's name under MERSV_RUNS_ROOT, never the workers' absolute path.
    run_folder = serializers.CharField(
        read_only=True, help_text="the run's folder, relative to the runs root"
    )
    created_by = serializers.CharField(source="created_by.username", default=None)

    class Meta:
        model = TrainingRun
        fields = [
            "id", "name", "dataset", "grid", "config", "status", "cancel_requested",
            "progress", "progress_message", "n_folds", "folds_done", "metrics_mean",
            "metrics_std", "pooled_metrics", "fold_metrics", "fold_summaries", "duration_s",
            "error", "run_folder", "model_version", "created_by", "created_at",
            "started_at", "finished_at",
        ]  # fmt: skip
        read_only_fields = fields


class TrainingRunDetailSerializer(TrainingRunSerializer):
    logs = serializers.SerializerMethodField(
        help_text='epoch records by fold: {"0": [{"epoch": 1, "train_loss": .., "val_loss": '
        '.., "val_hi": .., "val_emd": .., "best_epoch": .., "seconds": ..}, ...]}'
    )

    elapsed_s = serializers.SerializerMethodField(
        help_text="training time so far in seconds, every attempt included (grows while running)"
    )
    remaining_s = serializers.SerializerMethodField(
        help_text="about how many seconds a running run still needs; null when not running"
    )
    folds = serializers.SerializerMethodField(
        help_text='per outer fold: {"fold": 0, "label": "fold 1", "state": "training", '
        '"epochs_run": .., "horizon": .., "best_epoch": .., "share": 0..1}; state is waiting, '
        "training, done or stopped"
    )

    class Meta(TrainingRunSerializer.Meta):
        fields = [*TrainingRunSerializer.Meta.fields, "elapsed_s", "remaining_s", "folds", "logs"]
        read_only_fields = fields

    def get_logs(self, run: TrainingRun) -> dict[str, list[dict[str, Any]]] | None:
        return selectors.run_logs(run) if self.context.get("with_logs", True) else None

    def get_elapsed_s(self, run: TrainingRun) -> float:
        return round(selectors.run_elapsed_s(run), 1)

    def get_remaining_s(self, run: TrainingRun) -> float | None:
        remaining = selectors.run_remaining_s(run, selectors.run_elapsed_s(run))
        return None if remaining is None else round(remaining, 1)

    def get_folds(self, run: TrainingRun) -> list[dict[str, Any]]:
        return [fold.as_dict() for fold in selectors.run_fold_progress(run)]


class PredictionSerializer(serializers.ModelSerializer):
    clip_id = serializers.CharField(source="clip.external_id")
    p = serializers.SerializerMethodField(help_text='{"A": .., ..., "E": ..}, sums to 1')

    class Meta:
        model = Prediction
        fields = ["run", "clip_id", "fold", "p", "model_version", "metadata", "created_at"]
        read_only_fields = fields

    def get_p(self, prediction: Prediction) -> dict[str, float]:
        return dict(zip("ABCDE", prediction.p, strict=True))


class ExperimentGridSerializer(serializers.ModelSerializer):
    dataset = serializers.CharField(source="version.name")
    report_folder = serializers.CharField(
        read_only=True, help_text="the grid's report folder, relative to the runs root"
    )
    runs = serializers.SerializerMethodField()

    class Meta:
        model = ExperimentGrid
        fields = [
            "id", "name", "dataset", "backbones", "losses", "preset", "epochs", "base_config",
            "status", "cancel_requested", "error", "report_folder", "created_at", "started_at",
            "finished_at", "runs",
        ]  # fmt: skip
        read_only_fields = fields

    def get_runs(self, grid: ExperimentGrid) -> list[dict[str, Any]]:
        rows = grid.runs.order_by("pk").values("id", "name", "status", "progress", "metrics_mean")
        return [dict(row) for row in rows]


class TrainingRunListCreateApi(generics.ListAPIView):
    """Training runs, newest first; POST starts one (queued on the training workers)."""

    permission_classes = [IsCurator]
    serializer_class = TrainingRunSerializer
    queryset = TrainingRun.objects.select_related("version", "created_by")

    @extend_schema(request=TrainingRunCreateSerializer, responses={201: TrainingRunSerializer})
    def post(self, request: Request) -> Response:
        data = TrainingRunCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        run = services.training_run_start(
            version=data.validated_data["dataset"],
            name=data.validated_data.get("name") or None,
            config=data.training_config(),
            created_by=signed_in(request),
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
        run = services.training_run_cancel(run=run, by=signed_in(request))
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
        config = data.training_config()
        grid = services.experiment_grid_start(
            version=data.validated_data["dataset"],
            name=data.validated_data.get("name") or None,
            backbones=data.validated_data["backbones"],
            losses=data.validated_data["losses"],
            preset=config.pop("preset", services.training_option_default("preset")),
            epochs=config.pop("epochs", services.training_option_default("epochs")),
            base_config=config,
            created_by=signed_in(request),
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
        grid = services.experiment_grid_cancel(grid=grid, by=signed_in(request))
        return Response(ExperimentGridSerializer(grid).data)
