"""python manage.py storage_cors [--origin URL ...] [--check]

Writes (PutBucketCors) the bucket's CORS rule that lets the upload page PUT parts straight to
the bucket from the site's origins and read each part's ETag, keeping the bucket's other
rules; with --check only reads the rules back and fails, naming each origin the rules do not
serve. Origins: --origin, else MERSV_STORAGE_CORS_ORIGINS, else DJANGO_CSRF_TRUSTED_ORIGINS.
See annotation/storage_cors.py.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation.storage_cors import (
    CorsError,
    cors_origins,
    cors_problems,
    cors_rules_get,
    cors_rules_set,
)


class Command(BaseCommand):
    help = "Set (or --check) the bucket's CORS rule for browser direct uploads."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--origin",
            action="append",
            dest="origins",
            metavar="URL",
            help="an origin to allow (repeatable; default MERSV_STORAGE_CORS_ORIGINS)",
        )
        parser.add_argument(
            "--check", action="store_true", help="only check the rules; fail if one is missing"
        )

    def handle(self, *args: object, **options: Any) -> None:
        try:
            rules = cors_rules_get()  # first: no object storage, no bucket, nothing to set
            origins = cors_origins(options["origins"])
            if not options["check"]:
                rules = cors_rules_set(origins)
        except CorsError as exc:
            raise CommandError(str(exc)) from exc
        problems = cors_problems(rules, origins)
        if problems:
            fix = "run `python manage.py storage_cors`" + "".join(
                f" --origin {o}" for o in (options["origins"] or [])
            )
            raise CommandError(
                f"the bucket's CORS rules are not enough: {'; '.join(problems)}; {fix}"
            )
        action = "allow" if options["check"] else "now allow"
        self.stdout.write(
            self.style.SUCCESS(
                f"the bucket's CORS rules {action} PUT with the ETag exposed from "
                + ", ".join(origins)
            )
        )
