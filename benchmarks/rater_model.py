"""Does the fitted rater model recover the full panel's grade distribution from a few votes?

On data of the synthetic generator (`simulator.synthetic.sample_labels`: clip qualities as in
the generated datasets, a 40-expert panel of `simulator.panel`, the truth known) each of 300
clips gets only k votes, from k experts drawn at random (every expert still grades many
clips). The target is the panel's expected distribution (truth p_A..p_E), what an infinite
number of full-panel ratings would give. Compared, by mean EMD to that target:
  - raw: the clip's normalised votes;
  - corrected: the rater model's severity-corrected distribution (whole fitted panel,
    averaged over the clip's posterior of z);
  - typical rater: the model's distribution of one severity-0, mean-noise rater.
Also printed: the correlation of fitted with true severities, and the fit time of a full
615 x 40 panel.

Run: .venv/bin/python -m benchmarks.rater_model
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from annotation.aggregation.distributions import emd, grade_counts, rating_arrays
from annotation.aggregation.rater_model import rater_model_fit
from annotation.grades import PROB_COLUMNS
from simulator.synthetic import SyntheticConfig, sample_labels

N_EXPERTS = 40
N_CLIPS = 300
VOTES_PER_CLIP = (3, 5, 8)
SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class Validation:
    raw_emd: float
    corrected_emd: float
    typical_rater_emd: float
    severity_correlation: float
    fit_seconds: float


def rater_model_validation(
    *, votes_per_clip: int, seed: int, n_clips: int = N_CLIPS, n_experts: int = N_EXPERTS
) -> Validation:
    """Simulate one panel with `votes_per_clip` votes per clip, fit, and compare with truth."""
    labels = sample_labels(
        config=SyntheticConfig(
            n_clips=n_clips, n_experts=n_experts, seed=seed, votes_per_clip=votes_per_clip
        )
    )
    ratings = rating_arrays(
        labels.ratings,
        clip_ids=labels.truth_clips["clip_id"].tolist(),
        rater_ids=labels.panel.rater_ids,
    )
    clip_idx, rater_idx, grade_idx = ratings.clip_idx, ratings.rater_idx, ratings.grade_idx
    started = time.perf_counter()
    fit = rater_model_fit(clip_idx, rater_idx, grade_idx, n_clips=n_clips, n_raters=n_experts)
    fit_seconds = time.perf_counter() - started
    truth = labels.truth_clips[list(PROB_COLUMNS)].to_numpy()  # the panel's expectation
    raw = grade_counts(clip_idx, grade_idx, n_clips) / votes_per_clip
    return Validation(
        raw_emd=float(emd(raw, truth).mean()),
        corrected_emd=float(emd(fit.corrected_distribution(), truth).mean()),
        typical_rater_emd=float(
            emd(fit.corrected_distribution(reference="typical_rater"), truth).mean()
        ),
        severity_correlation=float(np.corrcoef(fit.severity, labels.panel.severity)[0, 1]),
        fit_seconds=fit_seconds,
    )


def main() -> None:
    print(
        f"{N_CLIPS} clips, {N_EXPERTS} experts, k random votes per clip, "
        f"mean over seeds {SEEDS}; EMD to the panel's expected distribution"
    )
    print(
        f"{'k':>3} {'raw EMD':>9} {'corrected':>10} {'improved':>9} "
        f"{'typical':>8} {'sev. corr':>9} {'fit s':>6}"
    )
    for k in VOTES_PER_CLIP:
        runs = [rater_model_validation(votes_per_clip=k, seed=seed) for seed in SEEDS]
        raw = np.mean([r.raw_emd for r in runs])
        corrected = np.mean([r.corrected_emd for r in runs])
        print(
            f"{k:>3} {raw:>9.4f} {corrected:>10.4f} {1 - corrected / raw:>9.1%} "
            f"{np.mean([r.typical_rater_emd for r in runs]):>8.4f} "
            f"{np.mean([r.severity_correlation for r in runs]):>9.3f} "
            f"{np.mean([r.fit_seconds for r in runs]):>6.2f}"
        )
    full = rater_model_validation(votes_per_clip=N_EXPERTS, seed=0, n_clips=615)
    print(
        f"full panel 615 x {N_EXPERTS}: fit {full.fit_seconds:.2f} s, raw EMD "
        f"{full.raw_emd:.4f}, corrected {full.corrected_emd:.4f}, "
        f"severity correlation {full.severity_correlation:.3f}"
    )


if __name__ == "__main__":
    main()
