"""What one poll of the live run page costs the server, as a run grows.

The run page polls `/training/<id>/live/` every 2 s while a run trains, and each answer redraws
the progress, the fold table, the metrics table and the learning curves from every epoch
record. This creates a fresh database (default `mersv_bench_live`, on the server of
DATABASE_URL), migrates it, and for runs of `--folds` outer folds with 10, 100 and 1,000
epochs per fold written as the worker writes them (EpochRecord rows, fold metrics for the
folds done), times with Django's test client, logged in as a curator:

- the live endpoint (`GET /training/<id>/live/`) while the run is in its last fold,
- the full run page (`GET /training/<id>/`) for the side-by-side ratio,

and prints the medians, the answer sizes and live/page ratios against the target: one poll
under 200 ms at 1,000 epochs per fold (a tenth of the polling interval). The database is
dropped at the end unless --keep is given.

    .venv/bin/python -m benchmarks.live_run_page --runs 7
    .venv/bin/python -m benchmarks.live_run_page --folds 5 --runs 7   # a shifted configuration
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

from benchmarks.aggregation_scale import fresh_database

EPOCHS_PER_FOLD = (10, 100, 1000)
TARGET_POLL_S = 0.2


def _run_with_epochs(n_folds: int, epochs: int, seed: int) -> int:
    """A running run in its last fold, with ``epochs`` records in every fold; returns its id."""
    import numpy as np
    from django.utils import timezone

    from datasets.models import DatasetVersion
    from modeling.models import EpochRecord, TrainingRun
    from modeling.report import METRIC_LABELS

    rng = np.random.default_rng(seed)
    version, _ = DatasetVersion.objects.get_or_create(
        name="bench-live", defaults={"n_folds": n_folds, "status": "ready", "n_clips": 615}
    )
    metrics = {m: float(rng.uniform(0.05, 0.9)) for m in METRIC_LABELS}
    done = n_folds - 1
    run = TrainingRun.objects.create(
        version=version, name=f"bench-{epochs}", n_folds=n_folds, status="running",
        config={"backbone": "resnet", "loss": "emd", "epochs": epochs,
                "early_stopping_patience": None},
        progress=(done + 0.5) / n_folds, folds_done=done, duration_s=100.0,
        heartbeat_at=timezone.now(), progress_message=f"fold {n_folds}/{n_folds} · epoch 1",
        fold_metrics={str(k): metrics for k in range(done)},
        fold_summaries={str(k): {"best_epoch": epochs // 2, "epochs_run": epochs}
                        for k in range(done)},
    )  # fmt: skip
    rows = []
    for fold in range(n_folds):
        shown = epochs if fold < done else epochs // 2
        losses = np.cumsum(rng.uniform(-0.01, 0.008, size=(shown, 2)), axis=0) + 1.0
        for e in range(shown):
            rows.append(
                EpochRecord(run=run, fold=fold, epoch=e + 1, train_loss=float(losses[e, 0]),
                            val_loss=float(losses[e, 1]), best_epoch=max(1, e // 2), seconds=1.0)
            )  # fmt: skip
    EpochRecord.objects.bulk_create(rows, batch_size=5000)
    return run.pk


def _median_s(call: Callable[[], object], runs: int) -> float:
    call()  # warm: templates compiled, connections open
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run_timings(*, n_folds: int, runs: int, seed: int) -> bool:
    from django.test import Client

    from annotation.access.accounts import user_create

    user = user_create(username="bench-curator", role="curator", password=None)  # force_login
    client = Client()
    client.force_login(user)
    ok = True
    print(f"{n_folds} outer folds, median of {runs} requests each")
    print(f"{'epochs/fold':>11} {'records':>8} {'live ms':>8} {'live KiB':>9} "
          f"{'page ms':>8} {'page KiB':>9} {'live/page':>9}")  # fmt: skip
    for epochs in EPOCHS_PER_FOLD:
        pk = _run_with_epochs(n_folds, epochs, seed)
        live_url, page_url = f"/training/{pk}/live/", f"/training/{pk}/"
        live = client.get(live_url)
        page = client.get(page_url)
        assert live.status_code == 200 and page.status_code == 200
        assert live.json()["active"] is True
        live_s = _median_s(functools.partial(client.get, live_url), runs)
        page_s = _median_s(functools.partial(client.get, page_url), runs)
        records = n_folds * epochs - (epochs - epochs // 2)
        print(f"{epochs:>11} {records:>8} {1000 * live_s:>8.1f} {len(live.content) / 1024:>9.1f} "
              f"{1000 * page_s:>8.1f} {len(page.content) / 1024:>9.1f} "
              f"{live_s / page_s:>9.2f}")  # fmt: skip
        if epochs == EPOCHS_PER_FOLD[-1]:
            ok = live_s < TARGET_POLL_S
            verdict = "meets" if ok else "MISSES"
            print(f"target: one poll < {1000 * TARGET_POLL_S:.0f} ms at {epochs} epochs per fold: "
                  f"{verdict} ({1000 * live_s:.1f} ms)")  # fmt: skip
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="mersv_bench_live")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()

    with fresh_database(args.database, keep=args.keep):
        ok = run_timings(n_folds=args.folds, runs=args.runs, seed=args.seed)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
