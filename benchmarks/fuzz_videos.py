"""Fuzz the isolated ingestion with mutated videos: nothing a file does may kill the caller.

Makes a few small synthetic videos (MP4 mp4v, MP4 H.264, AVI MJPG), derives mutants from them
(tests/robustness/mutants.py: bit flips, truncation, header and box/chunk size corruption,
inserted, duplicated and zeroed ranges), and ingests each through
``annotation.ingest.isolation.process_video_isolated`` (two at a time) under the decode limits.
Prints how many were

- refused at upload (their first bytes are no MP4/AVI signature any more),
- decoded fine (clips written),
- refused with a clear error (IngestError from the pipeline: not a video, too short, lost),
- contained (the decoder crashed, ran out of CPU/memory or time: the child died, not us),
- unexpected (an error that is a bug in our code: should be 0),

and that this process stayed alive throughout.

    .venv/bin/python -m benchmarks.fuzz_videos --mutants 500 --seed 0
"""

from __future__ import annotations

import argparse
import collections
import os
import resource
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from annotation.ingest.isolation import DecodeLimits, process_video_isolated
from annotation.ingest.video_io import (
    IngestError,
    encode_h264_mp4,
    read_frames_gray,
    sniff_video_container,
)
from simulator.synthetic import SyntheticConfig, generate_dataset
from tests.robustness.mutants import mutants

CONTAINED_MARKERS = ("crashed", "took longer than", "of CPU time", "MB of memory", "stopped (exit")


def seed_videos(folder: Path) -> list[tuple[str, bytes, tuple[float, float]]]:
    """(name, bytes, target) of three small videos in different containers and codecs."""
    seeds = []
    for video_format in ("mp4", "avi"):
        out = folder / video_format
        config = SyntheticConfig(
            n_clips=6, n_experts=2, seed=3, width=400, height=300, n_frames=20,
            video_format=video_format,
        )  # fmt: skip
        generate_dataset(out, config)
        row = pd.read_csv(out / "clips.csv").iloc[0]
        path = out / row.video
        seeds.append((video_format, path.read_bytes(), (float(row.x), float(row.y))))
        if video_format == "mp4":
            h264 = folder / "h264.mp4"
            encode_h264_mp4(read_frames_gray(path, 20), h264, fps=15)
            seeds.append(("h264", h264.read_bytes(), (float(row.x), float(row.y))))
    return seeds


def classify(path: Path, target: tuple[float, float], out_dir: Path, limits: DecodeLimits) -> str:
    if sniff_video_container(path.read_bytes()[:12]) is None:
        return "refused at upload"
    try:
        process_video_isolated(
            path, [target], out_dir=out_dir, pixel_size_um=0.5, fps=15.0, limits=limits
        )
    except IngestError as exc:
        contained = any(marker in str(exc) for marker in CONTAINED_MARKERS)
        return f"contained: {exc}" if contained else "refused with a clear error"
    except Exception as exc:  # a bug of ours, not of the file
        return f"unexpected: {type(exc).__name__}: {exc}"
    return "decoded"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--mem-mb", type=int, default=2048)
    parser.add_argument("--cpu-s", type=int, default=120)
    parser.add_argument("--wall-s", type=int, default=60)
    args = parser.parse_args()
    limits = DecodeLimits(mem_mb=args.mem_mb, cpu_s=args.cpu_s, wall_s=args.wall_s)
    parent = os.getpid()
    with tempfile.TemporaryDirectory(prefix="mersv-fuzz-") as work:
        folder = Path(work)
        seeds = seed_videos(folder / "seeds")
        targets = {name: target for name, _, target in seeds}
        jobs = []
        for name, data in mutants(
            [(n, d) for n, d, _ in seeds], count=args.mutants, seed=args.seed
        ):
            path = folder / "mutants" / f"{name}.bin"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(data)
            jobs.append((name, path, targets[name.split("-")[1]]))
        start = time.perf_counter()
        with ThreadPoolExecutor(args.parallel) as pool:
            futures = [
                pool.submit(classify, path, target, folder / "out" / name, limits)
                for name, path, target in jobs
            ]
            outcomes = [f.result() for f in tqdm(futures, desc="mutants", unit="video")]
        elapsed = time.perf_counter() - start
    counts = collections.Counter(o.split(":")[0] for o in outcomes)
    contained = collections.Counter(o.split(": ", 1)[1] for o in outcomes if ": " in o)
    print(f"mutants tried: {len(outcomes)} from {len(seeds)} seed videos, {elapsed:.0f} s")
    for outcome in ("decoded", "refused at upload", "refused with a clear error", "contained"):
        print(f"  {outcome:28s} {counts.get(outcome, 0)}")
    print(f"  {'unexpected (bugs)':28s} {counts.get('unexpected', 0)}")
    for message, n in contained.most_common(8):
        print(f"    {n:4d} x {message[:110]}")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"parent process alive: {os.getpid() == parent} (peak RSS {peak_mb:.0f} MB)")


if __name__ == "__main__":
    main()
