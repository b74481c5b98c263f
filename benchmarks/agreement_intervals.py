"""The dashboard's agreement intervals: cost and coverage of the Fleiss' kappa bootstrap.

Plain numpy on simulated panels (`simulator.panel`), no database. For each configuration:

- the median time of `fleiss_kappa_interval` with the dashboard's 1,000 resamples (two matrix
  products), side by side with a naive loop that rebuilds each resample's clips and recomputes
  kappa, and with `krippendorff_alpha`'s interval (the dashboard computes both);
- the interval's width, and its coverage: over `--replicates` fresh draws of clips for one
  fixed panel, how often the 95% interval holds the panel's kappa on a very large draw of
  clips (200,000), which stands in for the true value. A percentile bootstrap over clips
  should cover about 95%.

Configurations: the paper's scale (615 clips, every one graded by 40 experts) and a shifted
one (2,000 clips, 7 experts with twice the severity spread and more noise, 30% of the votes
missing).

    .venv/bin/python -m benchmarks.agreement_intervals --runs 5 --replicates 200
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from annotation.aggregation.agreement import (
    bootstrap_weights,
    fleiss_kappa,
    fleiss_kappa_interval,
    krippendorff_alpha,
)
from annotation.aggregation.distributions import grade_counts
from simulator.panel import Panel, panel_sample, panel_votes

N_RESAMPLES = 1000  # the dashboard's (frontend.aggregation_views.DASHBOARD_BOOTSTRAP)
TRUTH_CLIPS = 200_000


@dataclass(frozen=True)
class Config:
    name: str
    n_clips: int
    n_experts: int
    severity_sd: float
    noise_range: tuple[float, float]
    missing: float


CONFIGS = (
    Config("paper: 615 clips x 40 experts", 615, 40, 0.35, (0.35, 0.9), 0.0),
    Config("shifted: 2000 clips x 7 experts, 30% missing", 2000, 7, 0.7, (0.6, 1.4), 0.3),
)


def draw(
    config: Config, panel: Panel, n_clips: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clip_idx, rater_idx, grade_idx) of n_clips fresh clips graded by the panel."""
    votes = panel_votes(rng.normal(size=n_clips), panel, rng=rng)  # (clips, experts)
    kept = rng.random(votes.shape) >= config.missing
    clip_idx, rater_idx = np.nonzero(kept)
    return clip_idx, rater_idx, votes[clip_idx, rater_idx]


def naive_interval(counts: np.ndarray, *, n_resamples: int, seed: int) -> tuple[float, float]:
    """The same resamples, one kappa at a time on the repeated clips."""
    pairable = counts[counts.sum(axis=1) >= 2]
    weights = bootstrap_weights(len(pairable), n_resamples=n_resamples, seed=seed)
    kappas = [fleiss_kappa(np.repeat(pairable, row, axis=0)) for row in weights]
    low, high = np.quantile(kappas, [0.025, 0.975])
    return float(low), float(high)


def median_seconds(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(config: Config, *, runs: int, replicates: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    panel = panel_sample(
        n_experts=config.n_experts,
        rng=rng,
        severity_sd=config.severity_sd,
        noise_range=config.noise_range,
    )
    clip_idx, rater_idx, grade_idx = draw(config, panel, config.n_clips, rng)
    counts = grade_counts(clip_idx, grade_idx, config.n_clips)

    estimate = fleiss_kappa_interval(counts, n_resamples=N_RESAMPLES, seed=0)
    naive = naive_interval(counts, n_resamples=N_RESAMPLES, seed=0)
    assert np.allclose(naive, (estimate.ci_low, estimate.ci_high)), "naive and fast disagree"
    vectorised_s = median_seconds(
        lambda: fleiss_kappa_interval(counts, n_resamples=N_RESAMPLES, seed=0), runs
    )
    naive_s = median_seconds(lambda: naive_interval(counts, n_resamples=N_RESAMPLES, seed=0), runs)
    alpha_s = median_seconds(
        lambda: krippendorff_alpha(
            clip_idx,
            rater_idx,
            grade_idx,
            n_clips=config.n_clips,
            n_raters=config.n_experts,
            n_resamples=N_RESAMPLES,
        ),
        runs,
    )

    # Coverage: the panel's kappa on a very large draw of clips is the value to cover.
    big = draw(config, panel, TRUTH_CLIPS, rng)
    truth = fleiss_kappa(grade_counts(big[0], big[2], TRUTH_CLIPS))
    covered, widths = 0, []
    for r in range(replicates):
        c, _, g = draw(config, panel, config.n_clips, rng)
        e = fleiss_kappa_interval(
            grade_counts(c, g, config.n_clips), n_resamples=N_RESAMPLES, seed=r
        )
        covered += e.ci_low <= truth <= e.ci_high
        widths.append(e.ci_high - e.ci_low)

    print(f"{config.name}  ({len(grade_idx)} votes, {estimate.n_clips_pairable} pairable clips)")
    print(
        f"  Fleiss kappa {estimate.kappa:.3f}, 95% CI {estimate.ci_low:.3f} - "
        f"{estimate.ci_high:.3f} (width {estimate.ci_high - estimate.ci_low:.3f})"
    )
    print(f"  median of {runs} runs, {N_RESAMPLES} resamples:")
    print(f"    kappa interval, matrix products  {vectorised_s * 1000:8.1f} ms")
    print(
        f"    kappa interval, naive loop       {naive_s * 1000:8.1f} ms"
        f"   ({naive_s / vectorised_s:.0f}x slower)"
    )
    print(f"    alpha interval (for scale)       {alpha_s * 1000:8.1f} ms")
    print(
        f"  coverage over {replicates} replicates: {covered / replicates:.1%} of the 95% "
        f"intervals hold kappa = {truth:.4f} (of {TRUTH_CLIPS} clips); median width "
        f"{statistics.median(widths):.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    for config in CONFIGS:
        run(config, runs=args.runs, replicates=args.replicates, seed=args.seed)


if __name__ == "__main__":
    main()
