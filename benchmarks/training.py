"""Train the small TimeSformer with EMD on a synthetic dataset version: how much of the HI gap
between a trivial prediction and the panel's own expected distribution the model closes.

The data: the synthetic generator's videos (cached in var/bench/), imported through the real
import path into a fresh PostgreSQL database and built into a 3-fold version; training runs
through `manage.py train` (the same service as the Celery task). Every score is pooled over
the out-of-fold predictions, against the *observed* vote distributions:

- baseline: the mean observed distribution of the clips outside the test fold;
- kinematics (context, ``--kinematics``): k-nearest neighbours on the tracked head's
  standardised kinematics (VCL, VSL, ..., BCF), the mean distribution of the 15 nearest
  clips outside the test fold: what motion alone gives;
- model: the run's out-of-fold predictions;
- ceiling: the panel's expected distribution from the generator's truth_clips.csv (what
  a perfect model of the latent quality would predict; observed votes scatter around it).

gap closed = (HI_model - HI_baseline) / (HI_ceiling - HI_baseline); target >= 70 % on a CPU
within 20 minutes of training.

Measured (2026-11-25, 2 CPU cores shared with other people's test suites and benchmarks,
load 1-4; 293 of 300 clips tracked; small TimeSformer, EMD, AdamW lr 1e-3 with the head at
5e-3, weight decay 0.05, batch 8, at most 12 epochs, patience 4, no fair sampling, 1 torch
thread; kinematics standardised with the training split's mean/std, head started at the
training mean distribution):

    prediction                          HI     EMD  macro HI  mode acc  gap closed
    baseline (training mean)        0.5954  0.3004    0.5185     0.328        0.0%
    kinematics only (kNN, k=15)     0.7821  0.0866    0.7519     0.628       58.6%
    model (out-of-fold)             0.7646  0.0922    0.7486     0.625       53.1%
    ceiling (panel's expected)      0.9138  0.0076    0.9194     0.874      100.0%

Training took 9.1 min of wall time (15-20 s per epoch; the folds ran 12, 8 and 12 epochs and
kept epochs 9, 4 and 12); target 70 %: not reached. The previous setting (AdamW lr 5e-3 for
everything, 40 epochs, patience 10, kinematics divided by fixed scales, a randomly initialised
head, all threads) closed 44.4 % in 34 min.

What changed, tuned on fold 0 (test HI of fold 0: baseline 0.607, 70 % of the gap 0.823, a
linear softmax model of the standardised kinematics alone 0.783):

- one torch thread: on the shared cores two threads made a training step 3-5x slower;
- a random head on random backbone features starts every clip at a random distribution
  (epoch-1 training EMD 0.38-0.46, above the baseline's 0.30); starting the head at the
  training mean (weights 0, bias its log) and standardising the kinematics gives 0.28-0.29
  and val HI 0.66-0.71 after one epoch;
- lr 5e-3 for the backbone is too high once the head starts well; lr 1e-3 for all learns the
  head's kinematics weights too slowly (val HI 0.68 after 7 epochs), the head at 10x is noisy,
  at 3-5x (lr 1-2e-3) fold 0 reaches test HI 0.760-0.768 (50-52 %) by epoch 4-6, then the
  model overfits (training EMD 0.10 against val 0.12-0.13).

Why 70 % is out of reach here: the synthetic quality mixes motility (shown by the motion, so
by the kinematics) with head morphology (shape and vacuoles of a 9 x 6 px head). kNN on the
true motility alone closes 61 % of the gap, on the true morphology alone 49 %, on both 95 %:
70 % needs the backbone to see the head's shape. The small TimeSformer, trained from scratch
on about 160 clips per fold, does not learn it in these epochs: the model scores about what
the kinematics alone give.

The 4 x 4 grid at small presets (2026-11-25, same machine and sharing, same settings as above
but at most 2 epochs per fold: `--grid --grid-epochs 2`, 23.4 min for 16 runs x 3 folds).
Test HI and EMD, mean +- std over the 3 outer folds (not pooled; baseline HI about 0.60):

    HI                CE               MSE              JSD              EMD
    ResNet        0.7351 +- .0054  0.7267 +- .0064  0.7420 +- .0073  0.7309 +- .0063
    R(2+1)D       0.7318 +- .0101  0.7223 +- .0137  0.7390 +- .0118  0.7267 +- .0084
    SlowFast      0.7315 +- .0093  0.7215 +- .0157  0.7384 +- .0088  0.7275 +- .0084
    TimeSformer   0.7146 +- .0033  0.7183 +- .0222  0.7248 +- .0148  0.7185 +- .0046

    EMD               CE               MSE              JSD              EMD
    ResNet        0.1116 +- .0032  0.1151 +- .0073  0.1100 +- .0054  0.1086 +- .0054
    R(2+1)D       0.1132 +- .0088  0.1176 +- .0128  0.1115 +- .0100  0.1115 +- .0080
    SlowFast      0.1133 +- .0058  0.1182 +- .0116  0.1129 +- .0054  0.1114 +- .0074
    TimeSformer   0.1216 +- .0054  0.1356 +- .0270  0.1331 +- .0119  0.1237 +- .0049

Mean rank over the 8 metrics, per backbone: ResNet 1.25, SlowFast 2.50, R(2+1)D 2.53,
TimeSformer 3.72; per loss: CE 2.06, JSD 2.19, EMD 2.25, MSE 3.50. After 2 epochs every model
is still mostly its kinematics path (the CNNs a little ahead); these ranks are not the paper's
and say little about longer training.

Run: .venv/bin/python benchmarks/training.py [--clips 300] [--epochs 12] [--reuse-db]
     .venv/bin/python benchmarks/training.py --grid --grid-epochs 2   (the 4 x 4 grid)
Needs PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres), like `make test`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from annotation.grades import PROB_COLUMNS  # noqa: E402
from modeling.ml.metrics import evaluate_distributions  # noqa: E402

VERSION = "bench-train"
KINEMATICS = ("vcl", "vsl", "vap", "lin", "str", "wob", "alh", "bcf")


def manage(args: list[str], env: dict[str, str], *, quiet: bool = False) -> float:
    """Run a management command; its wall time in seconds."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True,
        stdout=subprocess.DEVNULL if quiet else None,
    )  # fmt: skip
    return time.perf_counter() - started


def prepare(args: argparse.Namespace, env: dict[str, str], var_dir: Path) -> Path:
    """Generate (or reuse) the videos, import them into a fresh database, build the version;
    returns the version's export folder."""
    from annotation.synthetic import SyntheticConfig, generate_dataset

    data = ROOT / "var" / "bench" / f"synthetic-train-{args.clips}-{args.width}x{args.height}"
    if not (data / "clips.csv").exists():
        print(f"generating {args.clips} synthetic videos into {data} (cached for next runs)")
        config = SyntheticConfig(
            n_clips=args.clips, seed=21, width=args.width, height=args.height, n_frames=16
        )
        generate_dataset(data, config, progress=True)
    export = var_dir / "exports" / VERSION
    if args.reuse_db and (export / "splits.csv").exists():
        print(f"reusing database {args.database} and version {VERSION}")
        manage(["migrate", "--noinput", "-v", "0"], env)  # the code may have moved on
        return export
    host = ["-h", "127.0.0.1", "-U", "postgres"]
    subprocess.run(["dropdb", *host, "--if-exists", args.database], check=True)
    subprocess.run(["createdb", *host, args.database], check=True)
    manage(["migrate", "--noinput", "-v", "0"], env)
    # A few synthetic targets get lost by the tracker (crossing cells): left out, as a lab would.
    t_import = manage(
        ["import_dataset", str(data), "--no-progress", "--skip-untrackable"], env, quiet=True
    )
    t_build = manage(["build_dataset", VERSION, "--folds", "3", "--no-progress"], env, quiet=True)
    print(f"import {t_import:.0f} s, build {t_build:.0f} s")
    return export


def knn_predictions(
    features: np.ndarray, targets: np.ndarray, folds: np.ndarray, *, k: int = 15
) -> np.ndarray:
    """Out-of-fold k-nearest-neighbour means of ``targets`` on standardised ``features``."""
    out = np.zeros_like(targets)
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        mean, std = features[train].mean(axis=0), features[train].std(axis=0) + 1e-9
        a, b = (features[train] - mean) / std, (features[test] - mean) / std
        distance = ((b[:, None, :] - a[None, :, :]) ** 2).sum(axis=2)  # (n_test, n_train)
        nearest = np.argsort(distance, axis=1)[:, :k]
        out[test] = targets[train][nearest].mean(axis=1)
    return out


def baseline_predictions(targets: np.ndarray, folds: np.ndarray) -> np.ndarray:
    out = np.zeros_like(targets)
    for fold in np.unique(folds):
        out[folds == fold] = targets[folds != fold].mean(axis=0)
    return out


def evaluate(export: Path, data_truth: Path, predictions: Path, *, kinematics: bool) -> None:
    observed = pd.read_csv(export / "distributions.csv", dtype={"clip_id": str}).set_index(
        "clip_id"
    )
    clip_ids = sorted(observed.index)
    p_obs = observed.loc[clip_ids, list(PROB_COLUMNS)].to_numpy(float)
    folds = (
        pd.read_csv(export / "splits.csv", dtype={"clip_id": str})
        .set_index("clip_id")
        .loc[clip_ids, "fold"]
        .to_numpy()
    )
    model = pd.read_csv(predictions, dtype={"clip_id": str}).set_index("clip_id")
    truth = pd.read_csv(data_truth, dtype={"clip_id": str}).set_index("clip_id")
    rows = {"baseline (training mean)": baseline_predictions(p_obs, folds)}
    if kinematics:
        clips = pd.read_csv(export / "clips.csv", dtype={"clip_id": str}).set_index("clip_id")
        features = np.nan_to_num(clips.loc[clip_ids, list(KINEMATICS)].to_numpy(float))
        rows["kinematics only (kNN, k=15)"] = knn_predictions(features, p_obs, folds)
    rows["model (out-of-fold)"] = model.loc[clip_ids, list(PROB_COLUMNS)].to_numpy(float)
    rows["ceiling (panel's expected)"] = truth.loc[clip_ids, list(PROB_COLUMNS)].to_numpy(float)
    scores = {name: evaluate_distributions(p_obs, p) for name, p in rows.items()}
    base = scores["baseline (training mean)"]["hi"]
    ceiling = scores["ceiling (panel's expected)"]["hi"]
    print(f"\n{len(clip_ids)} clips, scores pooled over the out-of-fold predictions")
    header = ("HI", 7), ("EMD", 7), ("macro HI", 9), ("mode acc", 9), ("gap closed", 11)
    print(f"{'prediction':<30}" + "".join(f" {name:>{width}}" for name, width in header))
    for name, s in scores.items():
        gap = (s["hi"] - base) / (ceiling - base)
        print(
            f"{name:<30} {s['hi']:>7.4f} {s['emd']:>7.4f} {s['macro_hi']:>9.4f} "
            f"{s['mode_accuracy']:>9.3f} {100 * gap:>10.1f}%"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=300)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--database", default="mersv_bench_train")
    parser.add_argument("--reuse-db", action="store_true", help="skip import and build if done")
    # Defaults from tuning on this data (see the module docstring).
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--optimizer", default="adamw")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--head-lr-scale", type=float, default=5.0, help="head lr = lr * this")
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--patience", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--fair-sampling", action="store_true", help="balance mode classes")
    # One thread: on 2 shared cores two threads ran a training step 3-5x slower than one.
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: all cores)")
    parser.add_argument("--kinematics", action="store_true", help="add the kNN kinematics row")
    parser.add_argument(
        "--evaluate-only", action="store_true", help="score the last run's predictions again"
    )
    parser.add_argument("--grid", action="store_true", help="the 4 x 4 grid instead")
    parser.add_argument("--grid-epochs", type=int, default=2)  # 16 runs in ~25 min here
    parser.add_argument("--grid-backbones", nargs="+", help="default: all four")
    parser.add_argument("--grid-losses", nargs="+", help="default: CE, MSE, JSD, EMD")
    args = parser.parse_args()

    started = time.perf_counter()
    var_dir = ROOT / "var" / "bench" / "training-var"
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{args.database}",
        MERSV_VAR_DIR=str(var_dir),
    )
    export = prepare(args, env, var_dir)
    data = ROOT / "var" / "bench" / f"synthetic-train-{args.clips}-{args.width}x{args.height}"
    common = [
        *("--optimizer", args.optimizer, "--lr", str(args.lr), "--patience", str(args.patience)),
        *("--head-lr-scale", str(args.head_lr_scale), "--weight-decay", str(args.weight_decay)),
    ]
    if args.batch_size:
        common += ["--batch-size", str(args.batch_size)]
    if not args.fair_sampling:
        common.append("--no-fair-sampling")
    env["MERSV_TORCH_THREADS"] = str(args.threads)

    if args.grid:
        out = ROOT / "var" / "bench" / "training-grid"
        subset = [
            *(["--backbones", *args.grid_backbones] if args.grid_backbones else []),
            *(["--losses", *args.grid_losses] if args.grid_losses else []),
        ]
        t_grid = manage(
            ["experiment_grid", "--dataset", VERSION, "--epochs", str(args.grid_epochs),
             "--out", str(out), "--no-progress", *subset, *common],
            env,
        )  # fmt: skip
        report = (out / "report.md").read_text()
        print(report.split("### Table 4")[0])
        print(f"grid wall time: {t_grid / 60:.1f} min; report: {out / 'report.md'}")
        return

    predictions = ROOT / "var" / "bench" / "training-oof.csv"
    if args.evaluate_only:
        evaluate(export, data / "truth_clips.csv", predictions, kinematics=args.kinematics)
        return
    t_train = manage(
        ["train", "--dataset", VERSION, "--backbone", "timesformer", "--loss", "emd",
         "--preset", "small", "--epochs", str(args.epochs), "--predictions-out",
         str(predictions), *common],
        env,
    )  # fmt: skip
    evaluate(export, data / "truth_clips.csv", predictions, kinematics=args.kinematics)
    print(
        f"\ntraining (train command, 3 folds, at most {args.epochs} epochs, {args.optimizer} "
        f"lr {args.lr:g}, head lr x{args.head_lr_scale:g}, weight decay {args.weight_decay:g}, "
        f"batch {args.batch_size}, patience {args.patience}, {args.threads or 'all'} "
        f"thread(s)): {t_train / 60:.1f} min; "
        f"benchmark total {(time.perf_counter() - started) / 60:.1f} min; "
        f"{os.cpu_count()} CPU core(s)"
    )


if __name__ == "__main__":
    main()
