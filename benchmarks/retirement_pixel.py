"""Out-of-fold predictions of the project's own trained video model, for the retirement prior.

`benchmarks/retirement.py --prior-file FILE` uses them as the prior q (issue 19): the small
TimeSformer + kinematics + morphometry head, trained with EMD by `manage.py train` on the
generator's rendered videos, not a feature head on the simulator's cells.

What it does (the same path as benchmarks/training.py, whose `prepare` it calls):

1. generates (or reuses, cached under var/bench/) one synthetic video set: 615 clips, one
   generator seed (21), 640 x 480, 16 frames;
2. imports it through `manage.py import_dataset --skip-untrackable` into a fresh PostgreSQL
   database and builds a 3-fold version (`manage.py build_dataset --folds 3`);
3. trains `manage.py train --backbone timesformer --loss emd --preset small` (the project's
   documented settings: AdamW lr 3e-4, head x20, weight decay 0.05, batch 16, no fair
   sampling, 1 torch thread; the epochs and patience as given: capped on a shared machine);
4. writes var/bench/retirement/pixel-prior.npz: the out-of-fold prediction and the fold of
   every tracked clip, keyed by the generator's clip id (an export names clips by
   pseudonyms; a clip is found again by its head's position in frame 0), and the generator
   configuration, so that retirement.py can rebuild the same clips' truth.

Out of fold, and no votes of the retirement run: a clip's prediction comes from the fold
model that saw neither its pixels nor its votes, and the model trains on the video set's own
ratings.csv (the generator's vote stream of seed 21: a lab's earlier full panel of those
clips by the same 40 experts). retirement.py's 5 panel seeds draw new votes of the same panel
on the same clips, so no seed's retired votes reach its prior (training on one seed's votes
would leak them into that seed's table, and five runs do not fit here). Clips the tracker
lost have no prediction: the rule gives them m = 0, as the platform does without one.

Run: .venv/bin/python -m benchmarks.retirement_pixel [--epochs N] [--patience N]
         [--database NAME] [--reuse-db] [--predictions CSV]
(--predictions with an existing CSV and --reuse-db: convert that run's predictions again
without training.) Needs PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres).
Measured 2026-12-06 (2 CPU cores shared by 6 helpers, load 10-17), with
`.venv/bin/python -m benchmarks.retirement_pixel --database mersv_h4_bench --var-dir
var/bench/training-var --reuse-db --epochs 4 --patience 2`, on the version that
`benchmarks/training.py --clips 615 --database mersv_h4_bench` had generated (1.2 min),
imported (358 s) and built (111 s) (its own training run was stopped as too slow):
572 of 615 clips tracked; training 28.1 min (1686 s; 90-160 s per epoch, so the documented
40 epochs, patience 10, did not fit: capped at 4, patience 2); out of fold HI 0.808, EMD
0.061 (to the votes it trained on), 65.5 % of the HI gap closed (baseline 0.609, ceiling
0.913). The retirement figures are in benchmarks/retirement.py.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from annotation.grades import PROB_COLUMNS
from benchmarks import training
from simulator.synthetic import SyntheticConfig

ROOT = Path(__file__).resolve().parent.parent
GENERATOR_SEED = 21  # benchmarks/training.py's video set
N_CLIPS, WIDTH, HEIGHT, N_FRAMES = 615, 640, 480, 16
PRIOR_FILE = ROOT / "var" / "bench" / "retirement" / "pixel-prior.npz"


def generator_config() -> SyntheticConfig:
    """The configuration benchmarks/training.py generates its videos with, at 615 clips."""
    return SyntheticConfig(
        n_clips=N_CLIPS, seed=GENERATOR_SEED, width=WIDTH, height=HEIGHT, n_frames=N_FRAMES
    )


def config_from_record(record: str) -> SyntheticConfig:
    """A SyntheticConfig from its JSON record (tuples come back from JSON as lists)."""
    fields: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(record).items()
    }
    return SyntheticConfig(**fields)


def prior_write(
    out: Path, *, export: Path, data: Path, predictions: Path, info: dict[str, object]
) -> None:
    """The run's out-of-fold predictions and folds keyed by generator clip id, as .npz."""
    model = pd.read_csv(predictions, dtype={"clip_id": str}).set_index("clip_id")
    folds = pd.read_csv(export / "splits.csv", dtype={"clip_id": str}).set_index("clip_id")
    names = training.generator_ids(export, data)
    missing = sorted(set(names.index) - set(model.index))
    if missing:
        raise SystemExit(f"{len(missing)} exported clips have no prediction, e.g. {missing[:3]}")
    order = sorted(names.index, key=lambda c: names[c])
    record = json.dumps(asdict(generator_config()))
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".tmp.npz")
    np.savez(
        partial,
        clip_ids=np.asarray([names[c] for c in order]),
        q=model.loc[order, list(PROB_COLUMNS)].to_numpy(float),
        folds=folds.loc[order, "fold"].to_numpy(int),
        config=np.asarray(record),
        info=np.asarray(json.dumps(info)),
    )
    partial.rename(out)
    print(f"{len(order)} of {N_CLIPS} clips with an out-of-fold prediction: {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="mersv_bench_retirement_pixel")
    parser.add_argument("--reuse-db", action="store_true", help="skip import and build if done")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="the training seed")
    parser.add_argument(
        "--var-dir", type=Path, default=ROOT / "var" / "bench" / "retirement-pixel-var"
    )
    parser.add_argument(
        "--predictions", type=Path, default=ROOT / "var" / "bench" / "retirement" / "pixel-oof.csv"
    )
    parser.add_argument("--out", type=Path, default=PRIOR_FILE)
    args = parser.parse_args()
    started = time.perf_counter()
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{args.database}",
        MERSV_VAR_DIR=str(args.var_dir.resolve()),
        MERSV_TORCH_THREADS="1",  # two threads ran a step 3-5x slower on 2 shared cores
    )
    # benchmarks/training.py's arguments for its video set and version.
    setup = argparse.Namespace(
        clips=N_CLIPS, width=WIDTH, height=HEIGHT, database=args.database,
        reuse_db=args.reuse_db, shift=False,
    )  # fmt: skip
    export = training.prepare(setup, env, args.var_dir.resolve())
    data = training.data_dir(setup)
    minutes = None
    if not (args.reuse_db and args.predictions.exists()):
        seconds = training.manage(
            ["train", "--dataset", training.VERSION, "--backbone", "timesformer", "--loss", "emd",
             "--preset", "small", "--epochs", str(args.epochs), "--patience", str(args.patience),
             "--optimizer", "adamw", "--lr", "3e-4", "--head-lr-scale", "20",
             "--weight-decay", "0.05", "--batch-size", "16", "--no-fair-sampling",
             "--seed", str(args.seed), "--predictions-out",
             str(args.predictions)],
            env,
        )  # fmt: skip
        minutes = seconds / 60
    training.evaluate(export, data / "truth_clips.csv", args.predictions, kinematics=False)
    info = {"epochs": args.epochs, "patience": args.patience, "seed": args.seed}
    if minutes is not None:
        info["training_minutes"] = round(minutes, 1)
    prior_write(args.out, export=export, data=data, predictions=args.predictions, info=info)
    print(f"done in {(time.perf_counter() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
