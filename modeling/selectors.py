"""Reads of the modeling app, shaped for the run and grid pages, the API and the reports.

Predictions are for curators only: nothing here is called by an endpoint experts can reach
(the grading API stays blind to the model).
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from django.conf import settings
from django.utils import timezone

from annotation.grades import GRADES, PROB_COLUMNS
from annotation.storage import RUNS, is_local, storage_for
from datasets.selectors import version_clip_pks_by_export_id
from modeling.figures import (
    Curve,
    PcaPanel,
    heatmap_svg,
    hi_by_class_svg,
    learning_curves_svg,
    pca_svg,
)
from modeling.ml.data import fold_label
from modeling.ml.metrics import histogram_intersection
from modeling.models import (
    P_FIELDS,
    EpochRecord,
    ExperimentGrid,
    JobStatus,
    Prediction,
    TrainingRun,
)
from modeling.report import (
    BACKBONE_LABELS,
    LOSS_LABELS,
    Figure,
    SettingResult,
    Table,
    fold_metrics_tables,
    report_tables,
)

PREDICTION_COLUMNS: tuple[str, ...] = ("clip_id", "fold", *PROB_COLUMNS)


# --------------------------------------------------------------------------------------------
# One run


def run_curves(run: TrainingRun) -> list[Curve]:
    """Train/val loss by epoch per fold, from one query over the epoch records."""
    rows = EpochRecord.objects.filter(run=run).values_list(
        "fold", "epoch", "train_loss", "val_loss", "best_epoch"
    )
    by_fold: dict[int, list[tuple[int, float, float, int]]] = defaultdict(list)
    for fold, epoch, train, val, best in rows:
        by_fold[fold].append((epoch, train, val, best))
    curves = []
    for fold in sorted(by_fold):
        points = sorted(by_fold[fold])
        curves.append(
            Curve(
                fold=fold,
                epochs=[p[0] for p in points],
                train_loss=[p[1] for p in points],
                val_loss=[p[2] for p in points],
                best_epoch=points[-1][3],
            )
        )
    return curves


@dataclass(frozen=True)
class CurveSummary:
    """One fold's learning curve in numbers (the table beside the figure, for keyboards and
    screen readers): epochs run, the epoch kept and its losses, the last epoch's losses."""

    label: str
    epochs: int
    best_epoch: int | None
    best_train_loss: float | None
    best_val_loss: float | None
    last_train_loss: float
    last_val_loss: float


def run_curve_summaries(curves: list[Curve]) -> list[CurveSummary]:
    summaries = []
    for curve in curves:
        if not curve.epochs:
            continue
        kept = curve.epochs.index(curve.best_epoch) if curve.best_epoch in curve.epochs else None
        summaries.append(
            CurveSummary(
                label=fold_label(curve.fold),
                epochs=len(curve.epochs),
                best_epoch=curve.best_epoch,
                best_train_loss=None if kept is None else curve.train_loss[kept],
                best_val_loss=None if kept is None else curve.val_loss[kept],
                last_train_loss=curve.train_loss[-1],
                last_val_loss=curve.val_loss[-1],
            )
        )
    return summaries


def run_logs(run: TrainingRun) -> dict[str, list[dict[str, Any]]]:
    """The epoch records by fold, for the API."""
    logs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in EpochRecord.objects.filter(run=run).values(
        "fold", "epoch", "train_loss", "val_loss", "val_hi", "val_emd", "best_epoch", "seconds"
    ):
        row: dict[str, Any] = dict(record)
        logs[str(row.pop("fold"))].append(row)
    return dict(logs)


def run_predictions_frame(run: TrainingRun) -> pd.DataFrame:
    """``clip_id, fold, p_A..p_E`` of every prediction of the run, by clip id; ``fold`` is
    empty for clips predicted after the run (not in its version).

    The version's clips are named as its export names them (per-version pseudonyms, unless
    it was built with the platform's ids), so the table joins with the export the run trained
    on (``evaluate_predictions EXPORT/distributions.csv``); clips predicted after the run are in
    no export and keep the platform's ids.
    """
    export_ids = {pk: e for e, pk in version_clip_pks_by_export_id(run.version).items()}
    rows = Prediction.objects.filter(run=run).values_list(
        "clip_id", "clip__external_id", "fold", *P_FIELDS
    )
    frame = pd.DataFrame(
        [(export_ids.get(pk, external_id), *rest) for pk, external_id, *rest in rows],
        columns=list(PREDICTION_COLUMNS),
    )
    frame = frame.sort_values("clip_id", kind="stable", ignore_index=True)
    frame["fold"] = frame["fold"].astype("Int64")  # integers with gaps, not floats
    return frame


def run_predictions_csv(run: TrainingRun) -> str:
    """The predictions table as CSV text. Nine decimals keep every row's sum within 1e-8 of
    1 (evaluate_predictions checks 1e-6; six decimals could round a row past it)."""
    return run_predictions_frame(run).to_csv(index=False, float_format="%.9f")


def run_clip_scores(run: TrainingRun) -> pd.DataFrame:
    """Per clip of the version with an out-of-fold prediction: ``clip_id, fold, mode``
    (the true grade mode) and ``hi`` between the true and the predicted distribution."""
    truth = {
        clip_pk: (external_id, p, mode)
        for clip_pk, external_id, p, mode in run.version.clips.values_list(
            "clip_id", "clip_external_id", "p", "mode"
        )
    }
    rows = []
    predicted = []
    for clip_pk, fold, *q in Prediction.objects.filter(run=run, fold__isnull=False).values_list(
        "clip_id", "fold", *P_FIELDS
    ):
        if clip_pk in truth:
            external_id, p, mode = truth[clip_pk]
            rows.append((external_id, fold, mode, p))
            predicted.append(q)
    if not rows:
        return pd.DataFrame(columns=["clip_id", "fold", "mode", "hi"])
    hi = histogram_intersection(np.array([r[3] for r in rows]), np.array(predicted))
    frame = pd.DataFrame([r[:3] for r in rows], columns=["clip_id", "fold", "mode"])
    frame["hi"] = hi
    return frame.sort_values("clip_id", ignore_index=True)


def run_hi_by_class(run: TrainingRun) -> dict[str, list[float]]:
    scores = run_clip_scores(run)
    return {g: scores.loc[scores["mode"] == g, "hi"].tolist() for g in GRADES}


def run_pca_panels(run: TrainingRun) -> list[PcaPanel]:
    panels = []
    for fold in sorted(run.pca, key=int):
        entry = run.pca[fold]
        panels.append(
            PcaPanel(
                title=f"{fold_label(int(fold))} (test clips)",
                points=[(x, y, mode) for _, x, y, mode in entry["points"]],
                explained=(entry["explained"][0], entry["explained"][1]),
            )
        )
    return panels


def run_figures(run: TrainingRun, *, curves: Sequence[Curve] | None = None) -> list[Figure]:
    """Figures 5-7 of the paper for one run (those with data so far); ``curves``: the run's
    learning curves, when the caller read them already."""
    stem = f"run{run.pk}"
    loss = str(run.config.get("loss", "loss")).upper()
    figures = [
        Figure(
            f"{stem}_learning_curves.svg",
            f"Learning curves of run {run.pk} ({run.name}): train and val {loss} loss by epoch",
            learning_curves_svg(
                run_curves(run) if curves is None else curves, loss_name=f"{loss} loss"
            ),
        )
    ]
    hi_groups = run_hi_by_class(run)
    if any(hi_groups.values()):
        figures.append(
            Figure(
                f"{stem}_hi_by_class.svg",
                f"HI of the out-of-fold predictions of run {run.pk} by true grade mode",
                hi_by_class_svg(hi_groups),
            )
        )
    if run.pca:
        figures.append(
            Figure(
                f"{stem}_pca.svg",
                f"PCA of the backbone features of run {run.pk}: each fold's test clips in the "
                "feature space of that fold's model",
                pca_svg(run_pca_panels(run)),
            )
        )
    return figures


@dataclass(frozen=True)
class FoldProgress:
    """Where one outer fold of a run stands, for the run page and the API."""

    fold: int  # the export's fold number (0-based)
    label: str  # as people read it: "fold 1"
    state: str  # waiting, training, done, stopped (the run ended before the fold did)
    epochs_run: int
    horizon: int  # where the fold may end: the epoch limit, or patience epochs after the best
    best_epoch: int | None
    share: float  # 0..1

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def run_fold_progress(
    run: TrainingRun, curves: Sequence[Curve] | None = None
) -> list[FoldProgress]:
    """One entry per outer fold, from the epoch records the worker writes while it trains
    (``curves``: the run's, when the caller has them already) and the folds it finished."""
    by_fold = {c.fold: c for c in (run_curves(run) if curves is None else curves)}
    limit = int(run.config.get("epochs") or 1)
    patience = run.config.get("early_stopping_patience")
    folds = []
    for fold in range(max(run.n_folds, len(by_fold))):
        curve = by_fold.get(fold)
        summary = run.fold_summaries.get(str(fold))
        if summary is not None:
            run_epochs = int(summary.get("epochs_run") or 0)
            best = summary.get("best_epoch")
            folds.append(FoldProgress(fold, fold_label(fold), "done", run_epochs, run_epochs,
                                      best, 1.0))  # fmt: skip
            continue
        if curve is None or not curve.epochs:
            folds.append(FoldProgress(fold, fold_label(fold), "waiting", 0, limit, None, 0.0))
            continue
        epoch, best = max(curve.epochs), curve.best_epoch
        horizon = min(limit, (best or 0) + int(patience)) if patience else limit
        horizon = max(horizon, epoch)
        state = "training" if run.is_active else "stopped"
        folds.append(
            FoldProgress(fold, fold_label(fold), state, epoch, horizon, best, epoch / horizon)
        )
    return folds


def run_elapsed_s(run: TrainingRun, *, now: datetime | None = None) -> float:
    """The run's training time so far: the worker keeps ``duration_s`` current as of its last
    heartbeat, so a running run adds the time since. A run whose heartbeat went stale (its
    worker died) stops counting there."""
    elapsed = run.duration_s
    if run.status == JobStatus.RUNNING and run.heartbeat_at is not None:
        since = ((now or timezone.now()) - run.heartbeat_at).total_seconds()
        if 0 <= since <= settings.TRAINING_HEARTBEAT_STALE_S:
            elapsed += since
    return elapsed


def run_remaining_s(run: TrainingRun, elapsed_s: float) -> float | None:
    """About how long a running run still needs: the time so far, scaled by the progress
    still to make (the progress counts each fold to where it may end, the epoch limit or the
    early-stopping horizon). None until there is progress to scale, and once it ended."""
    if run.status != JobStatus.RUNNING or not 0.0 < run.progress < 1.0:
        return None
    return elapsed_s * (1.0 - run.progress) / run.progress


def run_fold_tables(run: TrainingRun) -> list[Table]:
    return fold_metrics_tables(
        run.fold_metrics, mean=run.metrics_mean, std=run.metrics_std, pooled=run.pooled_metrics
    )


def prediction_for_clip(run: TrainingRun, clip_external_id: str) -> Prediction | None:
    return (
        Prediction.objects.filter(run=run, clip__external_id=clip_external_id)
        .select_related("clip")
        .first()
    )


# --------------------------------------------------------------------------------------------
# Grids


def grid_results(grid: ExperimentGrid) -> list[SettingResult]:
    """The metrics of the grid's succeeded runs, in the paper's order of settings."""
    runs = grid.runs.filter(status=JobStatus.SUCCEEDED)
    results = [
        SettingResult(
            backbone=run.config["backbone"],
            loss=run.config["loss"],
            mean=run.metrics_mean,
            std=run.metrics_std,
            pooled=run.pooled_metrics,
            run_id=run.pk,
        )
        for run in runs
    ]
    order = {b: i for i, b in enumerate(BACKBONE_LABELS)} | {
        loss: i for i, loss in enumerate(LOSS_LABELS)
    }
    return sorted(results, key=lambda r: (order.get(r.backbone, 99), order.get(r.loss, 99)))


@dataclass(frozen=True)
class GridReport:
    title: str
    intro: list[str]
    tables: list[Table]
    figures: list[Figure]


def _settings_text(config: dict[str, Any]) -> str:
    shown = {k: v for k, v in config.items() if k not in ("preset", "epochs")}
    return ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or "TrainConfig defaults"


def grid_report(grid: ExperimentGrid) -> GridReport:
    results = grid_results(grid)
    runs = list(grid.runs.all())
    failed = [r for r in runs if r.status != JobStatus.SUCCEEDED]
    intro = [
        f"Dataset version {grid.version.name} ({grid.version.n_clips} clips, "
        f"{grid.version.n_folds} outer folds, content hash {grid.version.content_hash[:12]}); "
        f"preset {grid.preset}, at most {grid.epochs} epochs per fold; "
        f"shared settings: {_settings_text(grid.base_config)}.",
        f"{len(results)} of {len(runs)} settings finished."
        + (
            " Not finished: " + ", ".join(f"{r.name} ({r.status})" for r in failed) + "."
            if failed
            else ""
        ),
    ]
    figures: list[Figure] = []
    if results:
        rows = [(b, BACKBONE_LABELS.get(b, b)) for b in grid.backbones]
        columns = [(loss, LOSS_LABELS.get(loss, loss)) for loss in grid.losses]
        for metric, label, higher in (("hi", "HI", True), ("emd", "EMD", False)):
            values = {(r.backbone, r.loss): float(r.mean[metric]) for r in results}
            figures.append(
                Figure(
                    f"grid_{metric}.svg",
                    f"Mean {label} over the folds per setting (darker is better)",
                    heatmap_svg(
                        values,
                        rows=rows,
                        columns=columns,
                        metric_label=f"Mean {label}",
                        higher_is_better=higher,
                    ),
                )
            )
        best = max(results, key=lambda r: float(r.mean.get("hi", -1.0)))
        intro.append(
            f"Figures of the setting with the highest mean HI: {best.label} (run {best.run_id})."
        )
        assert best.run_id is not None  # grid_results reads stored runs only
        figures += run_figures(TrainingRun.objects.get(pk=best.run_id))
    return GridReport(
        title=f"Experiment grid {grid.pk}: {grid.name}",
        intro=intro,
        tables=report_tables(results),
        figures=figures,
    )


# --- the report files of a grid (written by services.grid_report_write) ----------------------

REPORT_FILE_TYPES = {
    ".md": "text/markdown; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
}
_REPORT_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,150}\.(?:md|html|svg)")


def grid_report_folder(grid: ExperimentGrid) -> str:
    """The grid's report folder in the ``runs`` storage (``grids/<grid id>``)."""
    return f"grids/{grid.pk}"


def grid_report_file_names(grid: ExperimentGrid, report: GridReport | None = None) -> list[str]:
    """The names of the grid's report files, report.html first (no storage call: the
    figures are those of its ``report``); empty until the report was written."""
    if not grid.report_dir:
        return []
    figures = (report or grid_report(grid)).figures
    return ["report.html", "report.md", *(f.filename for f in figures)]


def grid_report_file(grid: ExperimentGrid, name: str) -> bytes | None:
    """The bytes of the report file ``name`` of the grid, read from the runs storage (on
    whichever host it was written); None when the grid has no report yet, ``name`` is not a
    report file's name (one plain name ending .md, .html or .svg) or it is not stored."""
    if not grid.report_dir or not _REPORT_FILE_NAME.fullmatch(name):
        return None
    stored = f"{grid_report_folder(grid)}/{name}"
    try:
        if is_local(RUNS):  # the runs folder of this settings (tests move TRAINING_RUNS_ROOT)
            return Path(settings.TRAINING_RUNS_ROOT).joinpath(*stored.split("/")).read_bytes()
        with storage_for(RUNS).open(stored, "rb") as handle:
            data: bytes = handle.read()
        return data
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
