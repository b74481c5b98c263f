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
training went on from its checkpoint: the epochs in the checkpoints at the kill keep their
records (an epoch trained again would have a new duration), the killed fold's first epoch after
the restart is its last checkpointed epoch + 1, and the run finishes with every epoch once.

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


def process_gone(pid: int | None) -> bool:
    """The process has exited (a zombie waiting for its parent counts as gone)."""
    if pid is None:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (FileNotFoundError, ProcessLookupError):
        return True


class Checkpoints:
    """The training run's checkpoints on disk (``fold_<k>/last.pt``), as the trainer left them:
    each is written to a temporary file and renamed, so a read sees a whole one."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[Path, tuple[int, dict]] = {}

    def _load(self, path: Path) -> dict | None:
        import torch

        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        cached = self._cache.get(path)
        if cached is None or cached[0] != mtime:
            state = torch.load(path, map_location="cpu", weights_only=True)
            cached = self._cache[path] = (mtime, {"epoch": state["epoch"], "logs": state["logs"]})
        return cached[1]

    def epoch(self, fold: int) -> int:
        """The last epoch checkpointed in the fold (0: none yet)."""
        state = self._load(self.root / f"fold_{fold}" / "last.pt")
        return state["epoch"] if state else 0

    def logs(self) -> dict[tuple[int, int], float]:
        """(fold, epoch) -> seconds of every epoch in every checkpoint."""
        out = {}
        for path in sorted(self.root.glob("fold_*/last.pt")):
            for log in (self._load(path) or {"logs": []})["logs"]:
                out[(int(log["outer_fold"]), int(log["epoch"]))] = float(log["seconds"])
        return out


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

        from annotation.ingest import services
        from annotation.models import Clip, Video
        from datasets.models import DatasetVersion
        from datasets.services import dataset_version_create
        from modeling import services as modeling_services
        from modeling.models import EpochRecord, TrainingRun
        from simulator.synthetic import SyntheticConfig, generate_dataset

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

        def failures(ids: list[int]) -> str:
            """The distinct errors of failed videos: a failure is not a loss, but says why."""
            failed = Video.objects.filter(pk__in=ids, status="failed")
            errors = sorted(set(failed.values_list("error", flat=True)))
            return "".join(f"\n     failed: {error[:300]!r}" for error in errors)

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
              f"failed, lost {lost}; clips per ready video beyond one: {duplicated}"
              f"{failures(ids)}")  # fmt: skip

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

        print("1c. training: SIGKILL the task process in the middle of fold 0")
        config = {"backbone": "resnet", "preset": "small", "loss": "emd", "optimizer": "adam",
                  "lr": 1e-3, "epochs": args.epochs, "batch_size": 4,
                  "early_stopping_patience": None}  # fmt: skip
        run = modeling_services.training_run_start(version=version, config=config, created_by=None)
        checkpoints = Checkpoints(Path(run.checkpoint_dir))
        records = EpochRecord.objects.filter(run=run)
        at_kill: dict[tuple[int, int], float] = {}  # (fold, epoch) -> seconds, from checkpoints
        killed_fold = killed_epoch = None
        # Past fold 0's second checkpoint and before its last: the kill lands mid-fold.
        if wait(lambda: 2 <= checkpoints.epoch(0) < args.epochs, 300, "two epochs", 0.02):
            pid = worker.task_process()
            killed += worker.kill_task_process()
            wait(lambda: process_gone(pid), 10, "the killed process")
            # Read after the process is dead: what it had checkpointed is final.
            at_kill = checkpoints.logs()
            killed_fold = max((fold for fold, _ in at_kill), default=None)
            killed_epoch = checkpoints.epoch(killed_fold) if killed_fold is not None else None
        in_db_at_kill = records.count()
        wait(
            lambda: TrainingRun.objects.get(pk=run.pk).status in ("succeeded", "failed"),
            480,
            "training",
        )
        run.refresh_from_db()
        lost += run.status not in ("succeeded", "failed")
        after = {(r.fold, r.epoch): r.seconds for r in records}
        n_folds = len(run.fold_metrics)
        # An epoch trained again would have a new duration: equal seconds mean the row is the
        # one the killed attempt checkpointed, carried over from the checkpoint's log.
        rerun = sorted(key for key, seconds in at_kill.items() if after.get(key) != seconds)
        new_in_fold = sorted(
            e for (f, e) in after if f == killed_fold and (f, e) not in at_kill
        )  # fmt: skip
        first_after = new_in_fold[0] if new_in_fold else None
        folds = sorted(int(fold) for fold in run.fold_metrics)
        complete = sorted(after) == [(f, e) for f in folds for e in range(1, args.epochs + 1)]
        resumed = (
            bool(at_kill) and not rerun and killed_epoch is not None
            and first_after == killed_epoch + 1 and run.status == "succeeded" and complete
        )  # fmt: skip
        mean_s = sum(after.values()) / max(len(after), 1)
        print(f"   killed in fold {killed_fold} after its checkpoint of epoch {killed_epoch} of "
              f"{args.epochs} ({len(at_kill)} epochs checkpointed, {in_db_at_kill} recorded in "
              f"the database at the kill; {mean_s:.2f} s per epoch)")  # fmt: skip
        print(f"   run status {run.status} {run.error[:200]!r}, attempt {run.attempt} (>1: taken "
              f"over after the kill), folds done {run.folds_done}, epoch rows {len(after)} "
              f"(= {n_folds} folds x {args.epochs} epochs, each once: {complete})")  # fmt: skip
        kept = len(at_kill) - len(rerun)
        print(f"   checkpoint resume: epochs finished before the kill kept {kept}/{len(at_kill)}, "
              f"rerun {len(rerun)}; fold {killed_fold}'s first epoch after the "
              f"restart {first_after} (last checkpoint epoch {killed_epoch} + 1); "
              f"resumed from checkpoint: {resumed}")  # fmt: skip

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
              f"failed, lost {queued_lost}{failures(ids)}")  # fmt: skip
        clip_ids = Clip.objects.values("external_id").distinct().count()
        print(f"summary: task processes killed {killed}, tasks lost {lost}, "
              f"duplicated clips {Clip.objects.count() - clip_ids}, training resumed from its "
              f"checkpoint {resumed}")  # fmt: skip
    finally:
        worker.stop()
        redis.stop()
        from django.db import connections

        connections.close_all()
        subprocess.run([*psql, f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)"], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
