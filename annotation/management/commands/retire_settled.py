"""python manage.py retire_settled [--dry-run]: apply the retirement rule to every clip.

For imported ratings (which arrive without the vote-by-vote check) and after a change of
MERSV_RETIRE_TOLERANCE, MERSV_MIN_VOTES, MERSV_MAX_VOTES, MERSV_RETIRE_MODE_GUARD,
MERSV_RETIRE_RATER_AWARE or MERSV_RETIRE_PRIOR_DISCOUNT (audited as a rule change). The rule is
the live queue's (`annotation.aggregation.retirement_service.clips_rule_outcome`).
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation.aggregation.retirement_service import clips_retire_settled, retirement_policy


class Command(BaseCommand):
    help = "Retire the clips whose votes are settled and reopen those that no longer are."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="count what would change, change nothing"
        )

    def handle(self, *args: object, **options: object) -> None:
        try:
            summary = clips_retire_settled(dry_run=bool(options["dry_run"]))
        except ValueError as exc:  # inconsistent settings, e.g. MIN_VOTES above MAX_VOTES
            raise CommandError(str(exc)) from exc
        verb = "would retire" if summary.dry_run else "retired"
        min_votes = min(settings.RETIRE_MIN_VOTES, settings.MAX_VOTES)
        if settings.RETIRE_MIN_VOTES > settings.MAX_VOTES:
            self.stdout.write(
                self.style.WARNING(
                    f"MERSV_MIN_VOTES={settings.RETIRE_MIN_VOTES} exceeds MERSV_MAX_VOTES="
                    f"{settings.MAX_VOTES}: min_votes is taken as {min_votes}"
                )
            )
        policy = retirement_policy()
        prior = (
            f"; prior: run {policy.run_id} ({policy.run_name}), m = {policy.prior_weight:g} "
            f"counted at {settings.RETIRE_PRIOR_DISCOUNT:g}"
            if policy.run_id is not None
            else "; no production run"
        )
        self.stdout.write(
            f"rule: >= {min_votes} votes and expected EMD <= "
            f"{settings.RETIRE_TOLERANCE:g}, or {settings.MAX_VOTES} votes"
            f"{'; rater-aware' if settings.RETIRE_RATER_AWARE else ''}{prior}"
        )
        if summary.rule_changed:
            self.stdout.write("the rule's settings changed since the last run: audited")
        self.stdout.write(
            self.style.SUCCESS(
                f"{verb} {summary.retired} clip(s), "
                f"{'would reopen' if summary.dry_run else 'reopened'} {summary.reopened}; "
                f"{summary.n_retired} of {summary.n_clips} clips retired"
                f"{' now' if summary.dry_run else ''}"
            )
        )
