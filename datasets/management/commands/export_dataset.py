"""python manage.py export_dataset NAME --out DIR"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from datasets import services
from datasets.models import DatasetVersion


class Command(BaseCommand):
    help = "Write the export of a built dataset version into DIR (byte-identical to its build)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--out", required=True, type=Path)

    def handle(self, *args: object, **options: object) -> None:
        name = str(options["name"])
        version = DatasetVersion.objects.filter(name=name).first()
        if version is None:
            raise CommandError(f"no dataset version named {name!r}")
        try:
            result = services.dataset_version_export(
                version=version, out_dir=Path(str(options["out"]))
            )
        except (services.DatasetError, FileExistsError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"wrote {result.n_files} files ({result.total_bytes / 1e6:.1f} MB) to "
                f"{result.out_dir}; content hash {result.content_hash}"
            )
        )
