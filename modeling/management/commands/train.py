"""python manage.py train --dataset VERSION [--backbone B] [--loss L] [--preset P] ...

Trains synchronously with the same service as the Celery task (a tqdm bar per fold), then
prints where the run's results are; ``--predictions-out FILE`` writes the out-of-fold
predictions (clip_id, fold, p_A..p_E). ``--resume RUN_ID`` continues an interrupted, failed or
cancelled run from its checkpoints. Ctrl-C interrupts a run so that it can be resumed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse

from datasets.models import DatasetVersion
from modeling import selectors, services
from modeling.ml.backbones import BACKBONES
from modeling.ml.losses import LOSSES
from modeling.ml.train import OPTIMIZERS
from modeling.models import JobStatus, TrainingRun
from modeling.report import MAIN_METRICS, METRIC_LABELS


def add_training_options(parser: CommandParser) -> None:
    """Options shared by `train` and `experiment_grid`; unset ones take TrainConfig's defaults."""
    parser.add_argument("--preset", choices=("small", "paper"), default="small")
    parser.add_argument("--epochs", type=int, help="at most this many epochs per fold")
    parser.add_argument("--optimizer", choices=OPTIMIZERS)
    parser.add_argument("--lr", type=float, help="learning rate")
    parser.add_argument(
        "--head-lr-scale", type=float, help="the head learns at lr times this (default 1)"
    )
    parser.add_argument("--weight-decay", type=float)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--patience", type=int, help="early-stopping patience; 0 = off")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device", help="cpu (default), cuda, cuda:1, ...")
    parser.add_argument("--pretrained", help="local backbone weights (see modeling.ml.model)")
    parser.add_argument("--no-fair-sampling", action="store_true")
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument(
        "--morphometry",
        action=argparse.BooleanOptionalAction,
        help="the head also takes the head's morphometry (default: on for the small preset, "
        "off for paper)",
    )
    parser.add_argument(
        "--head-hidden",
        type=int,
        help="width of the head's hidden layer, 0 for the paper's linear head (default: 64 for "
        "the small preset, 0 for paper)",
    )
    parser.add_argument("--no-progress", action="store_true")


def training_options(options: dict[str, Any]) -> dict[str, Any]:
    return services.training_config_from_options(
        {
            "preset": options["preset"],
            "epochs": options["epochs"],
            "optimizer": options["optimizer"],
            "lr": options["lr"],
            "head_lr_scale": options["head_lr_scale"],
            "weight_decay": options["weight_decay"],
            "batch_size": options["batch_size"],
            "early_stopping_patience": options["patience"],
            "seed": options["seed"],
            "device": options["device"],
            "pretrained": options["pretrained"],
            "fair_sampling": False if options["no_fair_sampling"] else None,
            "augment": False if options["no_augment"] else None,
            "morphometry": options["morphometry"],
            "head_hidden": options["head_hidden"],
        }
    )


def dataset_version(name: str) -> DatasetVersion:
    version = DatasetVersion.objects.filter(name=name).first()
    if version is None:
        known = ", ".join(DatasetVersion.objects.values_list("name", flat=True)[:20]) or "none"
        raise CommandError(f"no dataset version named {name!r} (versions: {known})")
    return version


class Command(BaseCommand):
    help = "Cross-validate a grade-distribution model on a dataset version (synchronously)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dataset", help="dataset version name")
        parser.add_argument("--backbone", choices=BACKBONES, default="timesformer")
        parser.add_argument("--loss", choices=tuple(LOSSES), default="emd")
        parser.add_argument("--name", help="run name (default backbone-preset-loss)")
        add_training_options(parser)
        parser.add_argument("--predictions-out", type=Path, help="write the predictions CSV")
        parser.add_argument("--resume", type=int, metavar="RUN_ID", help="continue this run")

    def handle(self, *args: object, **options: Any) -> None:
        if options["resume"] is not None:
            run = TrainingRun.objects.filter(pk=options["resume"]).first()
            if run is None:
                raise CommandError(f"no training run {options['resume']}")
            # A pending (interrupted) run is claimed as it is; a running one is taken over
            # once its worker's heartbeat is stale (the service refuses while it is fresh).
            if run.status in (JobStatus.FAILED, JobStatus.CANCELLED):
                run = self._call(services.training_run_resume, run=run, enqueue=False)
        else:
            if not options["dataset"]:
                raise CommandError("--dataset is required (or --resume RUN_ID)")
            config = {
                "backbone": options["backbone"],
                "loss": options["loss"],
                **training_options(options),
            }
            run = self._call(
                services.training_run_start,
                version=dataset_version(options["dataset"]),
                config=config,
                created_by=None,
                name=options["name"],
                enqueue=False,
            )
        self.stdout.write(f"training run {run.pk} ({run.name}) in {run.checkpoint_dir}")
        try:
            run = services.training_run_execute(run_id=run.pk, progress=not options["no_progress"])
        except services.RunBusy as exc:
            raise CommandError(f"{exc}: wait for it, or cancel it first") from exc
        except KeyboardInterrupt:
            raise CommandError(
                f"interrupted; resume with `python manage.py train --resume {run.pk}`"
            ) from None
        except Exception as exc:
            message = services.training_error_message(exc)
            raise CommandError(f"run {run.pk} failed: {message}") from exc
        assert run is not None
        self._report(run)
        if options["predictions_out"] and run.status == JobStatus.SUCCEEDED:
            out = Path(options["predictions_out"])
            out.parent.mkdir(parents=True, exist_ok=True)
            services.write_text_atomic(out, selectors.run_predictions_csv(run))
            self.stdout.write(f"out-of-fold predictions: {out}")

    def _call(self, service: Any, **kwargs: Any) -> Any:
        try:
            return service(**kwargs)
        except services.TrainingError as exc:
            raise CommandError(str(exc)) from exc

    def _report(self, run: TrainingRun) -> None:
        if run.status != JobStatus.SUCCEEDED:
            raise CommandError(f"run {run.pk} ended {run.status}: {run.progress_message}")
        pooled = run.pooled_metrics
        scores = ", ".join(
            f"{METRIC_LABELS[m]} {pooled[m]:.4f}" for m in MAIN_METRICS if m in pooled
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"run {run.pk} succeeded in {run.duration_s:.0f} s; out-of-fold: {scores}"
            )
        )
        self.stdout.write(f"page: {reverse('training-run-detail', args=[run.pk])}")
        self.stdout.write(f"checkpoints and fold models: {run.checkpoint_dir}")
        self.stdout.write(f"model version: {run.model_version}")
