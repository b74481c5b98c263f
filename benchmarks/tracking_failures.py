"""Tracking failures benchmark: does the tracker know when it fails?

Renders, in memory, sets of synthetic videos (`simulator.synthetic`), each staging one way
tracking fails around its target (``SyntheticConfig.failure_mode``): ``none``, a target that
``leaves_frame``, a ``static_cluster`` beside its path, a ``bright_neighbour`` at frame 0; the
same at the two higher magnifications (0.25 and 0.125 µm/px, heads of 18 and 37 px) for
``none``; and a *shifted* configuration of the generator that the tracker was never tuned on
(darker, noisier, blurrier field, faster cells, more distractors). Each target is tracked
from its true frame-0 position with the pixel size and frame rate, and per set the benchmark
prints

- ``silent``: the share of targets the tracker put more than half a head length off the truth
  in a frame it kept, without reporting a loss there - the failure an expert cannot see. It
  must be 0;
- ``lost``: the share reported lost, with the reasons (`annotation.ingest.tracking.LOSS_CODES`);
- ``early``: for ``leaves_frame``, the share reported lost no later than the first frame whose
  true position lies outside the image;
- the centre error (px) over the frames kept: median and mean.

``--baseline-tree DIR`` runs the tracker of another checkout (its
``annotation/ingest/tracking.py``, e.g. a worktree of main) on the same frames beside it, with
its own defaults (it may know nothing of pixel sizes).

Measured 2026-12-04 (16 videos per set, seed 0; all sets together, this tracker against
main's on the same frames): silent 2.5 % (4 of 160) against 37.5 % (60); lost 36.9 % against
29.4 %; centre error median 0.17 px against 0.21, mean 0.31 against 3.97. Every target that
leaves the frame is reported lost no later than the frame its true position leaves the image
(32 of 32; main: 0 of 32). The silent failures left: 3 in the shifted generator's static
cluster (a slow target that touches a still cell before that cell was ever seen apart from it,
and the track stays with the cell) and 1 at 0.25 µm/px. The loss rules' constants were
written before this benchmark existed; after its first run the rules (not the constants)
changed: a moving neighbour's old position stopped counting unless the match lands there the
next frame, a still one only when the track then stops with it, and one frame of a low score
is kept on probation - because the first version reported 2 of the 6 targets of the test
suite's small synthetic set lost while they were followed correctly.

After the crowding rule (`annotation.ingest.tracking`: a match that dips below its history
beside a still head, or drops by the score-drop rule beside another head, is ``ambiguous``;
a head that keeps its distance beside the target is its own midpiece; slightly dipped frames
just before a loss begin it), measured 2026-12-04 on the same sets (seed 0, machine loaded,
load average about 19 on 2 cores; wall time only): silent 0 of 160 (was 4), lost 42.5 %
(68, was 59), centre error median 0.17 px, mean 0.26 (was 0.31), early 32/32. By part: the
generator's default config at 0.5 µm/px lost 31 of 64 (was 29), the two higher
magnifications 4 of 32 (was 1), the shifted config 33 of 64 (was 29, with 3 silent); silent 0
in each. The constants (3 robust SDs, half of the score-drop rule's 6; 1.5 head lengths, the
frame-1 orientation scale) were written before the rule's first run; after it the rule (not
the constants) changed once: a neighbour at an unchanged distance stopped counting, because
the target's own midpiece (about a head length behind it) made a target of
``benchmarks.ingestion`` (c0011) and targets of the test suite's small synthetic set lost
while they were followed. With
partial success (issue 15) a target lost at frame 8 or later keeps a shorter clip.

    .venv/bin/python -m benchmarks.tracking_failures                  # 16 videos per set
    .venv/bin/python -m benchmarks.tracking_failures --videos 40 --baseline-tree /tmp/main
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np

from annotation.ingest import tracking
from simulator.synthetic import (
    SyntheticConfig,
    latents_sample,
    render_target_frames,
)

FPS = 15.0
FIELD_UM = (320.0, 240.0)  # the field of every video, whatever the magnification
N_FRAMES = 16


@dataclass(frozen=True)
class BenchSet:
    name: str
    config: SyntheticConfig


def bench_sets() -> list[BenchSet]:
    """The sets: every failure mode at 0.5 µm/px, ``none`` at the higher magnifications, and
    the shifted generator with each failure mode."""

    def config(pixel_size_um: float = 0.5, **changes: Any) -> SyntheticConfig:
        return SyntheticConfig(
            width=round(FIELD_UM[0] / pixel_size_um),
            height=round(FIELD_UM[1] / pixel_size_um),
            n_frames=N_FRAMES,
            fps=FPS,
            pixel_size_um=pixel_size_um,
            **changes,
        )

    # Shifted: a field the tracker never saw (dimmer, noisier, blurrier, more crowded, faster
    # and more vigorous cells).
    shifted: dict[str, Any] = {
        "background_level": 120.0,
        "noise_sd": 7.0,
        "blur": 0.9,
        "n_distractors": 8,
        "n_debris": 10,
        "motility_beta": (3.0, 1.0),
    }
    sets = [BenchSet(mode, config(failure_mode=mode)) for mode in _MODES]
    sets += [BenchSet(f"none@{p}", config(p)) for p in (0.25, 0.125)]
    sets += [BenchSet(f"shifted/{mode}", config(failure_mode=mode, **shifted)) for mode in _MODES]
    return sets


_MODES = ("none", "leaves_frame", "static_cluster", "bright_neighbour")


@dataclass
class Tally:
    targets: int = 0
    silent: int = 0
    lost: int = 0
    early: int = 0
    leaving: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    errors: list[float] = field(default_factory=list)

    def line(self) -> str:
        errors = np.array(self.errors) if self.errors else np.array([np.nan])
        text = (
            f"silent {self.silent / self.targets:6.1%} ({self.silent:2d})  "
            f"lost {self.lost / self.targets:6.1%}  "
            f"error px median {np.median(errors):.2f} mean {errors.mean():.2f}"
        )
        if self.leaving:
            text += f"  early {self.early}/{self.leaving}"
        if self.codes:
            text += "  [" + ", ".join(f"{c} {n}" for c, n in self.codes.most_common()) + "]"
        return text


Tracker = Callable[[np.ndarray, tuple[float, float], float], Any]


def current_tracker(frames: np.ndarray, start: tuple[float, float], pixel_size_um: float) -> Any:
    return tracking.track_target(frames, start, pixel_size_um=pixel_size_um, fps=FPS)


def baseline_tracker(tree: Path) -> Tracker:
    """``track_target`` of the checkout at ``tree``, called with the arguments it knows."""
    path = tree / "annotation" / "ingest" / "tracking.py"
    spec = importlib.util.spec_from_file_location("baseline_tracking", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"no tracker at {path}")
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    known = inspect.signature(module.track_target).parameters

    def run(frames: np.ndarray, start: tuple[float, float], pixel_size_um: float) -> Any:
        extra: dict[str, float] = {}
        if "pixel_size_um" in known:
            extra["pixel_size_um"] = pixel_size_um
        if "fps" in known:
            extra["fps"] = FPS
        return module.track_target(frames, start, **extra)

    return run


def judge(
    result: Any, truth: np.ndarray, head_px: float, size: tuple[int, int], tally: Tally
) -> None:
    """Add one target's outcome to ``tally``."""
    tally.targets += 1
    kept = len(result.centres) if result.lost_at is None else result.lost_at
    error = np.linalg.norm(result.centres[:kept] - truth[:kept], axis=1)
    tally.errors.extend(error.tolist())
    if (error > head_px / 2).any():
        tally.silent += 1
    if result.lost_at is not None:
        tally.lost += 1
        loss = getattr(result, "loss", None)
        tally.codes[loss.code if loss is not None else "lost"] += 1
    width, height = size
    outside = (truth[:, 0] < 0) | (truth[:, 0] > width - 1)
    outside |= (truth[:, 1] < 0) | (truth[:, 1] > height - 1)
    if outside.any():
        tally.leaving += 1
        if result.lost_at is not None and result.lost_at <= int(np.argmax(outside)):
            tally.early += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=16, help="videos per set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline-tree", type=Path, help="another checkout's tracker, beside")
    parser.add_argument("--only", help="run only the sets whose name contains this")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    trackers: dict[str, Tracker] = {"current": current_tracker}
    if args.baseline_tree is not None:
        trackers["baseline"] = baseline_tracker(args.baseline_tree.resolve())

    started = time.perf_counter()
    totals = {name: Tally() for name in trackers}
    for bench in bench_sets():
        if args.only and args.only not in bench.name:
            continue
        config = bench.config
        tallies = {name: Tally() for name in trackers}
        rng = np.random.default_rng([args.seed, len(bench.name)])
        motility, morphology = latents_sample(n=args.videos, config=config, rng=rng)
        head_px = config.head_length_um / config.pixel_size_um
        for index in range(args.videos):
            m = float(motility[index])
            if config.failure_mode == "leaves_frame":
                m = max(m, 0.6)  # only a swimming cell can leave
            rendered = render_target_frames(
                motility=m,
                morphology=float(morphology[index]),
                config=config,
                seed=args.seed * 10_000 + index,
            )
            start = (float(rendered.track[0, 0]), float(rendered.track[0, 1]))
            for name, track in trackers.items():
                result = track(rendered.frames, start, config.pixel_size_um)
                judge(result, rendered.track, head_px, (config.width, config.height), tallies[name])
        print(f"== {bench.name}  ({config.width}x{config.height}, {config.pixel_size_um} µm/px)")
        for name, tally in tallies.items():
            print(f"  {name:8s} {tally.line()}")
            total = totals[name]
            for key in ("targets", "silent", "lost", "early", "leaving"):
                setattr(total, key, getattr(total, key) + getattr(tally, key))
            total.codes += tally.codes
            total.errors += tally.errors
    print("== all sets")
    for name, total in totals.items():
        print(f"  {name:8s} {total.line()}")
    print(f"({time.perf_counter() - started:.0f} s)")
    current = totals["current"]
    print(f"{'PASS' if current.silent == 0 else 'FAIL'}  no silent failure (current tracker)")


if __name__ == "__main__":
    main()
