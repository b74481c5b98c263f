"""The simulated expert panel: an ordinal model of how experts turn a clip's quality into a grade.

Each expert j sees a clip of latent quality z (higher is better) as ``z - severity_j + noise_j * e``
with ``e ~ N(0, 1)`` and cuts that on thresholds shared by the whole panel into E < D < C < B < A.
A harsh expert has a positive severity. The same model, fit to real votes, is the rater model of
`annotation.aggregation.rater_model`; here it generates votes with a known truth.

Plain numpy/scipy, no Django.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from annotation.grades import GRADES, N_GRADES

# Thresholds between E|D, D|C, C|B, B|A on the latent scale.
DEFAULT_THRESHOLDS: tuple[float, float, float, float] = (-1.5, -0.5, 0.5, 1.5)


@dataclass(frozen=True)
class Panel:
    """A panel of simulated experts."""

    rater_ids: tuple[str, ...]
    severity: np.ndarray  # (n_experts,), positive = grades harsher than the panel
    noise: np.ndarray  # (n_experts,), standard deviation of each expert's perception
    thresholds: np.ndarray  # (N_GRADES - 1,), increasing

    @property
    def n_experts(self) -> int:
        return len(self.rater_ids)


def panel_sample(
    *,
    n_experts: int = 40,
    rng: np.random.Generator,
    severity_sd: float = 0.35,
    noise_range: tuple[float, float] = (0.35, 0.9),
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS,
) -> Panel:
    """Draw a panel: each expert's severity ~ N(0, severity_sd), noise ~ U(noise_range)."""
    severity = rng.normal(0.0, severity_sd, size=n_experts)
    noise = rng.uniform(*noise_range, size=n_experts)
    return Panel(
        rater_ids=tuple(f"expert{j + 1:02d}" for j in range(n_experts)),
        severity=severity,
        noise=noise,
        thresholds=np.asarray(thresholds, dtype=float),
    )


def grade_probabilities(
    quality: np.ndarray, severity: np.ndarray, noise: np.ndarray, thresholds: np.ndarray
) -> np.ndarray:
    """P(grade) for every clip and expert: shape (n_clips, n_experts, 5), columns A..E.

    quality: (n_clips,); severity, noise: (n_experts,).
    """
    perceived = np.asarray(quality, dtype=float)[:, None] - np.asarray(severity)[None, :]
    # P(perceived + noise*e < t) for each threshold: (clips, experts, 4), increasing in t.
    below = norm.cdf((thresholds[None, None, :] - perceived[..., None]) / noise[None, :, None])
    cdf_from_e = np.concatenate(
        [np.zeros((*below.shape[:2], 1)), below, np.ones((*below.shape[:2], 1))], axis=-1
    )
    probs_e_to_a = np.diff(cdf_from_e, axis=-1)  # E, D, C, B, A
    return probs_e_to_a[..., ::-1]  # A..E


def panel_expected_distribution(quality: np.ndarray, panel: Panel) -> np.ndarray:
    """The panel's expected grade distribution per clip, (n_clips, 5): the best any predictor
    of this panel's normalised votes can do."""
    probs = grade_probabilities(quality, panel.severity, panel.noise, panel.thresholds)
    return probs.mean(axis=1)


def panel_votes(quality: np.ndarray, panel: Panel, *, rng: np.random.Generator) -> np.ndarray:
    """Every expert's grade index (0=A .. 4=E) for every clip: (n_clips, n_experts) int."""
    probs = grade_probabilities(quality, panel.severity, panel.noise, panel.thresholds)
    u = rng.random(probs.shape[:2])[..., None]
    return np.minimum((u > np.cumsum(probs, axis=-1)).sum(axis=-1), N_GRADES - 1)


__all__ = [
    "DEFAULT_THRESHOLDS",
    "GRADES",
    "Panel",
    "grade_probabilities",
    "panel_expected_distribution",
    "panel_sample",
    "panel_votes",
]
