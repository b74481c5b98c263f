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

Measured (2026-11-25, 2 shared CPU cores, other jobs running; 293 of 300 clips tracked,
small TimeSformer, EMD, AdamW lr 5e-3, batch 8, 40 epochs, patience 10, no fair sampling):

    prediction                      HI      EMD     gap closed
    baseline (training mean)        0.5953  0.3006    0.0 %
    kinematics only (kNN, k=15)     0.7774  0.0909   57.2 %
    model (out-of-fold)             0.7368  0.1077   44.4 %   (target 70 %: not reached)
    ceiling (panel's expected)      0.9138  0.0076  100.0 %

Training took 34 min of wall time (7-9 s per epoch when the cores were free, up to 60 s when
shared). Tuning on fold 0 (12 epochs each): SGD and Adam at lr 1e-3 learn too slowly (val HI
0.62-0.64), batch 4-8 and lr 3e-3-5e-3 help; the model was still improving at epoch 40 and
stays below a linear model of the kinematics alone (HI 0.78): the head's kinematics path
learns slowly from scratch.

Run: .venv/bin/python benchmarks/training.py [--clips 300] [--epochs 40] [--reuse-db]
     .venv/bin/python benchmarks/training.py --grid --grid-epochs 5   (the 4 x 4 grid)
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
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--optimizer", default="adamw")
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--fair-sampling", action="store_true", help="balance mode classes")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    parser.add_argument("--kinematics", action="store_true", help="add the kNN kinematics row")
    parser.add_argument(
        "--evaluate-only", action="store_true", help="score the last run's predictions again"
    )
    parser.add_argument("--grid", action="store_true", help="the 4 x 4 grid instead")
    parser.add_argument("--grid-epochs", type=int, default=5)
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
    common = ["--optimizer", args.optimizer, "--lr", str(args.lr), "--patience", str(args.patience)]
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
        f"lr {args.lr:g}, patience {args.patience}): {t_train / 60:.1f} min; "
        f"benchmark total {(time.perf_counter() - started) / 60:.1f} min; "
        f"{os.cpu_count()} CPU core(s)"
    )


if __name__ == "__main__":
    main()
