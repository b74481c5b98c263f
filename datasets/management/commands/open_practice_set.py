"""python manage.py open_practice_set NAME VERSION [--min-votes N] [--if-missing]"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation.ingest.services import ServiceError
from datasets.models import DatasetVersion, TrainingSet
from datasets.practice import practice_set_create


class Command(BaseCommand):
    help = "Open a practice set for trainees: the clips of a built dataset version."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("version", help="the dataset version's name")
        parser.add_argument("--min-votes", type=int, default=1)
        parser.add_argument(
            "--if-missing", action="store_true", help="do nothing when the set exists"
        )

    def handle(self, *args: object, **options: Any) -> None:
        name = str(options["name"])
        if options["if_missing"] and TrainingSet.objects.filter(name=name).exists():
            return
        version = DatasetVersion.objects.filter(name=str(options["version"])).first()
        if version is None:
            raise CommandError(f"no dataset version named {options['version']!r}")
        try:
            practice_set = practice_set_create(
                name=name,
                version=version,
                min_votes=int(options["min_votes"]),
                created_by=None,
            )
        except ServiceError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"practice set {name!r}: {practice_set.clips.count()} clips of {version.name}"
            )
        )
