"""python manage.py experiment_grid --dataset VERSION --out DIR [--backbones ...] [--losses ...]

The paper's backbone x loss grid, trained one run after another with the same services as
the Celery tasks, then report.md, report.html and SVG figures (Tables 1-7 and Figures 5-7 of
the best setting; see modeling/report.py) in the runs storage, where the grid page serves
them, and a copy in DIR.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from modeling import services
from modeling.management.commands.train import (
    add_training_options,
    dataset_version,
    training_options,
)
from modeling.ml.backbones import BACKBONES
from modeling.ml.losses import LOSSES
from modeling.models import JobStatus


class Command(BaseCommand):
    help = "Train every backbone x loss setting on a dataset version and write the report."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dataset", required=True, help="dataset version name")
        parser.add_argument("--backbones", nargs="+", choices=BACKBONES, default=list(BACKBONES))
        parser.add_argument(
            "--losses", nargs="+", choices=tuple(LOSSES), default=list(services.GRID_LOSSES)
        )
        parser.add_argument("--out", type=Path, required=True, help="report folder")
        parser.add_argument("--name", help="grid name")
        add_training_options(parser, exclude=("backbone", "loss"))
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: object, **options: Any) -> None:
        config = training_options(options)
        preset = config.pop("preset", services.training_option_default("preset"))
        epochs = config.pop("epochs", services.training_option_default("epochs"))
        try:
            grid = services.experiment_grid_start(
                version=dataset_version(options["dataset"]),
                backbones=options["backbones"],
                losses=options["losses"],
                preset=preset,
                epochs=epochs,
                base_config=config,
                created_by=None,
                name=options["name"],
                enqueue=False,
            )
        except services.TrainingError as exc:
            raise CommandError(str(exc)) from exc
        n_runs = grid.runs.count()
        self.stdout.write(f"experiment grid {grid.pk}: {n_runs} runs, report in {options['out']}")
        done = 0
        while (run := services.experiment_grid_next_run(grid_id=grid.pk)) is not None:
            done += 1
            self.stdout.write(f"[{done}/{n_runs}] run {run.pk} {run.name}")
            try:
                services.training_run_execute(run_id=run.pk, progress=not options["no_progress"])
            except KeyboardInterrupt:
                services.experiment_grid_cancel(grid=grid, by=None)
                break
            except Exception as exc:  # recorded on the run; go on with the next setting
                self.stderr.write(f"run failed: {services.training_error_message(exc)}")
        grid = services.experiment_grid_finish(grid_id=grid.pk, out_dir=options["out"])
        style = self.style.SUCCESS if grid.status == JobStatus.SUCCEEDED else self.style.WARNING
        report = Path(options["out"]) / "report.md"
        self.stdout.write(style(f"grid {grid.pk} {grid.status}: {report}"))
