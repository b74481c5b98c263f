"""Worker and broker faults: kill the process running a task, restart Redis with tasks queued.

On a fresh PostgreSQL database and a private Redis (a second redis-server on a spare loopback
port, append-only file on, so the shared one on 6379 is never touched), with a real Celery
worker (prefork, one child):

1. ingestion, dataset build and a short training run are queued; in the middle of each the
   process executing the task is SIGKILLed (as the kernel's OOM killer or a crash would).
   Tasks are acknowledged late and rejected on worker loss, so the worker requeues the task
   and a new child runs it again; the claim on the row makes the rerun finish the work once.
2. the worker is stopped, ingestions are queued, Redis is restarted (SIGTERM, then started on
   the same append-only file), the worker comes back: every queued task must run.

Prints tasks killed, tasks lost (0 expected), duplicated result rows (0 expected), and whether
training went on from its checkpoint (epochs finished before the kill are not rerun).

    .venv/bin/python -m benchmarks.fault_worker_kill --redis-port 6390
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG = "postgres://postgres@127.0.0.1:5432"
DB = "mersv_fault"


def wait(predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    print(f"  (timed out after {timeout:.0f} s waiting for {what})")
    return False


class Redis:
    """A private redis-server with an append-only file, restartable on the same data."""

    def __init__(self, port: int, folder: Path) -> None:
        self.port, self.folder = port, folder
        folder.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait(self.answers, 10, "redis to start")

    def answers(self) -> bool:
        ping = ["redis-cli", "-p", str(self.port), "ping"]
        return subprocess.run(ping, capture_output=True, text=True).stdout.strip() == "PONG"

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: redis flushes the append-only file and exits
            self.process.wait(timeout=20)


class Worker:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.log.write_text("")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-P", "prefork", "-c", "1",
             "-Q", "celery,training", "--without-heartbeat", "--without-gossip",
             "--without-mingle", "-l", "INFO", "-n", f"fault-{os.getpid()}@%h"],
            cwd=ROOT, env=self.env, stdout=self.log.open("a"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        if not wait(lambda: "ready." in self.log.read_text(), 90, "the worker", step=0.2):
            raise SystemExit(self.log.read_text()[-3000:])

    def task_process(self) -> int | None:
        """PID of the pool child that runs tasks."""
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        pids = children.read_text().split() if children.exists() else []
        return int(pids[0]) if pids else None

    def kill_task_process(self) -> bool:
        pid = self.task_process()
        if pid is None:
            return False
        os.kill(pid, signal.SIGKILL)
        return True

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def main() -> None:  # one scenario after another, top to bottom
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-port", type=int, default=6390)
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mersv-fault-"))
    env = {
        **os.environ,
        "DATABASE_URL": f"{PG}/{DB}",
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{args.redis_port}/0",
        "MERSV_VAR_DIR": str(work / "var"),
        "MERSV_TRAINING_HEARTBEAT_STALE_S": "3",  # a killed run is taken over after 3 s
        "MERSV_TORCH_THREADS": "1",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    os.environ.update(env)
    psql = ["psql", f"{PG}/postgres", "-qc"]
    subprocess.run([*psql, f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)"], check=True)
    subprocess.run([*psql, f"CREATE DATABASE {DB}"], check=True)
    redis = Redis(args.redis_port, work / "redis")
    redis.start()
    worker = Worker(env, work / "worker.log")
    try:
        import django

        django.setup()
        import pandas as pd
        from django.core.management import call_command

        from annotation import services
        from annotation.models import Clip, Video
        from annotation.synthetic import SyntheticConfig, generate_dataset
        from datasets.models import DatasetVersion
        from datasets.services import dataset_version_create
        from modeling import services as modeling_services
        from modeling.models import EpochRecord, TrainingRun

        call_command("migrate", "--noinput", "-v", "0")
        data = work / "data"
        generate_dataset(
            data,
            SyntheticConfig(n_clips=6, n_experts=12, seed=3, width=400, height=300, n_frames=20),
        )
        call_command("import_dataset", str(data), "--no-progress", "--skip-untrackable")
        clips = pd.read_csv(data / "clips.csv")
        worker.start()
        killed = lost = 0

        def queue_videos(tag: str) -> list[int]:
            ids = []
            for index in range(args.videos):
                row = clips.iloc[index % len(clips)]
                video = services.video_create(
                    fileobj=io.BytesIO((data / row.video).read_bytes()),
                    original_name="v.mp4", patient_code="P-fault", pixel_size_um=0.5,
                    targets=[services.Target(float(row.x), float(row.y), f"{tag}-{index}")],
                    uploaded_by=None,
                )  # fmt: skip
                ids.append(video.pk)
            return ids

        def videos_done(ids: list[int]) -> bool:
            return not Video.objects.filter(
                pk__in=ids, status__in=["pending", "processing"]
            ).exists()

        print("1a. ingestion: SIGKILL the task process while a video is processing")
        ids = queue_videos("kill")
        if wait(
            lambda: Video.objects.filter(pk__in=ids, status="processing").exists(), 60, "processing"
        ):
            time.sleep(0.2)
            killed += worker.kill_task_process()
        wait(lambda: videos_done(ids), 240, "the videos")
        statuses = list(Video.objects.filter(pk__in=ids).values_list("status", flat=True))
        lost += sum(s in ("pending", "processing") for s in statuses)
        duplicated = Clip.objects.filter(video_id__in=ids).count() - statuses.count("ready")
        print(f"   videos {len(ids)}: {statuses.count('ready')} ready, {statuses.count('failed')} "
              f"failed, lost {lost}; clips per ready video beyond one: {duplicated}")  # fmt: skip

        print("1b. dataset build: SIGKILL the task process while the version is building")
        version = dataset_version_create(name="fault-v1", created_by=None)
        if wait(
            lambda: DatasetVersion.objects.get(pk=version.pk).status == "building",
            60,
            "building",
            0.01,
        ):
            killed += worker.kill_task_process()
        wait(
            lambda: DatasetVersion.objects.get(pk=version.pk).status in ("ready", "failed"),
            240,
            "build",
        )
        version.refresh_from_db()
        lost += version.status not in ("ready", "failed")
        named = DatasetVersion.objects.filter(name="fault-v1").count()
        print(f"   version status {version.status}, versions named fault-v1: {named}")

        print("1c. training: SIGKILL the task process after two epochs of fold 0")
        config = {"backbone": "resnet", "preset": "small", "loss": "emd", "optimizer": "adam",
                  "lr": 1e-3, "epochs": args.epochs, "batch_size": 4,
                  "early_stopping_patience": None}  # fmt: skip
        run = modeling_services.training_run_start(version=version, config=config, created_by=None)
        records = EpochRecord.objects.filter(run=run)
        before: dict = {}
        if wait(lambda: records.filter(fold=0).count() >= 2, 300, "two epochs", 0.2):
            killed += worker.kill_task_process()
            before = {(r.fold, r.epoch): r.seconds for r in records}
        wait(
            lambda: TrainingRun.objects.get(pk=run.pk).status in ("succeeded", "failed"),
            480,
            "training",
        )
        run.refresh_from_db()
        lost += run.status not in ("succeeded", "failed")
        after = {(r.fold, r.epoch): r.seconds for r in records}
        rerun = [key for key, seconds in before.items() if after.get(key) != seconds]
        print(f"   run status {run.status} {run.error[:200]!r}, attempt {run.attempt} (>1: taken "
              "over after the kill)")  # fmt: skip
        print(f"   epoch rows before the kill "
              f"{len(before)}, after {len(after)} (rows {records.count()}); epochs rerun after "
              f"the kill: {len(rerun)}; resumed: {bool(before) and not rerun}")  # fmt: skip

        print("2. Redis restart with ingestions queued and no worker running")
        worker.stop()
        ids = queue_videos("redis")
        redis.stop()
        redis.start()
        worker.start()
        wait(lambda: videos_done(ids), 240, "the queued videos")
        statuses = list(Video.objects.filter(pk__in=ids).values_list("status", flat=True))
        queued_lost = sum(s in ("pending", "processing") for s in statuses)
        lost += queued_lost
        print(f"   queued {len(ids)}: {statuses.count('ready')} ready, {statuses.count('failed')} "
              f"failed, lost {queued_lost}")  # fmt: skip
        clip_ids = Clip.objects.values("external_id").distinct().count()
        print(f"summary: task processes killed {killed}, tasks lost {lost}, "
              f"duplicated clips {Clip.objects.count() - clip_ids}")  # fmt: skip
    finally:
        worker.stop()
        redis.stop()
        from django.db import connections

        connections.close_all()
        subprocess.run([*psql, f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)"], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
