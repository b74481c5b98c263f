"""Backup round trip: fill a fresh PostgreSQL database, back it up with docker/backup.sh,
restore with docker/restore.sh into a second fresh database and folder, and check that
nothing changed:

- every clip's grade distribution (the distributions table) and vote counts (a recount from
  the Rating rows changes no clip),
- every frozen dataset version's export: verify_export finds no problem, and its manifest
  (the SHA-256 of every exported file) is byte-identical,
- every media file (SHA-256 over MEDIA_ROOT).

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust) and pg_dump/pg_restore; makes and
drops its own databases mersv_backup_src and mersv_backup_dst.

    .venv/bin/python -m benchmarks.backup_roundtrip --clips 6
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG = "postgres://postgres@127.0.0.1:5432"


def psql(sql: str) -> None:
    subprocess.run(["psql", f"{PG}/postgres", "-qc", sql], check=True)


def site_env(db: str, var_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MERSV_", "DATABASE_"))}
    return {**env, "DATABASE_URL": f"{PG}/{db}", "MERSV_VAR_DIR": str(var_dir),
            "DJANGO_SETTINGS_MODULE": "config.settings"}  # fmt: skip


def run(command: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


def fingerprint() -> dict:
    """What must survive the round trip, read through the project's own code."""
    import django

    django.setup()
    from django.conf import settings

    from annotation.aggregation.selectors import distributions_csv_rows
    from annotation.ingest.services import clip_vote_counts_recount
    from annotation.models import Clip, Rating
    from datasets.export import MANIFEST_NAME, verify_export
    from datasets.models import DatasetVersion
    from datasets.services import export_dir_for

    media = hashlib.sha256()
    media_root = Path(settings.MEDIA_ROOT)
    for path in sorted(p for p in media_root.rglob("*") if p.is_file()):
        media.update(path.relative_to(media_root).as_posix().encode())
        media.update(hashlib.file_digest(path.open("rb"), "sha256").digest())
    exports = {}
    for version in DatasetVersion.objects.filter(frozen=True).order_by("name"):
        folder = export_dir_for(version)
        manifest = (folder / MANIFEST_NAME).read_bytes()
        exports[version.name] = {
            "problems": verify_export(folder),
            "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
        }
    return {
        "clips": Clip.objects.count(),
        "ratings": Rating.objects.count(),
        "distributions": list(distributions_csv_rows()),
        "recount_changed": clip_vote_counts_recount(),
        "exports": exports,
        "media_sha256": media.hexdigest(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--fingerprint", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fingerprint:
        print(json.dumps(fingerprint()))
        return
    from simulator.synthetic import SyntheticConfig, generate_dataset

    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="mersv-backup-") as work:
        work_dir = Path(work)
        src = site_env("mersv_backup_src", work_dir / "src")
        dst = site_env("mersv_backup_dst", work_dir / "dst")
        for db in ("mersv_backup_src", "mersv_backup_dst"):
            psql(f"DROP DATABASE IF EXISTS {db}")
            psql(f"CREATE DATABASE {db}")
        try:
            data = work_dir / "data"
            generate_dataset(
                data,
                SyntheticConfig(n_clips=args.clips, n_experts=12, seed=3, width=400, height=300,
                                n_frames=20),
            )  # fmt: skip
            run([py, "manage.py", "migrate", "--noinput", "-v", "0"], src)
            # A synthetic clip whose target the tracker loses is left out, as a curator would.
            run(
                [
                    py,
                    "manage.py",
                    "import_dataset",
                    str(data),
                    "--no-progress",
                    "--skip-untrackable",
                ],
                src,
            )
            run([py, "manage.py", "build_dataset", "backup-v1", "--no-progress"], src)
            before = json.loads(
                run([py, "-m", "benchmarks.backup_roundtrip", "--fingerprint"], src)
            )
            start = time.perf_counter()
            run(["bash", "docker/backup.sh", str(work_dir / "backup")], src)
            backup_s = time.perf_counter() - start
            size_mb = sum(f.stat().st_size for f in (work_dir / "backup").iterdir()) / 1e6
            start = time.perf_counter()
            run(["bash", "docker/restore.sh", str(work_dir / "backup")], dst)
            restore_s = time.perf_counter() - start
            after = json.loads(run([py, "-m", "benchmarks.backup_roundtrip", "--fingerprint"], dst))
        finally:
            for db in ("mersv_backup_src", "mersv_backup_dst"):
                psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    print(f"filled: {before['clips']} clips, {before['ratings']} ratings, "
          f"{len(before['exports'])} frozen dataset version(s)")  # fmt: skip
    print(f"backup {backup_s:.1f} s ({size_mb:.1f} MB), restore {restore_s:.1f} s")
    checks = {
        "clips and ratings": (before["clips"], before["ratings"])
        == (after["clips"], after["ratings"]),
        "distributions identical": before["distributions"] == after["distributions"],
        "recount changes no clip (after restore)": after["recount_changed"] == 0,
        "exports verify (verify_export)": all(not e["problems"] for e in after["exports"].values()),
        "export manifests identical": before["exports"] == after["exports"],
        "media files identical": before["media_sha256"] == after["media_sha256"],
    }
    for name, ok in checks.items():
        print(f"  {'ok ' if ok else 'FAIL'} {name}")
    if not all(checks.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
