"""Aggregation at the paper's scale, from PostgreSQL: distributions, statistics, agreement.

Creates a fresh database (default `mersv_bench_agg`, on the server of DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/mersv), migrates it and loads the paper's scale: 615 clips
graded by 40 experts (24,600 ratings) drawn from the simulated panel of `simulator.panel` on
N(0, 1) clip qualities, written with bulk_create (no media files: nothing here reads them).
Then prints the median of several runs of

- every clip's distribution, raw and severity-corrected (what GET /api/distributions/ computes),
- the distribution CSV (GET /api/distributions.csv),
- the panel statistics (GET /api/statistics/ and the dashboard) without bootstrap and with
  1,000 bootstrap resamples, with the rater model snapshot current, and once with a refit
  (the first request after a vote),
- a naive per-clip loop (one query per clip, counting in pure Python) for the ratio,

against the targets: statistics without bootstrap < 1 s, with 1,000 resamples < 10 s.
The database is dropped at the end unless --keep is given.

    .venv/bin/python -m benchmarks.aggregation_scale --runs 5
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import numpy as np

N_CLIPS, N_EXPERTS = 615, 40
TARGET_STATS_S, TARGET_BOOTSTRAP_S = 1.0, 10.0


def _server_url(database: str) -> str:
    """DATABASE_URL with its database name replaced."""
    parts = urlsplit(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/mersv"))
    if not parts.scheme.startswith("postgres"):
        raise SystemExit("this benchmark needs PostgreSQL: set DATABASE_URL=postgres://...")
    return urlunsplit(parts._replace(path=f"/{database}"))


def database_recreate(name: str) -> None:
    import psycopg

    with psycopg.connect(_server_url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def database_drop(name: str) -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    with psycopg.connect(_server_url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


@contextlib.contextmanager
def fresh_database(name: str, *, keep: bool = False) -> Iterator[None]:
    """A new PostgreSQL database `name` (dropped first if there), Django set up on it and
    migrated; dropped again at the end unless `keep`."""
    database_recreate(name)
    os.environ["DATABASE_URL"] = _server_url(name)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    try:
        call_command("migrate", verbosity=0)
        yield
    finally:
        if not keep:
            database_drop(name)


def load_paper_scale(*, seed: int) -> int:
    """Experts, clips and every expert's vote on every clip; returns the number of ratings."""
    from django.contrib.auth import get_user_model

    from annotation.ingest.kinematics import KINEMATICS_KEYS
    from annotation.ingest.services import clip_vote_counts_recount
    from annotation.models import Clip, Patient, Rating, Video
    from simulator.panel import panel_sample, panel_votes

    rng = np.random.default_rng(seed)
    panel = panel_sample(n_experts=N_EXPERTS, rng=rng)
    votes = panel_votes(rng.normal(size=N_CLIPS), panel, rng=rng)  # (clips, experts) grade idx
    User = get_user_model()
    experts = User.objects.bulk_create(
        [User(username=rater_id, password="!") for rater_id in panel.rater_ids]  # noqa: S106
    )
    patients = Patient.objects.bulk_create([Patient(code=f"P{i:04d}") for i in range(N_CLIPS)])
    videos = Video.objects.bulk_create(
        [
            Video(patient=p, file=f"videos/{i:04d}.mp4", pixel_size_um=0.5, status="ready")
            for i, p in enumerate(patients)
        ]
    )
    kinematics = Clip.kinematics_fields(dict.fromkeys(KINEMATICS_KEYS, 1.0))
    clips = Clip.objects.bulk_create(
        [
            Clip(
                video=v,
                external_id=f"c{i:04d}",
                start_x=10.0,
                start_y=10.0,
                track=[[10.0, 10.0]] * 16,
                n_frames=16,
                crop_size=150,
                frames_file=f"clips/{i}/frames.npy",
                crop_file=f"clips/{i}/crop.mp4",
                filmstrip_file=f"clips/{i}/filmstrip.png",
                **kinematics,
            )
            for i, v in enumerate(videos)
        ]
    )
    # Grading time per vote: log-normal around 8 s, as measured times would look.
    times = np.exp(rng.normal(np.log(8000), 0.6, size=votes.shape)).astype(int)
    Rating.objects.bulk_create(
        [
            Rating(clip=clip, rater=expert, grade="ABCDE"[votes[i, j]], time_spent_ms=times[i, j])
            for i, clip in enumerate(clips)
            for j, expert in enumerate(experts)
        ],
        batch_size=5000,
    )
    clip_vote_counts_recount()
    return int(votes.size)


def naive_distributions() -> list[dict[str, object]]:
    """The slow way: one query per clip and pure Python statistics."""
    from annotation.models import Clip, Rating

    out: list[dict[str, object]] = []
    for clip in Clip.objects.order_by("external_id"):
        grades = list(Rating.objects.filter(clip=clip).values_list("grade", flat=True))
        counts = Counter(grades)
        n = len(grades)
        scores = [" ABCDE".index(g) for g in grades]
        mean = sum(scores) / n if n else math.nan
        std = math.sqrt(sum((s - mean) ** 2 for s in scores) / n) if n else math.nan
        p = {g: counts[g] / n for g in "ABCDE"} if n else None
        entropy = -sum(v * math.log2(v) for v in p.values() if v) if p else math.nan
        mode = max("ABCDE", key=lambda g: counts[g]) if n else ""
        row: dict[str, object] = {
            "clip_id": clip.external_id,
            "p": p,
            "mean": mean,
            "std": std,
            "mode": mode,
        }
        out.append(row | {"entropy": entropy})
    return out


def median_seconds(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="mersv_bench_agg")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()

    with fresh_database(args.database, keep=args.keep):
        started = time.perf_counter()
        n_ratings = load_paper_scale(seed=args.seed)
        print(
            f"loaded {N_CLIPS} clips x {N_EXPERTS} experts = {n_ratings} ratings "
            f"in {time.perf_counter() - started:.1f} s (database {args.database})"
        )
        run_timings(args.runs)


def run_timings(runs: int) -> None:
    from annotation.aggregation import ratings, selectors
    from annotation.aggregation.rater_model_service import rater_model_refit
    from annotation.models import Clip, RaterModelSnapshot

    def distributions() -> object:
        clips = list(Clip.objects.order_by("external_id"))
        return selectors.clip_distributions(clips, snapshot=selectors.rater_model_latest().snapshot)

    def refit() -> object:  # the worker's task; page views never fit
        RaterModelSnapshot.objects.all().delete()
        return rater_model_refit()

    cold = median_seconds(refit, max(1, runs // 2))
    rater_model_refit()  # the snapshot stays current from here on
    rows = {
        "ratings_frame (one query, index arrays)": median_seconds(ratings.ratings_frame, runs),
        "all distributions, raw + corrected": median_seconds(distributions, runs),
        "distribution CSV rows": median_seconds(
            lambda: list(selectors.distributions_csv_rows()), runs
        ),
        "statistics, no bootstrap": median_seconds(
            lambda: selectors.panel_statistics(bootstrap=0), runs
        ),
        "statistics, 1000 bootstrap resamples": median_seconds(
            lambda: selectors.panel_statistics(bootstrap=1000), runs
        ),
        "rater model refit (the worker's task)": cold,
        "naive per-clip loop (615 queries, pure Python)": median_seconds(naive_distributions, runs),
    }
    width = max(map(len, rows))
    print(f"median of {runs} runs:")
    for name, seconds in rows.items():
        print(f"  {name:<{width}}  {seconds * 1000:8.1f} ms")
    stats_s = rows["statistics, no bootstrap"]
    boot_s = rows["statistics, 1000 bootstrap resamples"]
    naive_s = rows["naive per-clip loop (615 queries, pure Python)"]
    all_s = rows["all distributions, raw + corrected"]
    print(
        f"statistics without bootstrap: {stats_s:.3f} s (target < {TARGET_STATS_S:g} s) "
        f"{'OK' if stats_s < TARGET_STATS_S else 'MISSED'}"
    )
    print(
        f"statistics with 1000 resamples: {boot_s:.3f} s (target < {TARGET_BOOTSTRAP_S:g} s) "
        f"{'OK' if boot_s < TARGET_BOOTSTRAP_S else 'MISSED'}"
    )
    print(
        f"naive loop / vectorised distributions: {naive_s / all_s:.1f}x; "
        f"naive loop / whole statistics: {naive_s / stats_s:.1f}x"
    )


if __name__ == "__main__":
    main()
