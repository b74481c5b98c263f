"""python manage.py pretrain_head DIR --out FILE [--labels L ...] [--size N] [--epochs N] ...

Trains the grade model's head encoder (modeling.ml.head_encoder) on a directory of labelled
head crops: ``DIR/labels.csv`` with an ``image`` column (PNG files, or ``FILE.npy:INDEX`` of
one stack) and one column per label, binary or categorical. Augmentation (rotations by 90
degrees, mirrors, small rotations and shifts, brightness and contrast), class-balanced
loss and early stopping on a seeded stratified validation split. The file written (a
temporary file renamed at the end) holds the encoder and what it was trained on: the
directory's name, the sha256 of labels.csv, the labels and their classes and counts, the
epochs, the validation metrics and the code version. Put it into MERSV_WEIGHTS_DIR and start a
run with ``--head-encoder --pretrained NAME``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from modeling.ml.head_encoder import (
    PretrainConfig,
    pretrain_encoder,
    read_head_dir,
    save_encoder,
)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


class Command(BaseCommand):
    help = "Pretrain the head encoder on a directory of labelled head crops."

    def add_arguments(self, parser: CommandParser) -> None:
        defaults = PretrainConfig()
        parser.add_argument("directory", type=Path, help="a directory with labels.csv")
        parser.add_argument("--out", type=Path, required=True, help="the encoder file to write")
        parser.add_argument("--labels", nargs="+", help="label columns (default: all)")
        parser.add_argument(
            "--size", type=positive_int, help="resize every image to SIZE x SIZE px first"
        )
        parser.add_argument("--epochs", type=positive_int, default=defaults.epochs)
        parser.add_argument("--patience", type=positive_int, default=defaults.patience)
        parser.add_argument("--batch-size", type=positive_int, default=defaults.batch_size)
        parser.add_argument("--lr", type=float, default=defaults.lr)
        parser.add_argument("--val-fraction", type=float, default=defaults.val_fraction)
        parser.add_argument("--seed", type=int, default=defaults.seed)
        parser.add_argument(
            "--no-augment", action="store_true", help="train on the images as they are"
        )
        parser.add_argument("--no-progress", action="store_true")
        parser.add_argument("--json", action="store_true", help="print the record as JSON")

    def handle(self, *args: object, **options: Any) -> None:
        try:
            config = PretrainConfig(
                epochs=options["epochs"],
                patience=options["patience"],
                batch_size=options["batch_size"],
                lr=options["lr"],
                val_fraction=options["val_fraction"],
                seed=options["seed"],
                augment=not options["no_augment"],
            )
            heads = read_head_dir(
                options["directory"], labels=options["labels"], size=options["size"]
            )
            result = pretrain_encoder(heads, config, progress=not options["no_progress"])
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        out = Path(options["out"])
        save_encoder(out, result.encoder, result.record)
        record = result.record
        if options["json"]:
            self.stdout.write(json.dumps({"out": str(out), **record}, indent=2))
            return
        self.stdout.write(
            f"{record['n_images']} heads of {record['directory']} ({record['n_train']} train, "
            f"{record['n_val']} val); best epoch {record['best_epoch']} of "
            f"{record['epochs_run']} run"
        )
        for name, scores in record["val_metrics"].items():
            self.stdout.write(
                f"  {name}: val accuracy {scores['accuracy']:.3f}, balanced accuracy "
                f"{scores['balanced_accuracy']:.3f}, AUC {scores['auc']:.3f}"
            )
        self.stdout.write(self.style.SUCCESS(f"head encoder written to {out}"))
