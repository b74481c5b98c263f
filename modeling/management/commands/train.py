"""python manage.py train --dataset VERSION [--recipe paper] [--backbone B] [--loss L] ...

The training flags are generated from TrainConfig's options (modeling.ml.options): their
defaults are the web form's and the API's. ``--recipe paper`` applies the paper's settings
(SGD, 1000 epochs, ...) to the defaults; the flags given override it.

Trains synchronously with the same service as the Celery task (a tqdm bar per fold), then
prints where the run's results are; ``--predictions-out FILE`` writes the out-of-fold
predictions (clip_id, fold, p_A..p_E). ``--resume RUN_ID`` continues an interrupted, failed or
cancelled run from its checkpoints. Ctrl-C interrupts a run so that it can be resumed.

``--pretrained`` takes the name of weights in MERSV_WEIGHTS_DIR, as the form and the API do,
or, here only (an admin on the machine), a path to a local file or folder.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse

from datasets.models import DatasetVersion
from modeling import selectors, services
from modeling.ml.options import RECIPE_HELP, RECIPES, TrainOption
from modeling.ml.train import TRAIN_OPTIONS
from modeling.models import JobStatus, TrainingRun
from modeling.report import MAIN_METRICS, METRIC_LABELS

# The parsed namespace's record of the training options given on the command line (so that
# a recipe fills only the others).
GIVEN = "training_options_given"


def _record_given(namespace: argparse.Namespace, dest: str) -> None:
    setattr(namespace, GIVEN, (*getattr(namespace, GIVEN, ()), dest))


class _StoreGiven(argparse.Action):
    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
        option_string: str | None = None,
    ) -> None:  # fmt: skip
        setattr(namespace, self.dest, values)
        _record_given(namespace, self.dest)


class _BooleanGiven(argparse.BooleanOptionalAction):
    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
        option_string: str | None = None,
    ) -> None:  # fmt: skip
        super().__call__(parser, namespace, values, option_string)
        _record_given(namespace, self.dest)


def _bounded(option: TrainOption) -> Callable[[str], Any]:
    """argparse's ``type`` for ``option``: its kind within its bounds."""

    def parse(text: str) -> Any:
        value = option.kind(text)
        low, high = option.spec.min, option.spec.max
        if low is not None and value < low:
            raise argparse.ArgumentTypeError(f"{text} is below the minimum, {low:g}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{text} is above the maximum, {high:g}")
        return value

    parse.__name__ = option.kind.__name__  # argparse's "invalid int value: 'x'"
    return parse


def add_training_options(
    parser: CommandParser | argparse.ArgumentParser,
    options: Sequence[TrainOption] = TRAIN_OPTIONS,
    *,
    exclude: Collection[str] = (),
) -> None:
    """One flag per training option (modeling.ml.options) with its default, bounds and help,
    and --recipe; shared by `train` and `experiment_grid`."""
    for option in options:
        if option.name in exclude:
            continue
        flags = [f"--{option.name.replace('_', '-')}"]
        if option.spec.flag:
            flags.append(option.spec.flag)
        default = option.surface_default
        help_text = f"{option.help} (default: {'unset' if default is None else default})"
        kwargs: dict[str, Any] = {
            "dest": option.name, "default": default, "help": help_text.replace("%", "%%"),
        }  # fmt: skip
        if option.kind is bool:
            parser.add_argument(*flags, action=_BooleanGiven, **kwargs)
            continue
        kwargs["action"] = _StoreGiven
        if option.spec.choices:
            kwargs["choices"] = option.spec.choices
        elif option.spec.min is not None or option.spec.max is not None:
            kwargs["type"] = _bounded(option)
        else:
            kwargs["type"] = option.kind
        parser.add_argument(*flags, **kwargs)
    parser.add_argument("--recipe", choices=tuple(RECIPES), help=RECIPE_HELP)
    parser.set_defaults(**{GIVEN: ()})


def training_options(options: dict[str, Any]) -> dict[str, Any]:
    """The TrainConfig fields of the parsed ``options``: the recipe's, overridden by the flags
    given (on the command line, or as call_command keywords other than the default)."""
    given = set(options.get(GIVEN, ())) | {
        o.name for o in TRAIN_OPTIONS if o.name in options and options[o.name] != o.surface_default
    }
    return services.training_config_from_options(
        {o.name: options[o.name] for o in TRAIN_OPTIONS if o.name in options},
        recipe=options.get("recipe"),
        given=given,
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
        parser.add_argument("--name", help="run name (default backbone-preset-loss)")
        add_training_options(parser)
        parser.add_argument("--no-progress", action="store_true")
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
            run = self._call(
                services.training_run_start,
                version=dataset_version(options["dataset"]),
                config=training_options(options),
                created_by=None,
                name=options["name"],
                enqueue=False,
                # An admin on this machine may name weights by path (--pretrained PATH).
                local_paths=True,
            )
        self.stdout.write(f"training run {run.pk} ({run.name}) in {run.checkpoint_dir}")
        run_id = run.pk
        try:
            run = services.training_run_execute(run_id=run_id, progress=not options["no_progress"])
        except services.RunBusy as exc:
            raise CommandError(f"{exc}: wait for it, or cancel it first") from exc
        except KeyboardInterrupt:
            raise CommandError(
                f"interrupted; resume with `python manage.py train --resume {run_id}`"
            ) from None
        except Exception as exc:
            message = services.training_error_message(exc)
            raise CommandError(f"run {run_id} failed: {message}") from exc
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
