"""The default training run: `python manage.py train --dataset NAME` with no options on a
600-clip synthetic dataset version, timed, with the quality it reaches.

The version is built as benchmarks/training.py builds its own (the project's synthetic
generator, cached in var/bench/; imported through the real import path into a throwaway
PostgreSQL database whose name starts with mersv_bench; a 3-fold version), then the train
command runs as a subprocess with no training option at all, so every setting is the
default of TrainConfig (modeling/ml/train.py). The script prints the wall time of the command,
per fold the epochs run, the best epoch, whether early stopping ended it and the seconds per
epoch, the pooled out-of-fold figures the command prints (HI, EMD, ...), and the table of
benchmarks/training.py (baseline, model, ceiling, gap closed) beside the figures that
benchmark reported for the same preset and settings.

The number of torch threads is the environment's (MERSV_TORCH_THREADS, unset: torch's
default, all cores): a default run is measured as a user would start it. ``--threads N``
sets it for a comparison (benchmarks/training.py uses 1).

Target (issue 14): under 30 minutes on this project's 2-core machine, otherwise idle, with
the quality of benchmarks/training.py.

Run: .venv/bin/python benchmarks/train_default.py [--clips 600] [--reuse-db] [--threads N]
     .venv/bin/python benchmarks/train_default.py --clips 60     (a smoke run, minutes)
Needs PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres), like `make test`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.training import VERSION, evaluate, prepare  # noqa: E402

# What benchmarks/training.py reported for these settings (its docstring, measured
# 2026-11-26: small TimeSformer, EMD, AdamW lr 3e-4, head 20x, weight decay 0.05, batch 16,
# at most 40 epochs, patience 10, morphometry, hidden head 64; 296 of 300 clips tracked,
# one torch thread; 11.5 and 10.8 min of training, about 7 s per epoch on a free core).
REFERENCE: dict[str, dict[str, float]] = {
    "seed 0": {"hi": 0.8251, "emd": 0.0488, "macro_hi": 0.8024, "mode_accuracy": 0.669,
               "gap": 72.1, "minutes": 11.5},
    "seed 1": {"hi": 0.8278, "emd": 0.0486, "macro_hi": 0.8151, "mode_accuracy": 0.709,
               "gap": 73.0, "minutes": 10.8},
}  # fmt: skip


def train_default(env: dict[str, str]) -> tuple[float, list[str]]:
    """`manage.py train --dataset VERSION`, nothing else; its wall time and its stdout lines
    (echoed as they come; the tqdm bars go to stderr)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "train", "--dataset", VERSION],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        print(line, end="", flush=True)
        lines.append(line.rstrip("\n"))
    if process.wait() != 0:
        raise SystemExit(f"manage.py train failed (exit {process.returncode})")
    return time.perf_counter() - started, lines


def report(env: dict[str, str], wall_s: float, predictions: Path) -> None:
    """The last run's folds and figures, from the benchmark database."""
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from modeling import selectors
    from modeling.models import EpochRecord, TrainingRun
    from modeling.report import MAIN_METRICS, METRIC_LABELS

    run = TrainingRun.objects.order_by("-pk").first()
    assert run is not None
    config = run.config
    print(
        f"\nrun {run.pk} ({run.name}): {config['backbone']}/{config['preset']}, {config['loss']}, "
        f"{config['optimizer']} lr {config['lr']:g} (head x{config['head_lr_scale']:g}), "
        f"weight decay {config['weight_decay']:g}, at most {config['epochs']} epochs, patience "
        f"{config['early_stopping_patience']}, batch {config['batch_size'] or 'preset'}, "
        f"fair sampling {config['fair_sampling']}, morphometry {config['morphometry']}, head "
        f"hidden {config['head_hidden']}; torch threads "
        f"{env.get('MERSV_TORCH_THREADS') or 'default (all cores)'}"
    )
    print(f"{'fold':>4} {'epochs':>6} {'best':>5} {'early stop':>10} {'s/epoch':>8} {'fold s':>7}")
    for fold, summary in sorted(run.fold_summaries.items(), key=lambda kv: int(kv[0])):
        seconds = list(
            EpochRecord.objects.filter(run=run, fold=int(fold)).values_list("seconds", flat=True)
        )
        per_epoch = sum(seconds) / len(seconds) if seconds else float("nan")
        print(
            f"{fold:>4} {summary['epochs_run']:>6} {summary['best_epoch']:>5} "
            f"{'yes' if summary['stopped_early'] else 'no':>10} {per_epoch:>8.1f} "
            f"{sum(seconds):>7.0f}"
        )
    # Every epoch recorded, also those of a fold that did not finish.
    seconds_all = list(EpochRecord.objects.filter(run=run).values_list("seconds", flat=True))
    epochs = len(seconds_all)
    pooled = run.pooled_metrics
    scores = ", ".join(f"{METRIC_LABELS[m]} {pooled[m]:.4f}" for m in MAIN_METRICS if m in pooled)
    print(f"out-of-fold (pooled): {scores}")
    print(
        "test, mean over folds: "
        + ", ".join(
            f"{METRIC_LABELS[m]} {run.metrics_mean[m]:.4f} +- {run.metrics_std.get(m, 0):.4f}"
            for m in MAIN_METRICS
            if m in run.metrics_mean
        )
    )
    val_last = EpochRecord.objects.filter(run=run).order_by("fold", "-epoch").distinct("fold")
    print(
        "validation at the last epoch: "
        + ", ".join(f"fold {r.fold} HI {r.val_hi:.4f} EMD {r.val_emd:.4f}" for r in val_last)
    )
    predictions.parent.mkdir(parents=True, exist_ok=True)
    predictions.write_text(selectors.run_predictions_csv(run))
    print(
        f"\nwall time of `manage.py train --dataset {VERSION}`: {wall_s / 60:.1f} min "
        f"({epochs} epochs, {len(run.fold_summaries)} folds finished, "
        f"{sum(seconds_all) / max(epochs, 1):.1f} s per epoch; target: under 30 min)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=600, help="synthetic clips (60: a smoke run)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--database", default="mersv_bench_train_default")
    parser.add_argument("--reuse-db", action="store_true", help="skip import and build if done")
    parser.add_argument(
        "--threads", type=int, help="set MERSV_TORCH_THREADS (default: the environment's)"
    )
    args = parser.parse_args()
    if not args.database.startswith("mersv_bench"):
        raise SystemExit(f"refusing {args.database!r}: the benchmark database must be mersv_bench*")

    started = time.perf_counter()
    var_dir = ROOT / "var" / "bench" / f"train-default-var-{args.clips}"
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{args.database}",
        MERSV_VAR_DIR=str(var_dir),
    )
    if args.threads is not None:
        env["MERSV_TORCH_THREADS"] = str(args.threads)
    export = prepare(args, env, var_dir)
    data = ROOT / "var" / "bench" / f"synthetic-train-{args.clips}-{args.width}x{args.height}"

    wall_s, _ = train_default(env)
    predictions = ROOT / "var" / "bench" / f"train-default-oof-{args.clips}.csv"
    report(env, wall_s, predictions)
    evaluate(export, data / "truth_clips.csv", predictions, kinematics=False)
    print("\nbenchmarks/training.py reported for the same preset and settings (300 clips):")
    for name, ref in REFERENCE.items():
        print(
            f"  model, {name}: HI {ref['hi']:.4f}, EMD {ref['emd']:.4f}, macro HI "
            f"{ref['macro_hi']:.4f}, mode acc {ref['mode_accuracy']:.3f}, gap closed "
            f"{ref['gap']:.1f}%, {ref['minutes']:.1f} min of training"
        )
    print(
        f"\nbenchmark total {(time.perf_counter() - started) / 60:.1f} min; "
        f"{os.cpu_count()} CPU core(s)"
    )


if __name__ == "__main__":
    main()
