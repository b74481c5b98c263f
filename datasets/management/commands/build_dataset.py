"""python manage.py build_dataset NAME [--min-votes N] [--folds K] [--seed S]
[--exclude-rater ID ...] [--exclude-fast-grades] [--max-rater-model-emd X]"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from datasets import services
from datasets.models import DatasetVersion


class Command(BaseCommand):
    help = "Build (freeze) a dataset version of the current clips, with folds and its export."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--min-votes", type=int, default=1)
        parser.add_argument("--folds", type=int, default=3)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--retired-only", action="store_true")
        parser.add_argument(
            "--exclude-rater",
            action="append",
            default=[],
            metavar="ID",
            help="leave out every vote of this expert (repeatable)",
        )
        parser.add_argument(
            "--exclude-fast-grades",
            action="store_true",
            help="leave out the grades the dashboard flags as very fast",
        )
        parser.add_argument(
            "--max-rater-model-emd",
            type=float,
            default=None,
            metavar="X",
            help="leave out clips whose severity-corrected distribution lies further than X "
            "(EMD) from the raw one",
        )
        parser.add_argument("--licence", default="Internal research use only")
        parser.add_argument("--no-progress", action="store_true")
        parser.add_argument(
            "--platform-clip-ids",
            action="store_true",
            help="name clips in the export by the platform's clip ids instead of per-version "
            "pseudonyms (exports of two versions can then be joined clip by clip)",
        )
        parser.add_argument(
            "--if-missing", action="store_true", help="do nothing when the version exists"
        )

    def handle(self, *args: object, **options: Any) -> None:
        if (
            options["if_missing"]
            and DatasetVersion.objects.filter(name=str(options["name"])).exists()
        ):
            return
        try:
            version = services.dataset_version_create(
                name=str(options["name"]),
                created_by=None,
                min_votes=int(options["min_votes"]),
                n_folds=int(options["folds"]),
                seed=int(options["seed"]),
                retired_only=bool(options["retired_only"]),
                exclude_raters=list(options["exclude_rater"]),
                exclude_fast_grades=bool(options["exclude_fast_grades"]),
                max_rater_model_emd=options["max_rater_model_emd"],
                licence=str(options["licence"]),
                pseudonymous_clip_ids=not options["platform_clip_ids"],
                enqueue=False,
            )
        except services.DatasetError as exc:
            raise CommandError(str(exc)) from exc
        bar = None if options["no_progress"] else tqdm(total=100, unit="%", desc="building")

        def progress(fraction: float, message: str) -> None:
            DatasetVersion.objects.filter(pk=version.pk, frozen=False).update(
                progress=fraction, progress_message=message[:200]
            )
            if bar is not None:
                bar.n = round(100 * fraction)
                bar.set_postfix_str(message[-40:])
                bar.refresh()

        services.version_claim(version_id=version.pk)
        try:
            version = services.dataset_version_build(version_id=version.pk, progress=progress)
        except services.DatasetError as exc:
            raise CommandError(f"building {version.name!r} failed: {exc}") from exc
        finally:
            if bar is not None:
                bar.close()
        self.stdout.write(
            self.style.SUCCESS(
                f"built {version.name}: {version.n_clips} clips, {version.n_ratings} ratings, "
                f"{version.n_patients} patients, {version.n_folds} folds; "
                f"content hash {version.content_hash}; export in "
                f"{services.export_dir_for(version)}"
            )
        )
