"""python manage.py evaluate_predictions TRUE_CSV PRED_CSV: the paper's metrics as JSON."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from modeling.ml.metrics import evaluate_distributions
from modeling.ml.tables import TableError, matched_arrays, read_distribution_csv


class Command(BaseCommand):
    help = (
        "Compare predicted with true grade distributions (both CSV: clip_id, p_A..p_E; "
        "matched by clip_id) and print EMD, MSE, JSD, CE, HI, macro HI, mode accuracy, "
        "macro F1 and top-k HI, overall and per grade-mode class, as JSON."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("true_csv", type=Path)
        parser.add_argument("pred_csv", type=Path)

    def handle(self, *args: object, **options: object) -> None:
        try:
            true = read_distribution_csv(Path(str(options["true_csv"])))
            pred = read_distribution_csv(Path(str(options["pred_csv"])))
            _, p_true, p_pred = matched_arrays(true, pred)
        except TableError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps(evaluate_distributions(p_true, p_pred), indent=2))
