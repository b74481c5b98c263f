"""Build and export a 615-clip dataset version: wall time and peak memory.

Targets (issue "Frozen dataset versions"): under 60 s and under 1 GB RSS on a 2-core machine.
The data: the synthetic generator's videos at the paper's size (cached in var/bench/), imported
through the real import path into a fresh PostgreSQL database; then `build_dataset` runs in a
child process whose peak RSS is read from the kernel (getrusage of the children), and
`export_dataset` writes a second copy that must be byte-identical.

Run: .venv/bin/python benchmarks/dataset_build.py [--clips 615] [--width 1392 --height 976]
Needs PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres), like `make test`.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)
    return time.perf_counter() - start


MEASURED = (
    "import resource, runpy, sys\n"
    "sys.argv = ['manage.py', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_path('manage.py', run_name='__main__')\n"
    "finally:\n"
    "    print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
)


def run_measured(args: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Wall time, the child's own peak RSS (KiB, read by the child at exit) and its output."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", MEASURED, *args], cwd=ROOT, env=env, check=True,
        capture_output=True, text=True,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    lines = done.stdout.splitlines()
    peak = next(int(line.split()[1]) for line in lines if line.startswith("PEAK"))
    return elapsed, peak, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=615)
    parser.add_argument("--width", type=int, default=1392)
    parser.add_argument("--height", type=int, default=976)
    parser.add_argument("--database", default="mersv_bench_dataset")
    args = parser.parse_args()

    from simulator.synthetic import SyntheticConfig, generate_dataset

    bench = ROOT / "var" / "bench"
    data = bench / f"synthetic-{args.clips}-{args.width}x{args.height}"
    if not (data / "ratings.csv").exists():
        print(f"generating {args.clips} synthetic videos into {data} (cached for next runs)")
        generate_dataset(
            data,
            SyntheticConfig(n_clips=args.clips, seed=11, width=args.width, height=args.height),
            progress=True,
        )
    var_dir = bench / "dataset-var"
    shutil.rmtree(var_dir, ignore_errors=True)
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{args.database}",
        MERSV_VAR_DIR=str(var_dir),
        OMP_NUM_THREADS="1",
    )
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", args.database])
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", args.database], check=True)
    run(["migrate", "--noinput", "-v", "0"], env)
    t_import = run(["import_dataset", str(data), "--no-progress", "--skip-untrackable"], env)
    t_build, peak_kib, built_text = run_measured(["build_dataset", "bench", "--no-progress"], env)
    out = bench / "dataset-export-copy"
    shutil.rmtree(out, ignore_errors=True)
    t_export = run(["export_dataset", "bench", "--out", str(out)], env)
    built = var_dir / "exports" / "bench"
    files = [p.relative_to(built) for p in built.rglob("*") if p.is_file()]
    identical = all(filecmp.cmp(built / f, out / f, shallow=False) for f in files)
    size = sum((built / f).stat().st_size for f in files)
    print()
    print(f"generated clips: {args.clips} ({args.width}x{args.height}, 16-frame 150x150 crops)")
    print(next(line for line in built_text.splitlines() if line.startswith("built ")))
    print(f"import (ingest + tracking of every video): {t_import:.1f} s")
    print(f"build_dataset (freeze + folds + export): {t_build:.1f} s   target < 60 s")
    print(f"build_dataset peak RSS: {peak_kib / 1024:.0f} MiB   target < 1024 MiB")
    print(f"export_dataset (rewrite from frozen rows): {t_export:.1f} s")
    print(f"export: {len(files)} files, {size / 1e6:.0f} MB; byte-identical rewrite: {identical}")


if __name__ == "__main__":
    main()
