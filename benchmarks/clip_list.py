"""The curators' clip list at the paper's scale: sort, filter and search in PostgreSQL.

Creates a fresh database (default `mersv_bench_clip_list`, on the server of DATABASE_URL),
migrates it and loads N clips graded by every one of M experts from the simulated panel of
`simulator.panel` (default 615 x 40 = 24,600 ratings; `--clips`/`--experts`/`--seed` shift the
generator). Then prints, as medians of several runs, the time of whole page requests of
/clips/ (a curator's session, through Django's test client: middleware, queries, template)
and their query counts:

- page 1 in clip order, no filter,
- page 1 sorted by agreement (descending) with the filters retired=no, votes_min, mode=C,
- the last page sorted by mean grade,
- a search for one clip id,

and, side by side, the same sorted and filtered first page done in Python the slow way: every
clip loaded, mean, mode and agreement computed per clip in a loop, filtered and sorted in
Python, then sliced (what the list did before it sorted in the database, plus the columns).
The database is dropped at the end unless --keep is given.

    .venv/bin/python -m benchmarks.clip_list --runs 7
    .venv/bin/python -m benchmarks.clip_list --clips 1230 --experts 25 --seed 1
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

import numpy as np

from benchmarks.aggregation_scale import fresh_database

PAGE_SIZE = 50


def load(*, n_clips: int, n_experts: int, seed: int) -> int:
    """Experts, clips (one video and patient per 15 clips) and every expert's vote on every
    clip; every 7th clip retired. Returns the number of ratings."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from annotation.access.roles import CURATOR, EXPERT
    from annotation.ingest.kinematics import KINEMATICS_KEYS
    from annotation.ingest.services import clip_vote_counts_recount
    from annotation.models import Clip, Patient, Rating, Video
    from simulator.panel import panel_sample, panel_votes

    rng = np.random.default_rng(seed)
    panel = panel_sample(n_experts=n_experts, rng=rng)
    votes = panel_votes(rng.normal(size=n_clips), panel, rng=rng)  # (clips, experts) grade idx
    user_model = get_user_model()
    experts = user_model.objects.bulk_create(
        [user_model(username=rater_id, password="!") for rater_id in panel.rater_ids]  # noqa: S106
    )
    Group.objects.get_or_create(name=EXPERT)[0].user_set.add(*experts)
    curator = user_model.objects.create(username="bench-curator", password="!")  # noqa: S106
    Group.objects.get_or_create(name=CURATOR)[0].user_set.add(curator)
    n_videos = -(-n_clips // 15)
    patients = Patient.objects.bulk_create([Patient(code=f"P{i:04d}") for i in range(n_videos)])
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
                video=videos[i // 15],
                external_id=f"c{i:04d}",
                target_index=i % 15,
                start_x=10.0,
                start_y=10.0,
                track=[[10.0, 10.0]],
                n_frames=16,
                crop_size=150,
                frames_file=f"clips/{i}/frames.npy",
                crop_file=f"clips/{i}/crop.mp4",
                filmstrip_file=f"clips/{i}/filmstrip.png",
                retired_at="2026-01-01T00:00:00Z" if i % 7 == 3 else None,
                **kinematics,
            )
            for i in range(n_clips)
        ]
    )
    Rating.objects.bulk_create(
        [
            Rating(clip=clip, rater=expert, grade="ABCDE"[votes[i, j]], time_spent_ms=5000)
            for i, clip in enumerate(clips)
            for j, expert in enumerate(experts)
        ],
        batch_size=5000,
    )
    clip_vote_counts_recount()
    return int(votes.size)


def python_first_page(*, votes_min: int) -> list[str]:
    """The slow way: every clip into Python, the columns per clip in a loop, then filter, sort
    and slice there (the same page as the database's, for the ratio)."""
    from annotation.aggregation.distributions import grade_mode_index
    from annotation.models import Clip

    rows = []
    for clip in Clip.objects.select_related("video__patient"):
        counts = clip.vote_counts
        n = sum(counts)
        mean = sum((k + 1) * c for k, c in enumerate(counts)) / n if n else None
        agreement = sum(c * (c - 1) for c in counts) / (n * (n - 1)) if n > 1 else None
        mode = "ABCDE"[int(grade_mode_index(np.array([counts]))[0])] if n else None
        if clip.retired_at is None and n >= votes_min and mode == "C":
            rows.append((clip.external_id, mean, agreement))
    rows.sort(key=lambda r: r[0])
    rows.sort(key=lambda r: (r[2] is None, -(r[2] or 0.0)))
    return [r[0] for r in rows[:PAGE_SIZE]]


def median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def run_timings(*, runs: int, n_clips: int, n_experts: int) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from annotation.aggregation.clip_list import ClipListQuery, clip_list_queryset

    client = Client()
    client.force_login(get_user_model().objects.get(username="bench-curator"))
    votes_min = n_experts // 2
    last_page = -(-n_clips // PAGE_SIZE)
    requests = {
        "page 1, clip order": {},
        f"sort -agreement, retired=no, votes_min={votes_min}, mode=C": {
            "sort": "-agreement", "retired": "no", "votes_min": str(votes_min), "mode": "C",
        },
        f"last page ({last_page}), sort mean": {"sort": "mean", "page": str(last_page)},
        "search one clip id": {"q": "c0123"},
    }  # fmt: skip
    client.get("/clips/")  # the session's first request writes the session
    print(f"median of {runs} runs, whole page requests of /clips/ ({n_clips} clips):")
    width = max(map(len, requests)) + 2
    results = {}
    for name, params in requests.items():
        with CaptureQueriesContext(connection) as queries:
            answer = client.get("/clips/", params)
        assert answer.status_code == 200, (name, answer.status_code)
        # Read now: every request starts by clearing the connection's query log.
        n_queries = len(queries.captured_queries)
        results[name] = median_ms(functools.partial(client.get, "/clips/", params), runs)
        print(f"  {name:<{width}} {results[name]:7.1f} ms  {n_queries} queries")
    filtered = next(k for k in requests if k.startswith("sort -agreement"))
    query = ClipListQuery(sort="-agreement", retired=False, votes_min=votes_min, mode="C")

    def database_page() -> list[str]:
        return list(clip_list_queryset(query).values_list("external_id", flat=True)[:PAGE_SIZE])

    assert database_page() == python_first_page(votes_min=votes_min), "the two ways disagree"
    db_ms = median_ms(database_page, runs)
    py_ms = median_ms(lambda: python_first_page(votes_min=votes_min), runs)
    print("the sorted and filtered first page alone (no request, no template):")
    print(f"  in the database (annotate, filter, order, LIMIT)   {db_ms:7.1f} ms")
    print(f"  in Python (load every clip, loop, sort, slice)     {py_ms:7.1f} ms")
    print(f"  Python / database: {py_ms / db_ms:.1f}x; page request {filtered!r}: "
          f"{results[filtered]:.1f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="mersv_bench_clip_list")
    parser.add_argument("--clips", type=int, default=615)
    parser.add_argument("--experts", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()

    with fresh_database(args.database, keep=args.keep):
        started = time.perf_counter()
        n_ratings = load(n_clips=args.clips, n_experts=args.experts, seed=args.seed)
        print(
            f"loaded {args.clips} clips x {args.experts} experts = {n_ratings} ratings "
            f"in {time.perf_counter() - started:.1f} s (seed {args.seed}, database {args.database})"
        )
        run_timings(runs=args.runs, n_clips=args.clips, n_experts=args.experts)


if __name__ == "__main__":
    main()
