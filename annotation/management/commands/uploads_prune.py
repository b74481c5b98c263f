"""python manage.py uploads_prune [--older-than-hours H] [--dry-run]: end abandoned uploads.

Aborts the bucket's multipart uploads that a browser abandoned (no part for H hours, by default
MERSV_DIRECT_UPLOAD_TTL_HOURS) and marks their DirectUpload rows expired, audited; an upload
being completed, or one whose parts still arrive, is kept. The beat runs the same hourly
(annotation.tasks.prune_direct_uploads). See annotation/ingest/upload_prune.py.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation.ingest.upload_prune import uploads_prune
from annotation.storage import MEDIA, is_local


class Command(BaseCommand):
    help = "Abort abandoned uploads straight to the bucket and expire their rows."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than-hours",
            type=float,
            default=None,
            help="idle time after which an upload is abandoned "
            "(default: MERSV_DIRECT_UPLOAD_TTL_HOURS)",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="list what would be aborted, change nothing"
        )

    def handle(self, *args: object, **options: object) -> None:
        given = options["older_than_hours"]
        hours = float(settings.DIRECT_UPLOAD_TTL_HOURS if given is None else given)  # type: ignore[arg-type]
        if not hours > 0:
            raise CommandError(
                f"--older-than-hours must be a positive number of hours, not {given}"
            )
        if is_local(MEDIA):
            self.stdout.write("media are on the local filesystem: there are no direct uploads")
            return
        summary = uploads_prune(
            older_than=dt.timedelta(hours=hours), dry_run=bool(options["dry_run"])
        )
        verb = "would abort" if summary.dry_run else "aborted"
        for token in summary.rows_expired:
            self.stdout.write(f"{verb} upload {token}")
        for key in summary.orphans_aborted:
            self.stdout.write(f"{verb} multipart upload without an open row: {key}")
        self.stdout.write(
            self.style.SUCCESS(
                f"{verb} {len(summary.rows_expired)} abandoned upload(s) and "
                f"{len(summary.orphans_aborted)} orphaned multipart upload(s) idle for more than "
                f"{hours:g} h; kept {len(summary.rows_kept_active)} still receiving parts and "
                f"{len(summary.rows_skipped_locked)} being completed"
            )
        )
