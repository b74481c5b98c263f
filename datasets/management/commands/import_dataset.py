"""python manage.py import_dataset DIR: import a rated data set in the exchange format."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from datasets.importer import ImportValidationError, dataset_import


class Command(BaseCommand):
    help = "Import clips.csv, ratings.csv and videos/ from DIR (validates everything first)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dir", type=Path)
        parser.add_argument("--no-progress", action="store_true")
        parser.add_argument(
            "--skip-untrackable",
            action="store_true",
            help="leave out clips whose target cannot be tracked (listed) instead of stopping",
        )
        parser.add_argument(
            "--other-platform",
            action="store_true",
            help="import even though DIR looks like an export of this platform's own dataset "
            "versions (refused by default: its votes would be counted twice)",
        )

    def handle(self, *args: object, **options: object) -> None:
        root = Path(str(options["dir"]))
        if not root.is_dir():
            raise CommandError(f"{root} is not a folder")
        bar = None if options["no_progress"] else tqdm(total=0, unit="video", desc="ingesting")

        def progress(done: int, total: int, what: str) -> None:
            if bar is not None:
                bar.total = total
                bar.n = done
                bar.set_postfix_str(what[-40:])
                bar.refresh()

        try:
            result = dataset_import(
                root,
                progress=progress,
                skip_untrackable=bool(options["skip_untrackable"]),
                other_platform=bool(options["other_platform"]),
            )
        except ImportValidationError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            if bar is not None:
                bar.close()
        for problem in result.untrackable:
            self.stdout.write(self.style.WARNING(f"skipped {problem}"))
        if result.pixel_size_defaulted:
            self.stdout.write(
                self.style.WARNING(
                    f"{result.pixel_size_defaulted} clip(s) had no pixel_size_um in clips.csv: "
                    f"their videos were recorded at the default {settings.DEFAULT_PIXEL_SIZE_UM} "
                    "µm/px (tracking, kinematics and morphometry assume it)"
                )
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"imported {result.clips_created} clips ({result.clips_skipped} already there), "
                f"{result.ratings_created} ratings ({result.ratings_skipped} already there), "
                f"{result.raters_created} new raters"
            )
        )
