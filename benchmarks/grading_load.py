"""Grading under load: 40 simulated experts grading at once against gunicorn on loopback.

Creates a fresh PostgreSQL database (default `mersv_bench`), migrates it, adds 600 clips (with a
shared filmstrip) and 40 experts, and starts gunicorn on 127.0.0.1 as the lab deploys it
(config/gunicorn.py: 2 x cores + 1 sync workers; --workers and --threads override it). Each
simulated expert logs in through the login form, gets a clip (GET /api/grading/next/),
then loops "think, POST /api/grading/ratings/" for --seconds; like the grading page, the submit
asks for the next clip in its answer (`next: true`; --separate-next sends its own GET
/api/grading/next/ instead). Every vote the server acknowledged is logged. It prints

- p50 / p95 latency of one grading step (submit and next, what an expert waits for after
  pressing Enter), of each request alone, requests per second and gunicorn's CPU per request;
- p50 / p95 of a trivial page (GET /login/) under the same load, and the ratio of the step's
  p95 to it: absolute figures move with the machine, the ratio much less;
- lost or duplicated votes: every acknowledged vote is in the database exactly once, nothing
  unacknowledged is, and the vote counts on Clip equal a recount of the ratings;
- the grading page's time to the first visible frame in headless Chromium (median of
  --page-loads cold loads, each in a fresh browser context: empty cache, same login);

with the target p95 < 50 ms per grading step (issue 13; 40 experts, --think-ms 3000).

    .venv/bin/python -m benchmarks.grading_load --seconds 60
    .venv/bin/python -m benchmarks.grading_load --seconds 60 --think-ms 3000 --conn-max-age 60
    .venv/bin/python -m benchmarks.grading_load ... --workers 3 --threads 4   (threaded workers)

--think-ms is the mean pause before each vote (0: every expert grades flat out, a saturation
test); --conn-max-age sets DATABASE_CONN_MAX_AGE for gunicorn (60, as docker/compose.yml sets
it; 0, Django's default, opens a database connection per request).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-grading-passphrase"  # noqa: S105  throwaway accounts in a throwaway database
TARGET_P95_MS = 50.0
NEXT, RATINGS = "/api/grading/next/", "/api/grading/ratings/"


def database_reset(url: str, *, create: bool = True) -> None:
    """Drop the benchmark database named in `url` and, with create, make it afresh."""
    import psycopg
    from psycopg import sql

    parts = urllib.parse.urlsplit(url)
    name = parts.path.lstrip("/")
    if not name.startswith("mersv_bench"):
        raise SystemExit(f"refusing to drop {name!r}: the benchmark database must be mersv_bench*")
    server = urllib.parse.urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        if create:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def data_seed(*, n_clips: int, n_experts: int, n_frames: int) -> list[str]:
    """Clips on one READY video and expert accounts; returns the experts' user names."""
    import cv2
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group
    from django.db import connection

    from annotation.access.roles import EXPERT
    from annotation.ingest.kinematics import KINEMATICS_KEYS
    from annotation.models import Clip, Patient, Video

    size = settings.INGEST_CROP_SIZE
    strip = np.zeros((n_frames * size, size), np.uint8)
    for i in range(n_frames):  # grey, never black: the first-frame probe looks for light
        strip[i * size : (i + 1) * size] = 60 + 8 * i
        cv2.circle(strip, (size // 2 + i, i * size + size // 2), 12, 230, -1)
    media = Path(settings.MEDIA_ROOT) / "clips" / "bench"
    media.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(media / "filmstrip.png"), strip)
    np.save(media / "frames.npy", strip.reshape(n_frames, size, size))
    (media / "crop.mp4").write_bytes(b"stub")
    video = Video.objects.create(
        patient=Patient.objects.create(code="bench"),
        file="videos/bench.mp4",
        pixel_size_um=0.5,
        fps=15.0,
        width=1392,
        height=976,
        frame_count=n_frames,
        status=Video.Status.READY,
    )
    Clip.objects.bulk_create(
        Clip(
            video=video,
            external_id=f"bench-{i:04d}",
            target_index=i,
            start_x=100.0,
            start_y=100.0,
            track=[[100.0 + t, 100.0] for t in range(n_frames)],
            n_frames=n_frames,
            crop_size=size,
            frames_file="clips/bench/frames.npy",
            crop_file="clips/bench/crop.mp4",
            filmstrip_file="clips/bench/filmstrip.png",
            **Clip.kinematics_fields(dict.fromkeys(KINEMATICS_KEYS, 1.0)),
        )
        for i in range(n_clips)
    )
    # One password hash for every account: hashing 40 times would only slow the set-up.
    hashed = make_password(PASSWORD)
    names = [f"bench-expert-{i:02d}" for i in range(n_experts + 1)]  # the last one views pages
    User = get_user_model()
    users = User.objects.bulk_create(User(username=n, password=hashed) for n in names)
    Group.objects.get_or_create(name=EXPERT)[0].user_set.add(*users)
    with connection.cursor() as cursor:  # planner statistics, as autovacuum keeps them live
        cursor.execute("ANALYZE")
    return names


class HttpSession:
    """One keep-alive connection with cookies, like a browser tab's fetch()."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.reconnects = 0

    def request(
        self, method: str, path: str, body: bytes | None = None, ctype: str = ""
    ) -> tuple[int, bytes]:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        if "csrftoken" in self.cookies:
            headers["X-CSRFToken"] = self.cookies["csrftoken"]
        if ctype:
            headers["Content-Type"] = ctype
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body, headers)
                response = self.conn.getresponse()
                data = response.read()
                break
            except (ConnectionError, http.client.HTTPException):
                # The server closed the idle keep-alive connection: connect again. A retried
                # POST that had landed comes back as 409 naming the rating, never a 2nd vote.
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                self.reconnects += 1
                if attempt == 2:
                    raise
        for cookie in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = cookie.partition("=")
            self.cookies[name.strip()] = rest.split(";")[0]
        return response.status, data

    def login(self, username: str) -> None:
        self.request("GET", "/login/")
        form = {
            "username": username,
            "password": PASSWORD,
            "csrfmiddlewaretoken": self.cookies["csrftoken"],
        }
        status, _ = self.request(
            "POST",
            "/login/",
            urllib.parse.urlencode(form).encode(),
            "application/x-www-form-urlencoded",
        )
        if status != 302 or "sessionid" not in self.cookies:
            raise RuntimeError(f"login of {username} failed ({status})")


def trivial_probe(port: int, out: list[float], stop: threading.Event) -> None:
    """GET /login/ (a small template, no database work) twice a second until `stop`: the
    latency of a trivial page under the same load, to tell the machine from the code."""
    session = HttpSession(port)
    while not stop.is_set():
        t0 = time.perf_counter()
        status, _ = session.request("GET", "/login/")
        if status == 200:
            out.append(1000 * (time.perf_counter() - t0))
        stop.wait(0.5)


@dataclass
class ExpertLog:
    acknowledged: list[tuple[str, str, str, int]] = field(
        default_factory=list
    )  # user, clip, grade, id
    step_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    next_ms: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    requests: int = 0
    reconnects: int = 0
    queue_emptied: bool = False
    error: str = ""


def expert_simulate(
    username: str,
    *,
    port: int,
    start: threading.Barrier,
    deadline_s: float,
    think_s: float,
    separate_next: bool,
    seed: int,
) -> ExpertLog:
    """One expert: log in, then grade until the deadline. Like the grading page, the submit
    asks for the next clip in its answer (`next: true`); with separate_next it is fetched
    with its own GET /api/grading/next/ instead."""
    log = ExpertLog()
    rng = random.Random(seed)
    session = HttpSession(port)
    try:
        session.login(username)
        start.wait()
        deadline = time.monotonic() + deadline_s
        status, body = session.request("GET", NEXT)
        log.requests += 1
        clip = json.loads(body) if status == 200 else None
        while clip is not None and time.monotonic() < deadline:
            if think_s:
                time.sleep(rng.uniform(0.5, 1.5) * think_s)
            grade = rng.choice("ABCDE")
            vote = {
                "clip_id": clip["clip_id"],
                "grade": grade,
                "time_spent_ms": rng.randint(800, 9000),
                "telemetry": {"plays": 1, "frames_stepped": rng.randint(0, 12), "speeds_used": [1]},
                "next": not separate_next,
            }
            t0 = time.perf_counter()
            sub_status, sub_body = session.request(
                "POST", RATINGS, json.dumps(vote).encode(), "application/json"
            )
            t1 = time.perf_counter()
            log.requests += 1
            log.statuses[sub_status] += 1
            log.submit_ms.append((t1 - t0) * 1000)
            answer = json.loads(sub_body) if sub_body else {}
            if sub_status == 201:
                log.acknowledged.append((username, clip["clip_id"], answer["grade"], answer["id"]))
            elif sub_status == 409 and "rating_id" in answer:  # a retried POST that had landed
                log.acknowledged.append((username, clip["clip_id"], grade, answer["rating_id"]))
            if separate_next or sub_status != 201:
                status, body = session.request("GET", NEXT)
                log.requests += 1
                log.statuses[status] += 1
                log.next_ms.append((time.perf_counter() - t1) * 1000)
                clip = json.loads(body) if status == 200 else None
            else:
                clip = answer["next"]["clip"]
            log.step_ms.append((time.perf_counter() - t0) * 1000)
        log.queue_emptied = clip is None
    except Exception as exc:  # reported in the summary, never silently dropped
        log.error = f"{username}: {exc!r}"
    log.reconnects = session.reconnects
    return log


def gunicorn_settings(*, workers: int | None, threads: int | None) -> tuple[int, int]:
    """(workers, threads) gunicorn will use: the shipped config/gunicorn.py, unless given."""
    env = dict(os.environ)
    if workers:
        env["WEB_CONCURRENCY"] = str(workers)
    if threads:
        env["MERSV_WEB_THREADS"] = str(threads)
    code = (
        "import runpy; c = runpy.run_path('config/gunicorn.py'); print(c['workers'], c['threads'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    found, per = done.stdout.split()
    return int(found), int(per)


def gunicorn_start(
    *, port: int, env: dict[str, str], workers: int, threads: int
) -> subprocess.Popen:
    """gunicorn as the lab deploys it (config/gunicorn.py), on loopback."""
    env = {**env, "WEB_CONCURRENCY": str(workers), "MERSV_WEB_THREADS": str(threads)}
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py", "config.wsgi",
            "-b", f"127.0.0.1:{port}", "--keep-alive", "5", "--log-level", "warning",
        ],
        cwd=ROOT, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if HttpSession(port).request("GET", "/login/")[0] == 200:
                return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("gunicorn did not answer within 60 s")


def votes_check(logs: list[ExpertLog]) -> dict[str, int]:
    """Compare the clients' acknowledged votes with the database."""
    from annotation.ingest.services import clip_vote_counts_recount
    from annotation.models import Rating, RatingChange

    acked = [a for log in logs for a in log.acknowledged]
    in_db = {
        r["id"]: (r["rater__username"], r["clip__external_id"], r["grade"])
        for r in Rating.objects.values("id", "rater__username", "clip__external_id", "grade")
    }
    ack_ids = Counter(a[3] for a in acked)
    return {
        "acknowledged": len(acked),
        "in_database": len(in_db),
        "lost": sum(1 for user, clip, grade, pk in acked if in_db.get(pk) != (user, clip, grade)),
        "duplicated": sum(n - 1 for n in ack_ids.values() if n > 1)
        + len(in_db)
        - len(set(in_db.values())),
        "unacknowledged_in_db": len(set(in_db) - set(ack_ids)),
        "first_grade_rows_missing": len(in_db)
        - RatingChange.objects.filter(previous_grade="").count(),
        # Run last: it rewrites any count that differs from a recount and says how many.
        "clips_with_wrong_counts": clip_vote_counts_recount(),
    }


def first_frame_ms(*, port: int, username: str, loads: int) -> list[float]:
    """Milliseconds from navigation start to a non-black pixel on the player's canvas."""
    from playwright.sync_api import sync_playwright

    from tests.browser_support import chromium_launch

    base = f"http://127.0.0.1:{port}"
    times = []
    with sync_playwright() as playwright:
        browser = chromium_launch(playwright)
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{base}/login/")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", PASSWORD)
        page.press("input[name=password]", "Enter")
        page.wait_for_url(f"{base}/grade/")
        state = context.storage_state()
        context.close()
        for _ in range(loads):
            context = browser.new_context(storage_state=state)  # cold cache, same session
            page = context.new_page()
            page.goto(f"{base}/grade/", wait_until="commit")
            handle = page.wait_for_function(
                """() => {
                    const c = document.getElementById("crop-canvas");
                    if (!c || !c.width) return false;
                    const ctx = c.getContext("2d");
                    const px = ctx.getImageData(c.width / 2, c.height / 2, 1, 1).data;
                    return px[0] + px[1] + px[2] > 0 ? performance.now() : false;
                }""",
                polling="raf",
                timeout=30_000,
            )
            times.append(float(handle.json_value()))
            context.close()
        browser.close()
    return times


def server_cpu_s(master_pid: int) -> float:
    """CPU seconds (user + system) used so far by gunicorn's master and its workers."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(stat.parent.name), int(fields[1])
        if master_pid in (pid, ppid):
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def report(
    *,
    args: argparse.Namespace,
    logs: list[ExpertLog],
    elapsed: float,
    server_cpu: float,
    checks: dict[str, int],
    frames: list[float],
    trivial: list[float],
) -> bool:
    """Print the figures; True when no vote was lost or duplicated and no client failed."""
    steps = [x for log in logs for x in log.step_ms]
    statuses = sum((log.statuses for log in logs), Counter())
    requests = sum(log.requests for log in logs) + len(trivial)
    errors = [log.error for log in logs if log.error]
    how = "GET next apart" if args.separate_next else "next clip in the submit's answer"
    print(
        f"\ngunicorn {args.workers} workers x {args.threads} threads, "
        f"conn_max_age {args.conn_max_age}, {os.cpu_count()} CPU cores, loopback; {how}"
    )
    print(f"grading steps: {len(steps)} in {elapsed:.1f} s = {len(steps) / elapsed:.1f} votes/s")
    print(f"requests: {requests} = {requests / elapsed:.1f}/s; statuses {dict(statuses)}")
    print(f"gunicorn CPU: {1000 * server_cpu / max(requests, 1):.1f} ms per request")
    for label, values in (
        ("submit + next", steps),
        ("POST rating", [x for log in logs for x in log.submit_ms]),
        ("GET next", [x for log in logs for x in log.next_ms]),
    ):
        if not values:
            continue
        print(
            f"  {label:14s} p50 {_pct(values, 50):6.1f} ms   p95 {_pct(values, 95):6.1f} ms   "
            f"max {max(values, default=float('nan')):6.1f} ms"
        )
    if trivial:
        print(
            f"  {'trivial page':14s} p50 {_pct(trivial, 50):6.1f} ms   "
            f"p95 {_pct(trivial, 95):6.1f} ms   (GET /login/ twice a second, same load)"
        )
        print(f"  grading step p95 / trivial page p95: {_pct(steps, 95) / _pct(trivial, 95):.1f}")
    p95 = _pct(steps, 95)
    verdict = "met" if p95 < TARGET_P95_MS else "NOT met"
    print(f"target p95 < {TARGET_P95_MS:g} ms per grading step: {verdict} ({p95:.1f} ms)")
    print("votes: " + ", ".join(f"{k} {v}" for k, v in checks.items()))
    ok = checks["lost"] == checks["duplicated"] == checks["unacknowledged_in_db"] == 0
    ok = ok and checks["clips_with_wrong_counts"] == checks["first_grade_rows_missing"] == 0
    print(f"zero lost or duplicated votes, counts equal a recount: {'yes' if ok else 'NO'}")
    print(
        f"keep-alive reconnects: {sum(log.reconnects for log in logs)}; "
        f"experts whose queue emptied: {sum(log.queue_emptied for log in logs)}"
    )
    if errors:
        print("client errors:\n  " + "\n  ".join(errors[:10]))
    if frames:
        print(
            f"first visible frame of /grade/ (cold cache, idle server): median "
            f"{statistics.median(frames):.0f} ms over {len(frames)} loads "
            f"({', '.join(f'{f:.0f}' for f in frames)})"
        )
    return ok and not errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the load phase")
    parser.add_argument("--experts", type=int, default=40)
    parser.add_argument("--clips", type=int, default=600)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--think-ms", type=float, default=0.0, help="mean pause before each vote")
    parser.add_argument(
        "--separate-next", action="store_true", help="GET next apart from the submit"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="gunicorn processes (config/gunicorn.py's)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="threads per process (config/gunicorn.py's)"
    )
    parser.add_argument("--page-loads", type=int, default=5)
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/mersv_bench"
        ),
    )
    parser.add_argument(
        "--conn-max-age", type=int, default=60, help="DATABASE_CONN_MAX_AGE for gunicorn"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the database and var/bench-grading"
    )
    args = parser.parse_args()

    var_dir = ROOT / "var" / "bench-grading"
    shutil.rmtree(var_dir, ignore_errors=True)
    env = {
        **os.environ,
        "DATABASE_URL": args.database_url,
        "MERSV_VAR_DIR": str(var_dir),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_CONN_MAX_AGE": str(args.conn_max_age),
        "MERSV_LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    t0 = time.perf_counter()
    database_reset(args.database_url)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    import django

    django.setup()
    names = data_seed(n_clips=args.clips, n_experts=args.experts, n_frames=args.frames)
    experts, viewer = names[:-1], names[-1]
    print(
        f"set up {args.clips} clips and {args.experts} experts in {time.perf_counter() - t0:.1f} s"
    )

    args.workers, args.threads = gunicorn_settings(workers=args.workers, threads=args.threads)
    port = _free_port()
    server = gunicorn_start(port=port, env=env, workers=args.workers, threads=args.threads)
    try:
        start = threading.Barrier(len(experts) + 1)
        logs: list[ExpertLog] = [ExpertLog() for _ in experts]

        def run(i: int) -> None:
            logs[i] = expert_simulate(
                experts[i], port=port, start=start, deadline_s=args.seconds,
                think_s=args.think_ms / 1000, separate_next=args.separate_next, seed=i,
            )  # fmt: skip

        trivial: list[float] = []
        stop = threading.Event()
        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(experts))]
        probe = threading.Thread(target=trivial_probe, args=(port, trivial, stop))
        for t in threads:
            t.start()
        start.wait()
        probe.start()
        began, cpu_before = time.perf_counter(), server_cpu_s(server.pid)
        print(f"{len(experts)} experts grading for {args.seconds:g} s, think {args.think_ms:g} ms")
        for t in threads:
            t.join()
        stop.set()
        probe.join()
        elapsed = time.perf_counter() - began
        server_cpu = server_cpu_s(server.pid) - cpu_before
        frames = first_frame_ms(port=port, username=viewer, loads=args.page_loads)
    finally:
        server.terminate()
        server.wait(timeout=30)

    checks = votes_check(logs)
    ok = report(
        args=args, logs=logs, elapsed=elapsed, server_cpu=server_cpu, checks=checks, frames=frames,
        trivial=trivial,
    )  # fmt: skip

    if not args.keep:
        from django.db import connections

        connections.close_all()
        database_reset(args.database_url, create=False)
        shutil.rmtree(var_dir, ignore_errors=True)
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
