"""Local folders vs object storage (moto's S3 server on loopback), side by side in one run.

Figures, each the median of --repeats runs, for both storages:
- upload: ``video_create`` of an --upload-mb file (the web side's write), MB/s;
- ingestion: ``video_ingest`` of each synthetic video in a fresh cache (a worker on another
  host fetches the source, decodes it in the sandbox, writes the clips back), videos/s;
- export: building a version of the imported synthetic set (media fetched, export written and,
  with object storage, its objects and archive stored), seconds;
- download: the export archive read by a client (local: the streamed, hashed response of the
  web process; object storage: the presigned URL, straight from the bucket), MB/s;
- web occupancy of a --direct-mb upload: seconds a web thread works for it (local: the whole
  request body goes through it; presigned multipart: only the start and complete calls, the
  parts go to the bucket), and that as a share of the upload's wall time.

The synthetic set is made twice, with the default generator configuration and a shifted one
(another seed, frame size and frame count), and ingestion is reported for both. This run uses
stock moto in its own process's threads, which joins a multipart upload in memory: keep
--direct-mb near its default 512 MB there, and measure gigabytes with --big-upload-mb.

--big-upload-mb N (instead of the table): one upload of N MiB the way the upload page sends it,
against real processes on loopback: gunicorn as the lab runs it (config/gunicorn.py, here 5
processes x 8 threads; its access log gives each request's server time), a `celery worker`
with a var folder of its own (the verification), and moto's server in a process of its own
with the multipart join through a file (benchmarks/moto_streaming.py; stock moto ran out of
memory joining 2 GiB). The file is written to var/bench-bigupload/ in 1 MiB chunks with its
SHA-256 (the client never holds it), then: POST /api/uploads/ (declared size and SHA-256),
the 16 MiB parts PUT straight to the S3 endpoint three at a time, POST .../complete/, and the
page's state polls (1 s, then x1.5 up to 10 s) until the worker has verified it; a second
client polls GET /api/videos/ every 0.2 s throughout (idle first, --idle-s). Printed: the
upload's wall time and MB/s, the web threads' server time for the upload's calls (their sum,
and each kind's), the verification task's own time in the worker, the poll latency (client and
in gunicorn) idle / during the upload / during the verification, the peak RSS of the gunicorn
processes (VmHWM before and after), of moto and of the worker. Everything under
var/bench-bigupload/ and the database are deleted at the end.

Measured 2026-12-06, `benchmarks/storage.py --big-upload-mb 2048 --idle-s 20` (runs 1, 3) and
`--idle-s 30` (run 2), on the 2-core machine shared with five other helpers' tests and
benchmarks (1-minute load average 13.6-15.2 during run 1, 10.8 during run 2, 2.7-3.4 run 3):

    2048 MiB (2147 MB) in 129 parts of 16 MiB   run 1           run 2           run 3
    upload wall (create .. complete), MB/s       92.0 s, 23.3    73.9 s, 29.1    23.1 s, 92.8
    to a verified video                         229.8 s         135.9 s         54.6 s
    web threads' server time for it, sum        10.04 s (4.4 %) 2.43 s (1.8 %)  1.16 s (2.1 %)
      in calls                                  19              12              9
      start (signs 129 part URLs) / complete    2.21 / 1.75 s   0.94 / 0.50 s   0.30 / 0.25 s
      the page's state polls, longest           1.02 s          0.15 s          0.16 s
    verification in the worker (join, size,     129.1 s         61.3 s          25.9 s
      signature, SHA-256, cached copy)
    poll GET /api/videos/ median / p95, idle    111 / 181 ms    62 / 104 ms     44 / 71 ms
      during the upload                         328 / 563 ms    238 / 449 ms    98 / 170 ms
        of which in gunicorn                    (not split)     213 / 441 ms    92 / 152 ms
      during the verification                   264 / 513 ms    107 / 197 ms    87 / 171 ms
    gunicorn processes' peak RSS, before/after  553 / 553 MB    553 / 553 MB    553 / 553 MB
    moto server's peak RSS                      2675 MB         2692 MB         2734 MB
    worker's peak RSS                           604 MB          604 MB          604 MB

No web thread holds the upload: each call takes at most about 2 s (the start signs the part
URLs, the complete records the ETags and queues the check) and the web processes' memory does
not move. The poll's latency rises while the parts go up, and that time is spent inside
gunicorn (its own median is 82-94 % of the client's): most likely waiting for one of the
two cores, which the uploading client and moto (Python, hashing every part) share with it;
at most one upload call is in flight at a time, against 40 threads. moto's 2.7 GB came with
the worker's GetObject (moto loads an object whole to answer; 0.64 GB after the join).

Run: .venv/bin/python benchmarks/storage.py [--repeats 3] [--upload-mb 64] [--direct-mb 512]
     .venv/bin/python benchmarks/storage.py --big-upload-mb 2048 [--idle-s 20]
Needs PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres), like `make test`, and for
--big-upload-mb Redis (CELERY_BROKER_URL) for the worker.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB = "mersv_bench_storage"
BUCKET = "mersv-bench"
GENERATORS: dict[str, dict[str, Any]] = {
    "default": {"n_clips": 6, "n_experts": 12, "seed": 3, "width": 400, "height": 300},
    "shifted": {"n_clips": 6, "n_experts": 12, "seed": 11, "width": 640, "height": 480,
                "n_frames": 30},
}  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------------------------
# The child: one storage mode, fresh database, prints one JSON line


def _median_time(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def child(args: argparse.Namespace) -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    import shutil
    import urllib.request

    from django.conf import settings
    from django.core.management import call_command
    from django.test import Client

    from annotation.access.accounts import user_create
    from annotation.ingest import services
    from annotation.models import Video
    from annotation.storage import MEDIA, is_local
    from datasets import services as dataset_services
    from simulator.synthetic import SyntheticConfig, generate_dataset

    call_command("migrate", "--noinput", verbosity=0)
    remote = not is_local(MEDIA)
    work = Path(settings.VAR_DIR)
    result: dict[str, Any] = {"mode": "object storage" if remote else "local"}

    # Upload: the web side's write of one file.
    blob = work / "upload.mp4"
    blob.write_bytes(b"\x00\x00\x00\x18ftypisom" + os.urandom(args.upload_mb * 1024 * 1024))

    def upload_once() -> None:
        with blob.open("rb") as f:
            services.video_create(
                fileobj=f, original_name="u.mp4", patient_code="P-up", pixel_size_um=0.5,
                uploaded_by=None, enqueue=False,
            )  # fmt: skip

    result["upload_mb_s"] = args.upload_mb / _median_time(upload_once, args.repeats)

    # Ingestion, per generator configuration, each video in a cold cache (another host).
    for label, knobs in GENERATORS.items():
        data = work / f"synthetic-{label}"
        generate_dataset(data, SyntheticConfig(**knobs))
        import pandas as pd

        rows = pd.read_csv(data / "clips.csv")
        times = []
        for i, row in enumerate(rows.itertuples()):
            with (data / row.video).open("rb") as f:
                video = services.video_create(
                    fileobj=f, original_name=Path(row.video).name, patient_code=f"P-{label}-{i}",
                    pixel_size_um=0.5, uploaded_by=None, enqueue=False,
                    targets=[services.Target(x=row.x, y=row.y, external_id=f"{label}-{i}")],
                )  # fmt: skip
            shutil.rmtree(Path(settings.CACHE_ROOT), ignore_errors=True)
            start = time.perf_counter()
            services.video_claim(video_id=video.pk)
            services.video_ingest(video_id=video.pk)
            times.append(time.perf_counter() - start)
            assert Video.objects.get(pk=video.pk).status == "ready"
        result[f"ingest_videos_s_{label}"] = 1 / statistics.median(times)

    # Export: import the default set (media to the storage), build a version.
    call_command("import_dataset", str(work / "synthetic-default"), "--no-progress")
    curator = user_create(username="bench-curator", role="curator", password="x" * 16)
    shutil.rmtree(Path(settings.CACHE_ROOT), ignore_errors=True)
    version = dataset_services.dataset_version_create(
        name="bench", created_by=curator, enqueue=False
    )
    start = time.perf_counter()
    dataset_services.dataset_version_build(version_id=version.pk)
    result["export_s"] = time.perf_counter() - start
    version.refresh_from_db()

    # Download: what a client receives, end to end.
    client = Client()
    client.force_login(curator)

    def download() -> int:
        answer = client.get(f"/datasets/{version.name}/download/")
        if answer.status_code == 302:
            location = answer["Location"]
            assert location.startswith("http://127.0.0.1:")
            with urllib.request.urlopen(location) as body:  # noqa: S310 (loopback)
                return len(body.read())
        assert answer.status_code == 200, answer.status_code
        chunks: Any = answer.streaming_content  # type: ignore[attr-defined]
        return sum(len(chunk) for chunk in chunks)

    size = download()
    result["archive_mb"] = size / 1e6
    result["download_mb_s"] = size / 1e6 / _median_time(download, args.repeats)

    # Web occupancy of one large upload.
    direct = work / "direct.mp4"
    with direct.open("wb") as f:
        f.write(b"\x00\x00\x00\x18ftypisom")
        for _ in range(args.direct_mb):
            f.write(os.urandom(1024 * 1024))
    size_bytes = direct.stat().st_size
    if not remote:
        # The form path: a web thread reads, stores and hashes the whole body.
        start = time.perf_counter()
        with direct.open("rb") as f:
            answer = client.post(
                "/videos/upload/",
                {"file": f, "patient_code": "P-big", "pixel_size_um": "0.5"},
                HTTP_ACCEPT="application/json",
            )
        busy = time.perf_counter() - start
        assert answer.status_code == 200, answer.content[:300]
        result["direct_web_busy_s"] = busy
        result["direct_wall_s"] = busy
    else:
        from concurrent.futures import ThreadPoolExecutor

        import boto3  # noqa: F401 (the parts go over plain HTTP, as from a browser)

        from annotation.ingest import services as direct_upload

        busy = 0.0
        wall_start = time.perf_counter()
        start = time.perf_counter()
        answer = client.post(
            "/api/uploads/",
            {"name": "big.mp4", "size": size_bytes, "patient_code": "P-big", "pixel_size_um": 0.5},
            content_type="application/json",
        )
        busy += time.perf_counter() - start
        body = answer.json()
        part_bytes = body["part_bytes"]

        def put(part: dict[str, Any]) -> dict[str, Any]:
            with direct.open("rb") as f:
                f.seek((part["part_number"] - 1) * part_bytes)
                chunk = f.read(part_bytes)
            request = urllib.request.Request(  # noqa: S310 (loopback)
                part["url"], data=chunk, method="PUT",
                headers={"Content-Type": "application/octet-stream"},
            )  # fmt: skip
            with urllib.request.urlopen(request) as reply:  # noqa: S310 (loopback)
                return {"part_number": part["part_number"], "etag": reply.headers["ETag"]}

        with ThreadPoolExecutor(3) as pool:  # as the page's script: three parts at a time
            parts = list(pool.map(put, body["parts"]))
        start = time.perf_counter()
        done = client.post(
            f"/api/uploads/{body['id']}/complete/", {"parts": parts},
            content_type="application/json",
        )  # fmt: skip
        busy += time.perf_counter() - start
        assert done.status_code == 202, done.content[:300]
        result["direct_wall_s"] = time.perf_counter() - wall_start
        result["direct_web_busy_s"] = busy
        # The worker's side (not a web thread): the verification pass over the object.
        from annotation.models import DirectUpload

        upload = DirectUpload.objects.get(token=body["id"])
        start = time.perf_counter()
        direct_upload.direct_upload_verify(upload_id=upload.pk)
        result["direct_verify_s"] = time.perf_counter() - start
        upload.refresh_from_db()
        assert upload.status == "ready", upload.error
    result["direct_mb"] = size_bytes / 1e6
    print("RESULT " + json.dumps(result), flush=True)


# --------------------------------------------------------------------------------------------
# --big-upload-mb: one large upload through presigned multipart against gunicorn, measured


def _proc_kb(pid: int, field: str) -> int:
    """VmRSS or VmHWM (peak resident memory) of a process, in kB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class _RssPeak(threading.Thread):
    """Samples the resident memory of some processes every 0.2 s; ``peak`` per pid (kB)."""

    def __init__(self, pids: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.pids, self.peak, self.stop = pids, dict.fromkeys(pids, 0), threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], _proc_kb(pid, "VmRSS"))


def _kind(method: str, path: str) -> str:
    """Which of the page's upload calls an access-log line is."""
    return "complete" if path.endswith("/complete/") else "start" if method == "POST" else "state"


def big_upload(args: argparse.Namespace) -> None:
    """The browser's way (create, presigned parts PUT to the S3 endpoint three at a time,
    complete, status polls) against gunicorn, while another client polls /api/videos/."""
    import hashlib
    import shutil
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    import boto3

    from benchmarks.grading_load import PASSWORD, HttpSession, database_reset, gunicorn_start

    # The tests' worker starter; imported by name, since mypy checks the product, not tests/.
    worker_running = importlib.import_module("tests.conftest").worker_running

    size_mb = args.big_upload_mb
    work = ROOT / "var" / "bench-bigupload"
    shutil.rmtree(work, ignore_errors=True)
    (work / "moto-tmp").mkdir(parents=True)
    (work / "worker").mkdir()
    url = f"postgres://postgres@127.0.0.1:5432/{DB}_big"
    database_reset(url)
    port, web_port = _free_port(), _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    keys = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench-secret"}
    env = {
        **os.environ, "DATABASE_URL": url, "MERSV_VAR_DIR": str(work / "web"),
        "DJANGO_SETTINGS_MODULE": "config.settings", "MERSV_LOG_LEVEL": "WARNING",
        "MERSV_STORAGE_URL": f"s3://{BUCKET}/big{os.getpid()}", "MERSV_S3_ENDPOINT_URL": endpoint,
        "MERSV_S3_ACCESS_KEY_ID": keys["aws_access_key_id"],
        "MERSV_S3_SECRET_ACCESS_KEY": keys["aws_secret_access_key"],
        # Its own queue: no other worker on this broker takes the verification.
        "MERSV_QUEUE_DEFAULT": f"bench-big-{os.getpid()}",
    }  # fmt: skip
    os.environ.update(env)
    # moto's standalone server in a process of its own (its memory measured alone), with the
    # multipart join through a file (benchmarks/moto_streaming.py: stock moto joins in memory
    # and ran out of it at 2 GiB). Parts and objects over 5 MB are spooled to TMPDIR.
    moto = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "moto_streaming.py"),
         "-H", "127.0.0.1", "-p", str(port)],
        env={**env, "TMPDIR": str(work / "moto-tmp")},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    server = worker = None
    stack = contextlib.ExitStack()
    try:
        for _ in range(100):
            with contextlib.suppress(Exception):
                boto3.client(
                    "s3", endpoint_url=endpoint, region_name="us-east-1", **keys
                ).create_bucket(Bucket=BUCKET)
                break
            time.sleep(0.2)
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env,
            check=True,
        )  # fmt: skip
        import django

        django.setup()
        from annotation.access.accounts import user_create
        from annotation.models import DirectUpload

        user_create(username="bench-curator", role="curator", password=PASSWORD)
        user_create(username="bench-poller", role="curator", password=PASSWORD)

        access_log = work / "access.log"
        server_env = {**env, "GUNICORN_CMD_ARGS": f"--access-logfile {access_log} "
                      "--access-logformat '%(m)s %(U)s %(s)s %(D)s'"}  # fmt: skip
        from benchmarks.grading_load import gunicorn_settings

        workers, threads = gunicorn_settings(workers=None, threads=None)
        server = gunicorn_start(port=web_port, env=server_env, workers=workers, threads=threads)
        worker_env = {**env, "MERSV_VAR_DIR": str(work / "worker")}
        worker = stack.enter_context(
            worker_running(worker_env, (env["MERSV_QUEUE_DEFAULT"],), work / "worker", "big")
        )

        # The file, streamed to disk with its SHA-256 (the client never holds it in memory).
        blob = work / "upload.mp4"
        digest = hashlib.sha256()
        with blob.open("wb") as f:
            head = b"\x00\x00\x00\x18ftypisom"
            f.write(head)
            digest.update(head)
            for _ in range(size_mb):
                chunk = os.urandom(1024 * 1024)
                f.write(chunk)
                digest.update(chunk)
        size_bytes = blob.stat().st_size

        uploader, poller = HttpSession(web_port), HttpSession(web_port)
        uploader.login("bench-curator")
        poller.login("bench-poller")
        web_pids = {"master": server.pid, **{f"w{p}": p for p in _children(server.pid)}}
        rss = _RssPeak({**web_pids, "moto": moto.pid, "worker": worker.pid})
        rss.start()

        phase = ["idle"]
        polls: dict[str, list[float]] = {"idle": [], "upload": [], "verify": []}
        stop = threading.Event()
        poll_errors: list[int] = []

        def poll() -> None:
            while not stop.is_set():
                t0 = time.perf_counter()
                status, _ = poller.request("GET", "/api/videos/")
                if status != 200:
                    poll_errors.append(status)
                polls[phase[0]].append(1000 * (time.perf_counter() - t0))
                stop.wait(0.2)

        # Where each phase's requests begin in gunicorn's access log.
        offsets = {"idle": access_log.stat().st_size}
        polling = threading.Thread(target=poll, daemon=True)
        polling.start()
        time.sleep(args.idle_s)
        hwm_before = {n: _proc_kb(p, "VmHWM") for n, p in web_pids.items()}
        offsets["upload"] = access_log.stat().st_size

        phase[0] = "upload"
        load_start = os.getloadavg()[0]
        wall_start = time.perf_counter()
        status, raw = uploader.request(
            "POST", "/api/uploads/",
            json.dumps({"name": "big.mp4", "size": size_bytes, "patient_code": "P-big",
                        "pixel_size_um": 0.5, "sha256": digest.hexdigest()}).encode(),
            "application/json",
        )  # fmt: skip
        assert status == 201, raw[:300]
        body = json.loads(raw)
        part_bytes = body["part_bytes"]

        def put(part: dict[str, Any]) -> dict[str, Any]:
            with blob.open("rb") as f:
                f.seek((part["part_number"] - 1) * part_bytes)
                chunk = f.read(part_bytes)
            request = urllib.request.Request(  # noqa: S310 (loopback)
                part["url"], data=chunk, method="PUT",
                headers={"Content-Type": "application/octet-stream"},
            )  # fmt: skip
            with urllib.request.urlopen(request, timeout=300) as reply:  # noqa: S310 (loopback)
                return {"part_number": part["part_number"], "etag": reply.headers["ETag"]}

        with ThreadPoolExecutor(3) as pool:  # as the page's script: three parts at a time
            parts = list(pool.map(put, body["parts"]))
        status, raw = uploader.request(
            "POST", f"/api/uploads/{body['id']}/complete/",
            json.dumps({"parts": parts}).encode(), "application/json",
        )  # fmt: skip
        assert status == 202, raw[:300]
        upload_wall = time.perf_counter() - wall_start
        phase[0] = "verify"
        offsets["verify"] = access_log.stat().st_size
        # The page's polls of the upload's state (1 s, then 1.5x up to 10 s) until ready.
        wait, state = 1.0, "verifying"
        while state == "verifying":
            time.sleep(wait)
            wait = min(wait * 1.5, 10)
            status, raw = uploader.request("GET", f"/api/uploads/{body['id']}/")
            state = json.loads(raw)["status"]
        to_video = time.perf_counter() - wall_start
        load_end = os.getloadavg()[0]
        stop.set()
        polling.join()
        time.sleep(0.5)  # the last request's log line
        offsets["end"] = access_log.stat().st_size
        rss.stop.set()
        rss.join()
        upload = DirectUpload.objects.get(token=body["id"])
        assert state == "ready" and upload.video is not None, upload.error
        assert upload.video.sha256 == digest.hexdigest()
        hwm_after = {n: _proc_kb(p, "VmHWM") for n, p in web_pids.items()}
        moto_hwm = _proc_kb(moto.pid, "VmHWM")
        worker_hwm = _proc_kb(worker.pid, "VmHWM")

        # The server's own time for the upload's API calls (gunicorn's %(D)s, microseconds).
        upload_calls = []
        poll_server_ms: dict[str, list[float]] = {}
        with access_log.open() as log:
            for name, end in (("idle", "upload"), ("upload", "verify"), ("verify", "end")):
                log.seek(offsets[name])
                lines = log.read(offsets[end] - offsets[name]).splitlines()
                poll_server_ms[name] = []
                for line in lines:
                    method, path, code, micros = line.split()
                    if path.startswith("/api/uploads/"):
                        upload_calls.append((method, path, code, int(micros) / 1e6))
                    elif path == "/api/videos/":
                        poll_server_ms[name].append(int(micros) / 1e3)
        worker_log = (work / "worker" / "worker.log").read_text()
        took = re.search(r"verify_direct_upload\[[^\]]+\] succeeded in ([0-9.]+)s", worker_log)
        if took is None:
            raise SystemExit(f"the worker did not log the verification: {worker_log[-2000:]}")
        verify_s = float(took[1])
    finally:
        stack.close()
        for proc in (server, moto):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(40)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        shutil.rmtree(work, ignore_errors=True)  # the 2 GB file, moto's spool, the caches
        database_reset(url, create=False)

    busy = sum(c[3] for c in upload_calls)
    print(f"machine load (1-min average) {load_start:.1f} at the upload's start, {load_end:.1f} "
          f"at the video's verification, on {os.cpu_count()} cores")  # fmt: skip
    print(f"{size_bytes / 2**20:.0f} MiB in {len(parts)} parts of {part_bytes / 2**20:.0f} MiB; "
          f"gunicorn {workers} processes x {threads} threads")  # fmt: skip
    print(
        f"upload (create .. complete) wall {upload_wall:.1f} s, "
        f"{size_bytes / 1e6 / upload_wall:.1f} MB/s; to a verified video {to_video:.1f} s"
    )
    kinds = Counter(_kind(m, p) for m, p, _, _ in upload_calls)
    assert all(c[2].startswith("2") for c in upload_calls), upload_calls
    assert not poll_errors, poll_errors
    print(
        f"web threads busy for it: {busy:.3f} s in {len(upload_calls)} API calls "
        f"({dict(kinds)}), {100 * busy / to_video:.3f} % of the wall time"
    )
    by_kind = {k: [1000 * t for m, p, _, t in upload_calls if _kind(m, p) == k] for k in kinds}
    print("  " + "; ".join(
        f"{k}: {len(v)} x, median {statistics.median(v):.0f} ms, longest {max(v):.0f} ms"
        for k, v in by_kind.items()
    ))  # fmt: skip
    print(f"verification in the worker (size, signature, SHA-256, join): {verify_s:.1f} s")
    for name in ("idle", "upload", "verify"):
        ms = polls[name]
        server_ms = poll_server_ms[name]
        print(f"poll GET /api/videos/ {name:<7} n={len(ms):>4}  "
              f"median {statistics.median(ms):6.1f} ms  p95 {_pct(ms, 0.95):6.1f} ms; "
              f"in gunicorn median {statistics.median(server_ms):6.1f} ms  "
              f"p95 {_pct(server_ms, 0.95):6.1f} ms")  # fmt: skip
    web_peak = max(hwm_after.values()) / 1024
    print(
        f"web processes' peak RSS (VmHWM): before {max(hwm_before.values()) / 1024:.0f} MB, "
        f"after {web_peak:.0f} MB (largest of {len(web_pids)}); sampled peak "
        f"{max(v for k, v in rss.peak.items() if k in web_pids) / 1024:.0f} MB"
    )
    print(
        f"moto server peak RSS {moto_hwm / 1024:.0f} MB; worker peak RSS {worker_hwm / 1024:.0f} MB"
    )


# --------------------------------------------------------------------------------------------
# The parent: a moto server, two children, one table


def _fresh_db() -> None:
    for sql in (f"DROP DATABASE IF EXISTS {DB}", f"CREATE DATABASE {DB}"):
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c", sql], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--upload-mb", type=int, default=64)
    parser.add_argument("--direct-mb", type=int, default=512)
    parser.add_argument(
        "--big-upload-mb", type=int, default=0,
        help="instead: one upload of this many MiB through presigned multipart against gunicorn",
    )  # fmt: skip
    parser.add_argument("--idle-s", type=float, default=20, help="idle polling before it (s)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.big_upload_mb:
        big_upload(args)
        return
    import boto3
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    keys = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench-secret"}
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **keys).create_bucket(
        Bucket=BUCKET
    )
    results = []
    try:
        for remote in (False, True):
            _fresh_db()
            with tempfile.TemporaryDirectory(prefix="bench-storage-") as var:
                env = dict(os.environ)
                env.update(
                    DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DB}",
                    MERSV_VAR_DIR=var,
                    DJANGO_SETTINGS_MODULE="config.settings",
                    # The local form path must accept the large upload it is measured with.
                    MERSV_MAX_UPLOAD_MB=str(args.direct_mb + 64),
                )
                env.pop("MERSV_STORAGE_URL", None)
                if remote:
                    env.update(
                        MERSV_STORAGE_URL=f"s3://{BUCKET}/run{os.getpid()}",
                        MERSV_S3_ENDPOINT_URL=endpoint,
                        MERSV_S3_ACCESS_KEY_ID=keys["aws_access_key_id"],
                        MERSV_S3_SECRET_ACCESS_KEY=keys["aws_secret_access_key"],
                    )
                done = subprocess.run(
                    [sys.executable, __file__, "--child", "--repeats", str(args.repeats),
                     "--upload-mb", str(args.upload_mb), "--direct-mb", str(args.direct_mb)],
                    cwd=ROOT, env=env, capture_output=True, text=True,
                )  # fmt: skip
                if done.returncode != 0:
                    print(done.stdout[-3000:], done.stderr[-5000:])
                    raise SystemExit(f"the {'object-storage' if remote else 'local'} run failed")
                line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
                results.append(json.loads(line[len("RESULT ") :]))
    finally:
        server.stop()
    local, s3 = results
    rows = [
        ("upload (video_create), MB/s", "upload_mb_s"),
        ("ingestion, default generator, videos/s", "ingest_videos_s_default"),
        ("ingestion, shifted generator, videos/s", "ingest_videos_s_shifted"),
        ("export (build of 6 clips), s", "export_s"),
        ("download of the archive, MB/s", "download_mb_s"),
        (f"web thread busy for a {s3['direct_mb']:.0f} MB upload, s", "direct_web_busy_s"),
        ("that upload's wall time, s", "direct_wall_s"),
    ]
    print(f"medians of {args.repeats} runs; archive {local['archive_mb']:.1f} MB")
    print(f"{'figure':<52}{'local':>12}{'object (moto)':>16}{'object/local':>14}")
    for label, key in rows:
        ratio = s3[key] / local[key] if local[key] else float("nan")
        print(f"{label:<52}{local[key]:>12.3f}{s3[key]:>16.3f}{ratio:>14.3f}")
    share = s3["direct_web_busy_s"] / s3["direct_wall_s"]
    print(
        f"presigned multipart: a web thread works {s3['direct_web_busy_s']:.3f} s of the "
        f"upload's {s3['direct_wall_s']:.1f} s ({100 * share:.2f} %); the worker's "
        f"verification pass (size, signature, SHA-256) takes {s3['direct_verify_s']:.1f} s"
    )


if __name__ == "__main__":
    main()
