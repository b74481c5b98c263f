"""Grading load with a database outage and with training beside it.

A fresh database on a private PostgreSQL cluster (``pg_createcluster 15 bench -p 5440``, made
once, trust on loopback; the shared cluster on 5432 is never stopped), gunicorn, a Celery
worker, and N expert clients (threads; token auth; each: next clip, think, grade) for a fixed
duration split in three phases, with N trainee clients beside them (each: next training
clip, think, grade, read the feedback):

1. idle: vote latency with nothing else running (p50/p95),
2. outage: the cluster is stopped for ``--outage-s`` seconds and started again; clients keep
   going (a failed request is retried after a pause, as the page does),
3. training: a training run uses the CPU meanwhile (p95 against phase 1; target <= 2x).

Afterwards: every vote and trainee grade acknowledged with 201 is in the database, a recount
of every clip's vote counts changes nothing, and the time from the database's return to the
first 201. Stops by itself.

    .venv/bin/python -m benchmarks.load_soak --duration 600 --experts 40 --trainees 20 \
        --think-s 6 --worker-priority idle

Measured 2026-11-25 on the 2-core development machine (load generator, gunicorn, PostgreSQL
and the worker all on it), 600 s, 40 experts + 20 trainees, outage 5 s:

- think 6 s (3-9 s per clip): 3738 votes sent, 3703 acknowledged, all 3703 in the database;
  1906 of 1906 acknowledged trainee grades stored; recount changed 0 clips; database down
  7.7 s, first 201 0.04 s after its return; vote p50/p95 idle 86/255 ms, beside training
  (SCHED_IDLE worker) 120/348 ms: ratio 1.36.
- think 2 s (1-3 s per clip, about 29 requests/s: the two cores saturate): 5548 of 5548
  acknowledged votes and 3107 of 3107 trainee grades stored, recount 0, first 201 0.09 s after
  the database's return; vote p50/p95 idle 1181/2391 ms, beside training 968/2002 ms (0.84).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = ("15", "bench")
PORT = 5440
DB = "mersv_soak"
# How the training worker is started: as is, under nice, or in the idle scheduling class
# (it gets only the CPU time nothing else wants; no privilege is needed to ask for it).
WORKER_PRIORITY = {"normal": [], "nice": ["nice", "-n", "19"], "idle": ["chrt", "--idle", "0"]}
PASSWORD = "soak-password-long-enough"  # noqa: S105 (throwaway accounts, throwaway DB)


def cluster(action: str) -> None:
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", *CLUSTER, action, *(
        ["-m", "fast"] if action == "stop" else [])], check=True)  # fmt: skip


def cluster_ready() -> bool:
    return subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(PORT)]).returncode == 0


def ensure_cluster() -> None:
    listed = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout
    if not any(line.split()[:2] == list(CLUSTER) for line in listed.splitlines()):
        subprocess.run(["pg_createcluster", *CLUSTER, "-p", str(PORT)], check=True)
        hba = Path(f"/etc/postgresql/{CLUSTER[0]}/{CLUSTER[1]}/pg_hba.conf")
        hba.write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
    if not cluster_ready():
        cluster("start")
    while not cluster_ready():
        time.sleep(0.2)


class Client:
    """One expert: token auth, JSON in and out."""

    def __init__(self, base: str, username: str) -> None:
        self.base, self.token = base, ""
        answer = self.call("POST", "/api/token/", {"username": username, "password": PASSWORD})
        self.token = answer[1]["token"]

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(self.base + path, method=method)  # noqa: S310 (http)
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Token {self.token}")
        data = json.dumps(body).encode() if body is not None else None
        try:
            with urllib.request.urlopen(request, data, timeout=30) as response:  # noqa: S310
                text = response.read()
                return response.status, json.loads(text) if text else {}
        except urllib.error.HTTPError as error:
            return error.code, {}
        except (urllib.error.URLError, OSError):
            return 0, {}


def grade_loop(
    client: Client, username: str, stop: float, think_s: float, log: list, *, trainee: bool
) -> None:
    """One grader until ``stop``: ask for the next clip, think, grade it; log each answer."""
    rng = random.Random(username)
    prefix = "/api/practice" if trainee else "/api/grading"
    while time.monotonic() < stop:
        status, clip = client.call("GET", f"{prefix}/next/")
        if status != 200:
            log.append((time.monotonic(), username, None, status, 0.0))
            time.sleep(1.0 if status else 0.5)
            continue
        time.sleep(rng.uniform(0.5, 1.5) * think_s)
        start = time.monotonic()
        body = {"grade": rng.choice("ABCDE"), "time_spent_ms": 4000}
        if trainee:
            body |= {"practice_set": clip["practice_set"], "clip_id": clip["clip"]["clip_id"]}
        else:
            body["clip_id"] = clip["clip_id"]
        status, _ = client.call("POST", f"{prefix}/ratings/", body)
        log.append((time.monotonic(), username, body["clip_id"], status, time.monotonic() - start))


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] * 1000 if len(values) >= 20 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600)
    parser.add_argument("--experts", type=int, default=40)
    parser.add_argument("--trainees", type=int, default=20)
    parser.add_argument("--clips", type=int, default=400)
    parser.add_argument("--think-s", type=float, default=2.0)
    parser.add_argument("--outage-s", type=float, default=5.0)
    parser.add_argument("--port", type=int, default=8950)
    parser.add_argument(
        "--worker-priority",
        choices=sorted(WORKER_PRIORITY),
        default="idle",
        help="the training worker's CPU priority (idle: SCHED_IDLE, as docker/compose.yml runs it)",
    )
    args = parser.parse_args()
    ensure_cluster()
    work = Path(tempfile.mkdtemp(prefix="mersv-soak-"))
    env = {**os.environ, "DATABASE_URL": f"postgres://postgres@127.0.0.1:{PORT}/{DB}",
           "CELERY_BROKER_URL": "redis://127.0.0.1:6379/11", "MERSV_VAR_DIR": str(work / "var"),
           "MERSV_TORCH_THREADS": "1", "MERSV_REPEAT_RATE": "0",
           "DJANGO_SETTINGS_MODULE": "config.settings"}  # fmt: skip
    os.environ.update(env)
    psql = ["psql", f"postgres://postgres@127.0.0.1:{PORT}/postgres", "-qc"]
    subprocess.run([*psql, f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)"], check=True)
    subprocess.run([*psql, f"CREATE DATABASE {DB}"], check=True)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from annotation.access.accounts import user_create
    from annotation.ingest.services import clip_vote_counts_recount
    from annotation.models import Clip, Patient, Rating, Video
    from datasets.models import DatasetVersion, TraineeRating
    from simulator.synthetic import SyntheticConfig, generate_dataset

    User = get_user_model()

    call_command("migrate", "--noinput", "-v", "0")
    data = work / "data"
    generate_dataset(
        data, SyntheticConfig(n_clips=6, n_experts=12, seed=3, width=400, height=300, n_frames=20)
    )
    call_command("import_dataset", str(data), "--no-progress", "--skip-untrackable")
    # Clips to grade: rows only (the API serves their URLs; the clients never fetch the files),
    # spread over ten patients so that the dataset version can fold them by patient.
    source = Clip.objects.first()
    assert source is not None, "the import above made no clip"
    # The source clip's files and measures; identity, votes and retirement start afresh.
    fields = {
        f.attname: getattr(source, f.attname)
        for f in Clip._meta.concrete_fields
        if f.attname not in ("id", "external_id", "video_id", "created_at", "retired_at")
        and not f.attname.startswith("votes_")
    }
    videos = [
        Video.objects.create(patient=Patient.objects.create(code=f"P-soak-{i}"),
                             file=source.video.file.name, pixel_size_um=0.5, status="ready")
        for i in range(10)
    ]  # fmt: skip
    clips = Clip.objects.bulk_create(
        [
            Clip(video=videos[i % len(videos)], external_id=f"soak-{i:04d}", **fields)
            for i in range(args.clips)
        ]
    )
    # Half of them already graded by the imported panel: the trainees' training set.
    rng = random.Random(0)
    panel = list(User.objects.filter(ratings__isnull=False).distinct())
    Rating.objects.bulk_create(
        [
            Rating(clip=clip, rater=rater, grade=rng.choice("ABCDE"))
            for clip in clips[: len(clips) // 2]
            for rater in panel
        ]
    )
    clip_vote_counts_recount()
    call_command("build_dataset", "soak-v1", "--no-progress", "--min-votes", "2")
    call_command("open_practice_set", "soak-practice", "soak-v1")
    names = [f"soak-expert-{i:02d}" for i in range(args.experts)]
    for name in names:
        user_create(username=name, role="expert", password=PASSWORD, validate=False)
    trainee_names = [f"soak-trainee-{i:02d}" for i in range(args.trainees)]
    for name in trainee_names:
        user_create(username=name, role="trainee", password=PASSWORD, validate=False)
    connection.close()

    base = f"http://127.0.0.1:{args.port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "--preload",
         "-b", f"127.0.0.1:{args.port}", "-w", "2", "--threads", "8", "--timeout", "60"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=(work / "gunicorn.log").open("w"),
    )  # fmt: skip
    worker = None
    try:
        while subprocess.run(["curl", "-fs", "-o", "/dev/null", f"{base}/login/"]).returncode:
            time.sleep(0.5)
        clients = [Client(base, name) for name in names]
        log: list = []
        phase = args.duration / 3
        start = time.monotonic()
        stop = start + args.duration
        trainee_clients = [Client(base, name) for name in trainee_names]
        trainee_log: list = []
        graders = [(c, n, log, False) for c, n in zip(clients, names, strict=True)] + [
            (c, n, trainee_log, True) for c, n in zip(trainee_clients, trainee_names, strict=True)
        ]
        threads = [
            threading.Thread(
                target=grade_loop,
                args=(client, name, stop, args.think_s, into),
                kwargs={"trainee": trainee},
                daemon=True,
            )
            for client, name, into, trainee in graders
        ]
        for thread in threads:
            thread.start()
        time.sleep(phase)
        print(f"phase 2: stopping PostgreSQL ({'/'.join(CLUSTER)}) for {args.outage_s:.0f} s")
        down_at = time.monotonic()
        cluster("stop")
        time.sleep(args.outage_s)
        cluster("start")
        while not cluster_ready():
            time.sleep(0.1)
        back_at = time.monotonic()
        time.sleep(max(0.0, start + 2 * phase - time.monotonic()))
        print("phase 3: training beside the load")
        worker = subprocess.Popen(
            [*WORKER_PRIORITY[args.worker_priority], sys.executable, "-m", "celery", "-A", "config",
             "worker", "-P", "solo", "-Q", "celery,training", "--without-heartbeat",
             "--without-gossip", "--without-mingle"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        from modeling import services as modeling_services
        from modeling.models import TrainingRun

        config = {"backbone": "resnet", "preset": "small", "loss": "emd", "optimizer": "adam",
                  "lr": 1e-3, "epochs": 500, "batch_size": 4,
                  "early_stopping_patience": None}  # fmt: skip
        run = modeling_services.training_run_start(
            version=DatasetVersion.objects.get(name="soak-v1"), config=config, created_by=None
        )
        training_from = None
        while time.monotonic() < stop:
            if (
                training_from is None
                and TrainingRun.objects.filter(pk=run.pk, status="running").exists()
            ):
                training_from = time.monotonic()
            time.sleep(0.5)
        for thread in threads:
            thread.join(timeout=60)
    finally:
        server.terminate()
        if worker is not None:
            worker.kill()  # mid-training; the run goes with the database
            worker.wait(timeout=30)
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    votes = [entry for entry in log if entry[2] is not None]
    acked = {(user, clip) for _, user, clip, status, _ in votes if status == 201}
    stored = set(
        Rating.objects.filter(rater__username__in=names).values_list(
            "rater__username", "clip__external_id"
        )
    )
    idle = [s for t, _, _, status, s in votes if status == 201 and t < down_at]
    busy = [
        s for t, _, _, status, s in votes if status == 201 and training_from and t > training_from
    ]
    after_back = [t for t, _, _, status, _ in votes if status == 201 and t > back_at]
    errors: dict[int, int] = {}
    for _, _, _, status, _ in log:
        if status not in (200, 201):
            errors[status] = errors.get(status, 0) + 1
    grades = [entry for entry in trainee_log if entry[2] is not None]
    grades_acked = {(user, clip) for _, user, clip, status, _ in grades if status == 201}
    grades_stored = set(
        TraineeRating.objects.filter(trainee__username__in=trainee_names).values_list(
            "trainee__username", "dataset_clip__clip_external_id"
        )
    )
    trainee_errors: dict = {}
    for _, _, _, status, _ in trainee_log:
        if status not in (200, 201):
            trainee_errors[status] = trainee_errors.get(status, 0) + 1
    print(f"experts {args.experts}, trainees {args.trainees}, {args.duration:.0f} s, outage "
          f"{args.outage_s:.0f} s, training worker priority {args.worker_priority}")  # fmt: skip
    print(f"trainee grades sent {len(grades)}, acknowledged 201: {len(grades_acked)}, of those "
          f"in the database: {len(grades_acked & grades_stored)}, missing "
          f"{len(grades_acked - grades_stored)}; other answers {trainee_errors}")  # fmt: skip
    print(f"votes sent {len(votes)}, acknowledged 201: {len(acked)}, of those in the database: "
          f"{len(acked & stored)}, missing {len(acked - stored)}; "
          f"other answers {errors}")  # fmt: skip
    print(f"recount of every clip changed: {clip_vote_counts_recount()} clip(s)")
    first = min(after_back) - back_at if after_back else float("nan")
    print(f"database down {back_at - down_at:.1f} s; first 201 {first:.2f} s after its return")
    median_busy = statistics.median(busy) * 1000 if busy else float("nan")
    print(f"vote p50/p95 idle: {statistics.median(idle) * 1000:.0f}/{p95(idle):.0f} ms "
          f"({len(idle)} votes); under training: {median_busy:.0f}/{p95(busy):.0f} ms "
          f"({len(busy)} votes); ratio of p95 {p95(busy) / p95(idle):.2f} "
          "(target <= 2)")  # fmt: skip


if __name__ == "__main__":
    main()
