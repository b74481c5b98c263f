"""python manage.py probe_head FILE DIR [--folds 5] [--seed 0] [--tta] [--pixel-size-um P] [--json]

What a head encoder (FILE, from ``pretrain_head``) and the head morphometry
(modeling.ml.morphometry) know about the labels of a labelled head directory (DIR, the layout
of ``pretrain_head``): for every label, the out-of-fold accuracy, balanced accuracy and AUC of
a linear probe (logistic regression, standardised features, balanced class weights) over a
seeded stratified k-fold cross-validation, on the encoder's features and on the morphometry
features, side by side. Two operating points: the probe's own (the most probable class, with
classes weighted equally: near the balanced-accuracy optimum) and, for binary labels, the
decision threshold that maximises plain accuracy, chosen within each training fold on an inner
cross-validation (the figure to compare with published plain accuracies on imbalanced classes),
with the balanced accuracy at that threshold beside it. ``--tta``: the encoder's features
averaged over each head's eight rotations and mirrors. ``--pixel-size-um``: the images' pixel
size, from which the morphometry sizes its windows for the expected head
(annotation.ingest.scale).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation.ingest.scale import DEFAULT_PIXEL_SIZE_UM
from modeling.ml.head_encoder import (
    encode_heads,
    head_morphometry,
    load_encoder,
    probe_scores,
    read_head_dir,
)

METRICS = (("accuracy", "acc"), ("balanced_accuracy", "bal acc"), ("auc", "AUC"))


class Command(BaseCommand):
    help = (
        "Cross-validated linear probes of a head encoder and of the morphometry on labelled heads."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("encoder", type=Path, help="a head encoder file (pretrain_head)")
        parser.add_argument("directory", type=Path, help="a directory with labels.csv")
        parser.add_argument("--labels", nargs="+", help="label columns (default: all)")
        parser.add_argument("--size", type=int, help="resize every image to SIZE x SIZE px")
        parser.add_argument("--folds", type=int, default=5)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--pixel-size-um",
            type=float,
            default=DEFAULT_PIXEL_SIZE_UM,
            help="the images' pixel size for the morphometry (default %(default)s um/px)",
        )
        parser.add_argument(
            "--tta", action="store_true", help="average features over rotations and mirrors"
        )
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def handle(self, *args: object, **options: Any) -> None:
        if options["folds"] < 2:
            raise CommandError(f"--folds must be at least 2, not {options['folds']}")
        try:
            encoder, trained_on = load_encoder(options["encoder"])
            heads = read_head_dir(
                options["directory"], labels=options["labels"], size=options["size"]
            )
            encoded = encode_heads(encoder, heads.images, tta=options["tta"])
            morphometry, missed = head_morphometry(
                heads.images, pixel_size_um=options["pixel_size_um"]
            )
            table: dict[str, dict[str, Any]] = {
                name: {
                    "encoder": probe_scores(
                        encoded, y, folds=options["folds"], seed=options["seed"]
                    ),
                    "morphometry": probe_scores(
                        morphometry, y, folds=options["folds"], seed=options["seed"]
                    ),
                    "classes": heads.classes[name],
                    "majority": float(max(heads.counts()[name].values()) / len(heads)),
                }
                for name, y in heads.labels.items()
            }
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            report = {
                "encoder": {"file": Path(options["encoder"]).name, "trained_on": trained_on},
                "directory": heads.root.resolve().name,
                "n_images": len(heads),
                "morphometry_heads_missed": missed,
                "folds": options["folds"],
                "tta": options["tta"],
                "seed": options["seed"],
                "labels": table,
            }
            self.stdout.write(json.dumps(_json_safe(report), indent=2, allow_nan=False))
            return
        self.stdout.write(
            f"{len(heads)} heads of {heads.root.resolve().name}; encoder "
            f"{Path(options['encoder']).name} (trained on {trained_on.get('directory')}); "
            f"{options['folds']}-fold cross-validation, seed {options['seed']}; morphometry "
            f"found no head in {missed}"
        )
        header = f"{'label':<14} {'majority':>8} {'features':<12} {'AUC':>6}"
        header += f" {'own point acc / bal':>20} {'accuracy point acc / bal':>25}"
        self.stdout.write(header)
        for name, row in table.items():
            for i, source in enumerate(("encoder", "morphometry")):
                scores = row[source]
                first = f"{name:<14} {row['majority']:>8.3f}" if not i else " " * 23
                line = f"{first} {source:<12} {_fmt(scores['auc']):>6}"
                line += f" {_pair(scores):>20}"
                point = scores.get("operating_points", {}).get("accuracy")
                line += f" {_pair(point) if point else 'n/a (not binary)':>25}"
                self.stdout.write(line)


def _pair(scores: dict[str, float]) -> str:
    return f"{_fmt(scores['accuracy'])} / {_fmt(scores['balanced_accuracy'])}"


def _fmt(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.3f}"


def _json_safe(value: Any) -> Any:
    """NaN (an AUC of a label with one class in the data) as null."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
