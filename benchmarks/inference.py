"""Inference time per clip and parameter count of every backbone, like the paper's Table 8.

The paper measured at batch 8 on an Intel i9-10940X CPU. Here: a batch of ``--batch`` random
clips of 16 grey 150 x 150 frames (the platform's stored crops; each model selects, crops and
resizes them itself), ``--threads`` CPU threads, ``--repeats`` timed forward passes after
two warm-ups, in eval mode without gradients. It prints the median and the fastest run: on a
machine shared with other jobs the fastest is the better estimate of the model's own cost.

    .venv/bin/python benchmarks/inference.py --threads 2
    .venv/bin/python benchmarks/inference.py --presets small --backbones resnet slowfast
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from modeling.ml.backbones import BACKBONES
from modeling.ml.model import DEFAULT_KINEMATICS_FEATURES, build_model, count_parameters


def time_backbone(
    backbone: str, preset: str, *, batch: int, repeats: int, frames: int
) -> tuple[int, float, float]:
    """(parameters, median and fastest seconds per clip) of one backbone preset."""
    torch.manual_seed(0)
    model = build_model(
        backbone=backbone, preset=preset, n_kinematics_features=len(DEFAULT_KINEMATICS_FEATURES)
    ).eval()
    x = torch.rand(batch, frames, 1, 150, 150)  # (B, T, 1, H, W)
    speed = torch.rand(batch, len(DEFAULT_KINEMATICS_FEATURES)) * 100  # (B, k)
    seconds = []
    with torch.inference_mode():
        for _ in range(2):  # warm-up: allocations, kernel selection
            model(x, speed)
        for _ in range(repeats):
            started = time.perf_counter()
            model(x, speed)
            seconds.append(time.perf_counter() - started)
    return count_parameters(model), statistics.median(seconds) / batch, min(seconds) / batch


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--backbones", nargs="+", choices=BACKBONES, default=list(BACKBONES))
    parser.add_argument(
        "--presets", nargs="+", choices=("small", "paper"), default=["small", "paper"]
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    print(
        f"batch {args.batch}, {args.frames} frames of 150 x 150, {args.threads} CPU thread(s), "
        f"{args.repeats} runs, torch {torch.__version__}"
    )
    print(
        f"{'backbone':<12} {'preset':<6} {'parameters':>12} {'median ms/clip':>15} "
        f"{'fastest ms/clip':>16}"
    )
    for preset in args.presets:
        for backbone in args.backbones:
            n_params, median, fastest = time_backbone(
                backbone, preset, batch=args.batch, repeats=args.repeats, frames=args.frames
            )
            print(
                f"{backbone:<12} {preset:<6} {n_params:>12,} {median * 1000:>15.1f} "
                f"{fastest * 1000:>16.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
