"""How many expert votes adaptive retirement saves, and what it costs in accuracy.

Simulates the paper's scale with the synthetic generator (`simulator.synthetic.sample_labels`:
615 clips, a 40-expert panel of `simulator.panel`). Every expert grades every clip; the votes
of a clip arrive in a random expert order and the clip stops at its retirement
(`annotation.aggregation.retirement.retirement_decision`). Reported per setting, averaged over a few
simulated datasets:
  - votes saved: 1 - votes used / (clips x experts), against every expert rating every clip;
  - mean EMD between the stopped distribution and the full 40-vote distribution of the clip;
  - mean votes per clip and the share of clips that ran to max_votes.
The issue's target is votes saved >= 40% with mean EMD <= 0.01; the module constants of
`annotation.aggregation.retirement` are the setting chosen here.

Run: .venv/bin/python -m benchmarks.retirement
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from annotation.aggregation.distributions import emd, rating_arrays
from annotation.aggregation.retirement import (
    DEFAULT_MIN_VOTES,
    DEFAULT_PRIOR,
    DEFAULT_TOLERANCE,
    retirement_decision,
)
from annotation.grades import N_GRADES
from simulator.synthetic import SyntheticConfig, sample_labels

N_CLIPS = 615
N_EXPERTS = 40
SEEDS = (0, 1, 2, 3, 4)
TOLERANCES = (0.01, 0.015, 0.0165, 0.0175, 0.0185, 0.02, 0.025)
MIN_VOTES = (5, 10, 15)
TARGET_SAVED, TARGET_EMD = 0.40, 0.01


@dataclass(frozen=True)
class RetirementOutcome:
    votes_saved: float
    mean_emd: float
    mean_votes: float
    share_at_max: float


def votes_in_arrival_order(seed: int) -> np.ndarray:
    """Cumulative counts after each arriving vote: (clips, experts, 5); row v = first v+1 votes."""
    labels = sample_labels(config=SyntheticConfig(n_clips=N_CLIPS, n_experts=N_EXPERTS, seed=seed))
    ratings = rating_arrays(labels.ratings, rater_ids=labels.panel.rater_ids)
    grades = np.empty((ratings.n_clips, N_EXPERTS), dtype=np.int64)
    grades[ratings.clip_idx, ratings.rater_idx] = ratings.grade_idx  # every expert, every clip
    order = np.argsort(np.random.default_rng(seed).random(grades.shape), axis=1)
    arriving = np.take_along_axis(grades, order, axis=1)  # a random expert order per clip
    return np.cumsum(np.eye(N_GRADES, dtype=np.int64)[arriving], axis=1)


def retirement_outcome(
    cumulative: np.ndarray, *, tolerance: float, min_votes: int
) -> RetirementOutcome:
    """Stop every clip at its first settled prefix and compare with its full-panel votes."""
    n_clips, n_experts, _ = cumulative.shape
    settled = retirement_decision(
        cumulative,
        min_votes=min_votes,
        max_votes=n_experts,
        tolerance=tolerance,
        prior=DEFAULT_PRIOR,
    )  # (clips, experts); the last column is always True (max_votes)
    stop = np.argmax(settled, axis=1)  # index of the first settled prefix
    stopped = cumulative[np.arange(n_clips), stop]
    used = stop + 1
    full = cumulative[:, -1]
    return RetirementOutcome(
        votes_saved=1.0 - used.sum() / (n_clips * n_experts),
        mean_emd=float(emd(stopped / used[:, None], full / n_experts).mean()),
        mean_votes=float(used.mean()),
        share_at_max=float((used == n_experts).mean()),
    )


def main() -> None:
    started = time.perf_counter()
    panels = [votes_in_arrival_order(seed) for seed in SEEDS]
    print(
        f"{N_CLIPS} clips x {N_EXPERTS} experts, {len(SEEDS)} simulated datasets, "
        f"Dirichlet prior {DEFAULT_PRIOR}/grade; target saved >= {TARGET_SAVED:.0%}, "
        f"mean EMD <= {TARGET_EMD}"
    )
    print(
        f"{'min':>4} {'tol':>7} {'saved':>7} {'EMD':>8} {'worst EMD':>10} "
        f"{'votes':>6} {'at max':>7}"
    )
    for min_votes in MIN_VOTES:
        for tolerance in TOLERANCES:
            outcomes = [
                retirement_outcome(c, tolerance=tolerance, min_votes=min_votes) for c in panels
            ]
            saved = np.mean([o.votes_saved for o in outcomes])
            emds = [o.mean_emd for o in outcomes]
            marker = (
                " <- default"
                if (min_votes, tolerance) == (DEFAULT_MIN_VOTES, DEFAULT_TOLERANCE)
                else ""
            )
            meets = saved >= TARGET_SAVED and max(emds) <= TARGET_EMD
            print(
                f"{min_votes:>4} {tolerance:>7.4f} {saved:>7.1%} {np.mean(emds):>8.4f} "
                f"{max(emds):>10.4f} {np.mean([o.mean_votes for o in outcomes]):>6.1f} "
                f"{np.mean([o.share_at_max for o in outcomes]):>7.1%}"
                f"{' meets target' if meets else ''}{marker}"
            )
    print(f"done in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
