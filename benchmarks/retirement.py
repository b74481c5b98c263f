"""How many expert votes adaptive retirement saves, and what it costs in accuracy and utility.

Simulates the paper's scale with the synthetic generator (`simulator.synthetic.sample_labels`:
615 clips, a 40-expert panel of `simulator.panel`, 5 seeds). Every expert grades every clip;
the votes of a clip arrive in a random expert order and the clip stops at its retirement
(`annotation.aggregation.retirement.rule_decision`, the rule the platform runs). Compared
side by side:

  - current: today's rule (own votes, Jeffreys prior, tolerance 0.0175, >= 10 votes);
  - fixed: a fixed 22 votes per clip;
  - prior only: the model's out-of-fold prediction as m * q pseudo-votes;
  - rater-aware only: votes severity-corrected and weighted by each expert's fitted noise;
  - both.

The prior: the project's small model's head (`modeling.ml` EMD loss, a hidden layer of 64,
AdamW at the head's rate 6e-3, weight decay 0.05, early stopping on an inner 20 % split)
trained with 3-fold cross-validation on each clip's full-panel distribution; its features are
the WHO kinematics (`annotation.ingest.kinematics`) of the clip's simulated head track and the
head's measured outline (area, length, width, roughness, vacuoles). They come from the
simulator's cells and tracks, not from rendered pixels: rendering and training the video
model on 5 x 615 clips does not fit a shared 2-core machine. Out-of-fold predictions are
cached under var/bench/retirement/ (delete the folder to retrain). m is fitted for the
clips of each fold on the other folds' full panels (`prior_weight_fit`).
The rater model (`annotation.aggregation.rater_model`) is fitted on an earlier batch of 300
other clips that the same 40 experts graded in full (a lab's history), never on the votes
being retired.

Reported per rule, over the 5 seeds: votes saved (1 - votes used / clips x experts), mean and
p95 EMD of the stopped distribution ((m q + weighted votes) / (m + weights); the raw votes for
current and fixed) to the full 40-vote panel and to the simulator's expected distribution.
Then the curve of votes saved against model quality (the prior mixed with random
distributions), the utility check, and the same rows on a shifted generator configuration.

The utility check (design fixed before its first paired run):
  - Labels: what a dataset version would carry for a retired clip. The build
    (`datasets.services._freeze`) exports each clip's raw vote shares over its Rating rows, so
    the retired arm trains on the raw shares of the votes cast up to the stop, never the rule's
    weighted or prior-mixed posterior (training on the model's own prior would be circular);
    the full arm on the 40-vote shares.
  - Pairing: per panel seed, UTILITY_REPEATS = 4 model seeds; the two arms of one repeat share
    the initialisation, every fold's inner split and the batch order (`model_predictions`
    with paired=True), so a difference is the labels' and not the training noise's.
  - Score: HI (histogram intersection) with the full panel on the held-out fold, as the share of
    the gap closed between the training folds' full-panel mean distribution (0) and the
    simulator's expected distribution (1); the same ends for both arms.
  - Reported: the mean difference over the 5 x 4 pairs, its standard error and 95 % t interval
    (also with the panel seed as the unit, the more cautious one: repeats share a panel's
    labels); the target is met when the mean lies within 1 point, and the line says whether
    the interval excludes -1. Today's rule is the reference arm. Then the mode guard's rows at
    the chosen tolerance and discount, and where the HI is lost, by votes used.

Choosing the defaults: first the rule without a prior (rater-aware; what holds with no run
or m = 0), the tolerance x mode guard with the most votes saved whose worst seed meets the
target (mean EMD <= 0.010 and p95 <= 0.03 to the full panel); then, at that tolerance, the
prior discount x mode guard that saves most while meeting it.

Measured 2026-12-06 (2 CPU cores shared with five other sessions, load average 13-17; the
grid and curve about 20 min, priors rebuilt), default generator, 5 seeds (saved, mean / p95
EMD to the full panel, mean EMD to the expected):

    today's rule (own votes, 0.0175)     44.7 %  0.0085 / 0.0265  0.0170
    fixed 22 votes                       45.0 %  0.0079 / 0.0228  0.0162
    prior only (discount 0.5)            57.3 %  0.0093 / 0.0283  0.0133
    rater-aware only                     47.9 %  0.0078 / 0.0233  0.0119
    both (the defaults)                  53.8 %  0.0080 / 0.0234  0.0105
    (the full panel to the expected: 0.0083)

(2026-12-04 gave 54.1 % for both and chose discount 0.25 for prior only, whose discount-0.5
row now meets the target at a worst seed of 0.0099.) Curve: prior EMD 0.033 -> 53.8 %,
0.057 -> 49.4 %, >= 0.13 (m = 0) -> 47.9 %. Shifted generator, measured 2026-12-04 and not
re-run (the rule did not change): today's 45.1 % (0.0085 / 0.0287), both 57.8 % (0.0083 /
0.0249).

Mode guard at the chosen tolerance and discount: 1.0 (off) 53.8 %, stopped mode = full-panel
mode for 82.8 % of clips; 0.5: 53.6 %, 83.3 %; 0.3: 46.5 %, 88.8 % (all meet the EMD
targets). Off is chosen by the grid's rule (most saved while meeting the targets); 0.3 buys
6 points of mode agreement for 7 points of saving and falls below the 52 % target.

Utility (`--utility-only --jobs 2`, 1600 s at that load), the defaults vs full-panel labels:
-1.69 points of HI gap closed (SE 0.24, 95 % CI -2.20..-1.18 over 20 pairs; seed as unit
-2.08..-1.30), per seed -2.1, -1.6, -1.9, -1.3, -1.6; test EMD +0.0021. Today's rule (44.7 %
saved): -1.46 (SE 0.26, CI -2.00..-0.92). The 1-point target is NOT met, and the interval
does not exclude -1. The loss is spread evenly over the held-out clips (by the clip's votes
used: 15-19 votes 0.41, 20-29 votes 0.55 points HI each): the model trained on labels of
about 18 votes is worse everywhere, not on a few clips the rule stopped too early. As even
today's rule (fewer votes saved) loses more than a point, no tolerance that keeps 52 % saved
would meet it (an inference, not measured); the likely remedy is a better label for retired
clips (e.g. a rater-corrected, votes-only posterior mean in the export), not a rule default.
(Earlier unpaired runs: -1.28, -1.78, -1.61; those gaps were measured between each arm's own
training-label mean, not one common baseline.)


The prior from the project's own video model (``--prior-file``, issue 19): the out-of-fold
predictions written by benchmarks/retirement_pixel.py. One rendered video set (615 clips of
generator seed 21, 640 x 480, 16 frames) imported through `manage.py import_dataset
--skip-untrackable` (572 clips tracked), a 3-fold version, and `manage.py train` (small
TimeSformer + kinematics + morphometry head, EMD, the documented settings) on the set's own
votes, a separate draw by the same panel. Here the 5 seeds are 5 panel seeds on ONE clip set
(new votes by the same 40 experts in a new order, the rater model's history 300 other clips
per seed), not 5 clip sets as above, so that the model's clips are the retired clips; no
seed's votes reach its prior. The 43 clips the tracker lost have no prediction: m = 0 (both
priors). The feature head above, trained on the same clips, folds and votes, is the
comparison. The rules stand at the platform's defaults (tolerance 0.0175, discount 0.25,
guard off), not re-chosen on this table.

Measured 2026-12-06 (2 CPU cores shared by 6 helpers, load 10-17): training 28.1 min at AT
MOST 4 EPOCHS, patience 2 (the documented 40 would take hours at ~90-160 s per epoch here):
out-of-fold HI 0.808, EMD 0.061, 65.5 % of the HI gap closed. Then
`.venv/bin/python -m benchmarks.retirement --prior-file var/bench/retirement/pixel-prior.npz`
(3.0 min, load 11), 5 panel seeds (saved, mean / p95 EMD to the full panel, mean EMD to the
expected):

    prior's EMD to the full panel: video model 0.0605 (m 5.0-6.0), feature head 0.0335 (m 10-12)
    today's rule (own votes, 0.0175)     47.3 %  0.0087 / 0.0282  0.0169
    fixed 22 votes                       45.0 %  0.0074 / 0.0223  0.0153
    rater-aware only                     49.0 %  0.0071 / 0.0216  0.0109
    prior only, feature head             52.9 %  0.0086 / 0.0265  0.0148
    prior only, video model              49.7 %  0.0084 / 0.0265  0.0156
    both, feature head                   54.4 %  0.0075 / 0.0223  0.0099
    both, video model                    51.3 %  0.0073 / 0.0215  0.0104
    (the full panel to the expected: 0.0079)

The 4-epoch video model is the weaker prior (its EMD is about the feature head's mixed with
10 % noise in the curve above) and misses the 52 % target at the default discount; at
discount 0.5 (shown for context, not chosen on it) it saves 53.7 % (0.0078 / 0.0237, worst seed
0.0082 / 0.0252). Curve ("both", defaults; the video model's prior mixed with the expected
distribution, or with noise): prior EMD 0.0079 -> 70.0 %, 0.0111 -> 68.9 %, 0.0209 -> 58.4 %,
0.0374 -> 53.4 %, 0.0605 (the model) -> 51.3 %, 0.0822 -> 49.5 %, 0.155 (m = 0) -> 49.0 %.

Run: .venv/bin/python -m benchmarks.retirement [--quick] [--utility-only] [--jobs N]
     [--prior-file FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from annotation.aggregation.distributions import emd, rating_arrays
from annotation.aggregation.rater_model import RaterModelFit, rater_model_fit
from annotation.aggregation.retirement import (
    DEFAULT_MIN_VOTES,
    DEFAULT_MODE_GUARD,
    DEFAULT_PRIOR_DISCOUNT,
    DEFAULT_TOLERANCE,
    RetirementRule,
    prior_weight_fit,
    rater_adjusted_votes,
    rule_decision,
)
from annotation.grades import N_GRADES, PROB_COLUMNS
from annotation.ingest.kinematics import kinematics
from modeling.ml.losses import emd_loss
from simulator.panel import panel_votes
from simulator.synthetic import (
    Bounds,
    SyntheticConfig,
    SyntheticLabels,
    _rng,
    cell_sample,
    cell_track_sample,
    clip_ids,
    latents_sample,
    sample_labels,
)

N_CLIPS = 615
N_EXPERTS = 40
SEEDS = (0, 1, 2, 3, 4)
N_FOLDS = 3
N_HISTORY = 300  # clips of the lab's history the rater model is fitted on
FIXED_VOTES = 22
TARGET_SAVED, TARGET_EMD, TARGET_P95 = 0.52, 0.010, 0.03
# The settings the default is chosen from. First fixed as 0.0175..0.025 before any score was
# seen; every prior candidate then overshot the EMD target, so the grid was widened down and
# the prior discount added (a weak prior at a tighter tolerance saved fewer votes than none).
TOLERANCES = (0.01, 0.0125, 0.015, 0.0175, 0.02)
MODE_GUARDS = (1.0, 0.5, 0.3)
PRIOR_DISCOUNTS = (0.25, 0.5, 0.75, 1.0)  # added with the discount, before its first run
NOISE_MIX = (0.0, 0.25, 0.5, 0.75, 1.0)  # share of a random distribution in the prior
SHIFTED = dict(motility_weight=0.7, latent_correlation=0.2, quality_offset=-2.4)
# The curve with the video model's prior (--prior-file): its share when mixed with the
# expected distribution (1.0: the model itself), and the random share of the worse priors.
BETTER_MIX = (0.0, 0.25, 0.5, 0.75, 1.0)
CURVE_NOISE = (0.1, 0.25, 0.5)
CACHE = Path(__file__).resolve().parent.parent / "var" / "bench" / "retirement"


@dataclass(frozen=True)
class Panel:
    """One simulated dataset in arrival order."""

    grades: np.ndarray  # (clips, experts) grade index, columns in arrival order
    raters: np.ndarray  # (clips, experts) expert index, arrival order
    full: np.ndarray  # (clips, 5) full-panel distribution
    expected: np.ndarray  # (clips, 5) the simulator's expected distribution
    features: np.ndarray  # (clips, n_features)
    folds: np.ndarray  # (clips,) 0..N_FOLDS-1
    rater_fit: tuple[np.ndarray, np.ndarray, np.ndarray]  # severity, noise, thresholds
    seed: int


def _outline_measures(outline: np.ndarray, vacuoles: np.ndarray) -> list[float]:
    x, y = outline[:, 0], outline[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    perimeter = float(np.linalg.norm(np.diff(outline, axis=0, append=outline[:1]), axis=1).sum())
    length, width = float(np.ptp(x)), float(np.ptp(y))
    front, back = x > 0, x <= 0
    asymmetry = float(np.ptp(y[front]) - np.ptp(y[back])) if front.any() and back.any() else 0.0
    vacuole_area = float((np.pi * vacuoles[:, 2] ** 2).sum()) if len(vacuoles) else 0.0
    return [
        area,
        length,
        width,
        length / max(width, 1e-6),
        perimeter**2 / max(4 * np.pi * area, 1e-6),
        asymmetry,
        len(vacuoles),
        vacuole_area,
    ]


def clip_features(config: SyntheticConfig) -> np.ndarray:
    """Kinematics of each clip's simulated track and its head's outline measures."""
    cells_rng = _rng(config.seed, 2)  # the generator's cell stream (_STREAM_CELLS)
    motility, morphology = latents_sample(n=config.n_clips, config=config, rng=cells_rng)
    cells = [
        cell_sample(motility=m, morphology=h, config=config, rng=cells_rng)
        for m, h in zip(motility, morphology, strict=True)
    ]
    track_rng = np.random.default_rng([config.seed, 99])
    rows = []
    for cell in cells:
        track = cell_track_sample(
            cell,
            start=(5000.0, 5000.0),
            heading=float(track_rng.uniform(0, 2 * np.pi)),
            n_frames=16,
            fps=config.fps,
            px_per_um=config.px_per_um,
            bounds=Bounds(0.0, 1e4, 0.0, 1e4),
            drift=np.zeros((16, 2)),
            rng=track_rng,
        )
        kin = kinematics(track.centres, fps=config.fps, pixel_size_um=config.pixel_size_um)
        rows.append(
            list(kin.as_dict().values()) + _outline_measures(cell.head_outline_um, cell.vacuoles_um)
        )
    return np.asarray(rows, dtype=float)


def model_predictions(
    features: np.ndarray,
    targets: np.ndarray,
    folds: np.ndarray,
    *,
    seed: int,
    paired: bool = False,
) -> np.ndarray:
    """Out-of-fold predictions of the small model's head trained with EMD, (clips, 5).

    `paired`: each fold draws its inner split and batch order from its own stream (seed, fold),
    so two calls with the same seed and different targets share the initialisation, the inner
    splits and the batch order of every fold (without it a fold's split depends on how many
    epochs the previous fold ran; the cached priors were made that way).
    """
    torch.manual_seed(seed)
    out = np.zeros_like(targets)
    rng = np.random.default_rng(seed)
    for fold in range(N_FOLDS):
        if paired:
            rng = np.random.default_rng([seed, fold])
        train_idx = np.flatnonzero(folds != fold)
        val = rng.random(train_idx.size) < 0.2
        inner, held = train_idx[~val], train_idx[val]
        mean, sd = features[inner].mean(0), features[inner].std(0) + 1e-9
        x = torch.tensor((features - mean) / sd, dtype=torch.float32)
        y = torch.tensor(targets, dtype=torch.float32)
        out_layer = torch.nn.Linear(64, N_GRADES)
        model = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 64), torch.nn.ReLU(), out_layer)
        with torch.no_grad():  # start at the training mean distribution (init_head)
            out_layer.weight.zero_()
            out_layer.bias.copy_(torch.log(y[inner].mean(0) + 1e-6))
        optimizer = torch.optim.AdamW(model.parameters(), lr=6e-3, weight_decay=0.05)
        best, best_state, waited = np.inf, None, 0
        for _epoch in range(600):
            perm = torch.from_numpy(rng.permutation(inner))
            for batch in perm.split(16):
                optimizer.zero_grad()
                loss = emd_loss(torch.softmax(model(x[batch]), 1), y[batch])
                loss.backward()
                optimizer.step()
            with torch.no_grad():
                val_loss = float(emd_loss(torch.softmax(model(x[held]), 1), y[held]))
            if val_loss < best - 1e-6:
                best, waited = val_loss, 0
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
            else:
                waited += 1
                if waited >= 30:
                    break
        assert best_state is not None
        model.load_state_dict(best_state)
        with torch.no_grad():
            test = torch.from_numpy(np.flatnonzero(folds == fold))
            out[test.numpy()] = torch.softmax(model(x[test]), 1).numpy()
    return out


def history_fit(history: np.ndarray) -> RaterModelFit:
    """The rater model fitted on the lab's history: (N_HISTORY, N_EXPERTS) grades, every
    expert on every clip."""
    return rater_model_fit(
        np.repeat(np.arange(N_HISTORY), N_EXPERTS),
        np.tile(np.arange(N_EXPERTS), N_HISTORY),
        history.ravel(),
        n_clips=N_HISTORY,
        n_raters=N_EXPERTS,
    )


def panel_build(seed: int, *, shifted: bool) -> Panel:
    config = SyntheticConfig(n_clips=N_CLIPS, n_experts=N_EXPERTS, seed=seed)
    if shifted:
        config = replace(
            config,
            motility_weight=SHIFTED["motility_weight"],
            latent_correlation=SHIFTED["latent_correlation"],
            quality_offset=SHIFTED["quality_offset"],
        )
    labels = sample_labels(config=config)
    ratings = rating_arrays(labels.ratings, rater_ids=labels.panel.rater_ids)
    grades = np.empty((ratings.n_clips, N_EXPERTS), dtype=np.int64)
    grades[ratings.clip_idx, ratings.rater_idx] = ratings.grade_idx
    order = np.argsort(np.random.default_rng(seed).random(grades.shape), axis=1)
    full = np.eye(N_GRADES)[grades].mean(axis=1)
    # The lab's history: other clips of the same population, graded by the same panel.
    history_config = replace(config, n_clips=N_HISTORY, seed=seed + 1000)
    h_m, h_h = latents_sample(n=N_HISTORY, config=history_config, rng=_rng(seed + 1000, 2))
    history = panel_votes(
        history_config.quality(h_m, h_h), labels.panel, rng=np.random.default_rng([seed, 7])
    )
    fit = history_fit(history)
    return Panel(
        grades=np.take_along_axis(grades, order, axis=1),
        raters=order,
        full=full,
        expected=labels.truth_clips[list(PROB_COLUMNS)].to_numpy(),
        features=clip_features(config),
        folds=np.random.default_rng([seed, 3]).permutation(N_CLIPS) % N_FOLDS,
        rater_fit=(fit.severity, fit.noise, fit.thresholds),
        seed=seed,
    )


def cached_prior(panel: Panel, *, shifted: bool) -> np.ndarray:
    path = CACHE / f"prior_{'shifted' if shifted else 'default'}_seed{panel.seed}.npz"
    if path.exists():
        return np.load(path)["q"]
    q = model_predictions(panel.features, panel.full, panel.folds, seed=panel.seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path.with_suffix(".tmp.npz"), q=q)
    path.with_suffix(".tmp.npz").rename(path)
    return q


def cumulative_votes(panel: Panel, *, rater_aware: bool) -> tuple[np.ndarray, np.ndarray]:
    """(clips, experts, 5) cumulated (weighted) votes in arrival order and their weights."""
    n_clips = panel.grades.shape[0]
    flat_grades, flat_raters = panel.grades.ravel(), panel.raters.ravel()
    index = np.arange(flat_grades.size)
    if rater_aware:
        severity, noise, thresholds = panel.rater_fit
        votes = rater_adjusted_votes(
            index,
            flat_raters,
            flat_grades,
            n_clips=index.size,
            severity=severity,
            noise=noise,
            thresholds=thresholds,
        )
    else:
        votes = np.eye(N_GRADES)[flat_grades]
    votes = votes.reshape(n_clips, N_EXPERTS, N_GRADES)
    return np.cumsum(votes, axis=1), np.cumsum(votes.sum(axis=2), axis=1)


def cross_fitted_weights(panel: Panel, q: np.ndarray) -> np.ndarray:
    """m per clip: fitted on the full panels of the other folds' clips."""
    counts = panel.full * N_EXPERTS
    weights = np.zeros(N_CLIPS)
    for fold in range(N_FOLDS):
        other = panel.folds != fold
        weights[panel.folds == fold] = prior_weight_fit(counts[other], q[other]).weight
    return weights


@dataclass(frozen=True)
class Outcome:
    saved: float
    emd_full: float
    p95_full: float
    emd_expected: float
    p95_expected: float
    raw_emd_full: float  # of the raw votes at the stop
    used: np.ndarray  # (clips,) votes used
    stopped_raw: np.ndarray  # (clips, 5) raw normalised votes at the stop


def outcome(panel: Panel, used: np.ndarray, stopped: np.ndarray) -> Outcome:
    raw = np.cumsum(np.eye(N_GRADES)[panel.grades], axis=1)[np.arange(N_CLIPS), used - 1]
    raw = raw / used[:, None]
    to_full, to_expected = emd(stopped, panel.full), emd(stopped, panel.expected)
    return Outcome(
        saved=1.0 - used.sum() / (N_CLIPS * N_EXPERTS),
        emd_full=float(to_full.mean()),
        p95_full=float(np.percentile(to_full, 95)),
        emd_expected=float(to_expected.mean()),
        p95_expected=float(np.percentile(to_expected, 95)),
        raw_emd_full=float(emd(raw, panel.full).mean()),
        used=used,
        stopped_raw=raw,
    )


def rule_outcome(
    panel: Panel,
    rule: RetirementRule,
    *,
    q: np.ndarray | None,
    weights: np.ndarray | None,
    cumulative: tuple[np.ndarray, np.ndarray],
) -> Outcome:
    votes, _weight_sum = cumulative
    n_votes = np.broadcast_to(np.arange(1, N_EXPERTS + 1), (N_CLIPS, N_EXPERTS))
    m = np.zeros(N_CLIPS) if weights is None else weights
    prior_q = None if q is None else np.broadcast_to(q[:, None, :], votes.shape)
    decision = rule_decision(
        votes,
        n_votes=n_votes,
        rule=rule,
        prior_q=prior_q,
        prior_weight=np.broadcast_to(m[:, None], n_votes.shape),
    )
    stop = np.argmax(decision.settled, axis=1)  # the last column is always settled
    rows = np.arange(N_CLIPS)
    counted = rule.prior_discount * m  # the pseudo-votes the rule counted
    mass = votes[rows, stop] + (0.0 if q is None else counted[:, None] * q)
    stopped = mass / mass.sum(axis=1, keepdims=True)
    return outcome(panel, stop + 1, stopped)


def fixed_outcome(panel: Panel) -> Outcome:
    used = np.full(N_CLIPS, FIXED_VOTES)
    raw = np.eye(N_GRADES)[panel.grades[:, :FIXED_VOTES]].mean(axis=1)
    return outcome(panel, used, raw)


def _row(name: str, outcomes: list[Outcome], note: str = "") -> str:
    def mean(attr: str) -> float:
        return float(np.mean([getattr(o, attr) for o in outcomes]))

    worst = max(o.emd_full for o in outcomes)
    worst95 = max(o.p95_full for o in outcomes)
    return (
        f"{name:<34} {mean('saved'):>6.1%} {mean('emd_full'):>8.4f} {mean('p95_full'):>8.4f} "
        f"{worst:>7.4f} {worst95:>7.4f} {mean('emd_expected'):>8.4f} {mean('p95_expected'):>8.4f} "
        f"{mean('raw_emd_full'):>8.4f}{note}"
    )


HEADER = (
    f"{'rule':<34} {'saved':>6} {'EMDfull':>8} {'p95full':>8} {'worst':>7} {'worst95':>7} "
    f"{'EMDexp':>8} {'p95exp':>8} {'rawEMD':>8}"
)


def meets(outcomes: list[Outcome]) -> bool:
    return all(o.emd_full <= TARGET_EMD and o.p95_full <= TARGET_P95 for o in outcomes)


UTILITY_REPEATS = 4  # model seeds per panel seed (fixed before the first paired run)
UTILITY_TARGET = 1.0  # points of HI gap closed the retired labels may lose


def utility(panel: Panel, labels: np.ndarray, *, repeat: int) -> tuple[float, float, np.ndarray]:
    """HI gap closed, test EMD and the out-of-fold predictions of the model trained on
    `labels`, scored on the full panel.

    The model seed (initialisation, inner splits, batch order) depends on the panel seed and
    `repeat` only, so the full-panel and the retired arms of one repeat are paired. The gap's
    ends are the same for every arm: the full-panel mean of the training folds (0) and the
    simulator's expected distribution (1), so a difference between arms is a difference in the
    model's histogram intersection alone.
    """
    seed = 500 + 100 * panel.seed + repeat
    pred = model_predictions(panel.features, labels, panel.folds, seed=seed, paired=True)
    baseline = np.zeros_like(panel.full)
    for fold in range(N_FOLDS):
        baseline[panel.folds == fold] = panel.full[panel.folds != fold].mean(axis=0)

    def hi(p: np.ndarray) -> float:
        return float(np.minimum(p, panel.full).sum(axis=1).mean())

    gap = (hi(pred) - hi(baseline)) / (hi(panel.expected) - hi(baseline))
    return gap, float(emd(pred, panel.full).mean()), pred


# Two-sided 95 % Student t quantiles by degrees of freedom.
_T975 = {4: 2.776, 9: 2.262, 14: 2.145, 19: 2.093, 24: 2.064, 29: 2.045}


def paired_summary(diffs: np.ndarray) -> str:
    """diffs (seeds, repeats) in points: mean, its standard error and 95 % interval over all
    seeds x repeats, and the same with the seed as the unit (the repeats of one panel share
    its labels, so that interval is the more cautious)."""
    flat = diffs.ravel()
    se = float(flat.std(ddof=1) / np.sqrt(flat.size))
    t = _T975.get(flat.size - 1, 1.96)
    per_seed = diffs.mean(axis=1)
    se_seed = float(per_seed.std(ddof=1) / np.sqrt(per_seed.size)) if per_seed.size > 1 else 0.0
    t_seed = _T975.get(per_seed.size - 1, 1.96)
    mean = float(flat.mean())
    low, high = mean - t * se, mean + t * se
    verdict = "within" if abs(mean) <= UTILITY_TARGET else "outside"
    excludes = "excludes" if low > -UTILITY_TARGET else "does not exclude"
    return (
        f"{mean:+.2f} points (SE {se:.2f}, 95 % CI {low:+.2f}..{high:+.2f} over "
        f"{flat.size} seed x repeat pairs; with the seed as unit SE {se_seed:.2f}, CI "
        f"{mean - t_seed * se_seed:+.2f}..{mean + t_seed * se_seed:+.2f}): {verdict} "
        f"{UTILITY_TARGET:g} point; the interval {excludes} -{UTILITY_TARGET:g}"
    )


def mode_agreement(stopped: np.ndarray, full: np.ndarray) -> float:
    """Share of clips whose stopped distribution has the full panel's mode."""
    return float(np.mean(stopped.argmax(axis=1) == full.argmax(axis=1)))


def run(*, shifted: bool, seeds: tuple[int, ...], with_utility: bool) -> None:
    label = "shifted generator " + str(SHIFTED) if shifted else "default generator"
    print(f"\n== {label}: {N_CLIPS} clips x {N_EXPERTS} experts, seeds {seeds}")
    panels = [panel_build(s, shifted=shifted) for s in seeds]
    priors = [cached_prior(p, shifted=shifted) for p in panels]
    weights = [cross_fitted_weights(p, q) for p, q in zip(panels, priors, strict=True)]
    plain = [cumulative_votes(p, rater_aware=False) for p in panels]
    aware = [cumulative_votes(p, rater_aware=True) for p in panels]
    prior_emd = np.mean([emd(q, p.full).mean() for p, q in zip(panels, priors, strict=True)])
    print(
        f"prior: out-of-fold model EMD to the full panel {prior_emd:.4f}, to the expected "
        f"{np.mean([emd(q, p.expected).mean() for p, q in zip(panels, priors, strict=True)]):.4f}; "
        f"fitted m per fold {sorted({round(float(x), 1) for w in weights for x in w})}"
    )
    print(HEADER)
    current = RetirementRule(
        min_votes=DEFAULT_MIN_VOTES, max_votes=N_EXPERTS, tolerance=DEFAULT_TOLERANCE
    )
    print(
        _row(
            "current (own votes, tol 0.0175)",
            [
                rule_outcome(p, current, q=None, weights=None, cumulative=c)
                for p, c in zip(panels, plain, strict=True)
            ],
        )
    )
    print(_row(f"fixed {FIXED_VOTES} votes", [fixed_outcome(p) for p in panels]))

    def grid_row(name: str, rule: RetirementRule, use_prior: bool, cumulative: list) -> float:
        outcomes = [
            rule_outcome(
                p, rule, q=q if use_prior else None, weights=w if use_prior else None, cumulative=c
            )
            for p, q, w, c in zip(panels, priors, weights, cumulative, strict=True)
        ]
        ok = meets(outcomes)
        label = f"{name}, tol {rule.tolerance}, guard {rule.mode_guard}"
        if use_prior:
            label += f", discount {rule.prior_discount}"
        print(_row(label, outcomes, " meets" if ok else ""))
        return float(np.mean([o.saved for o in outcomes])) if ok else -1.0

    base = RetirementRule(min_votes=DEFAULT_MIN_VOTES, max_votes=N_EXPERTS)
    # 1. The rule without a prior (no run, or m fitted to 0): rater-aware, best tolerance.
    fallback, fallback_saved = replace(base, tolerance=DEFAULT_TOLERANCE), -1.0
    for tolerance in TOLERANCES:
        for guard in MODE_GUARDS:
            rule = replace(base, tolerance=tolerance, mode_guard=guard, rater_aware=True)
            saved = grid_row("rater-aware only", rule, False, aware)
            if saved > fallback_saved:
                fallback, fallback_saved = rule, saved
    # 2. With the prior, at the fallback's tolerance: the best discount and guard.
    best: dict[str, tuple[float, RetirementRule]] = {}
    for name, cumulative, tolerance in (
        ("prior only", plain, DEFAULT_TOLERANCE),
        ("both", aware, fallback.tolerance),
    ):
        for discount in PRIOR_DISCOUNTS:
            for guard in MODE_GUARDS:
                rule = replace(
                    base,
                    tolerance=tolerance,
                    mode_guard=guard,
                    prior_discount=discount,
                    rater_aware=cumulative is aware,
                )
                saved = grid_row(name, rule, True, cumulative)
                if saved > best.get(name, (-1.0, rule))[0]:
                    best[name] = (saved, rule)
    print(
        f"best rater-aware only: tolerance {fallback.tolerance}, guard {fallback.mode_guard}: "
        f"{fallback_saved:.1%} saved"
    )
    for name, (saved, rule) in best.items():
        print(
            f"best {name}: tolerance {rule.tolerance}, guard {rule.mode_guard}, discount "
            f"{rule.prior_discount}: {saved:.1%} saved"
        )
    chosen = best.get("both", (0.0, fallback))[1]
    print(
        f"chosen: tolerance {chosen.tolerance}, mode guard {chosen.mode_guard}, prior discount "
        f"{chosen.prior_discount}, rater-aware"
    )
    print(
        _row(
            "chosen (both)",
            [
                rule_outcome(p, chosen, q=q, weights=w, cumulative=c)
                for p, q, w, c in zip(panels, priors, weights, aware, strict=True)
            ],
        )
    )
    print(
        f"the full panel itself to the expected distribution: mean EMD "
        f"{np.mean([emd(p.full, p.expected).mean() for p in panels]):.4f}"
    )

    print("\ncurve (chosen rule): prior mixed with a random distribution per clip, m refitted")
    print(
        f"{'noise':>6} {'prior EMD':>10} {'mean m':>7} {'saved':>7} {'EMDfull':>8} {'p95full':>8}"
    )
    for mix in NOISE_MIX:
        outcomes, emds, ms = [], [], []
        for p, q, c in zip(panels, priors, aware, strict=True):
            rand = np.random.default_rng([p.seed, 11]).dirichlet(np.ones(N_GRADES), N_CLIPS)
            noisy = (1 - mix) * q + mix * rand
            w = cross_fitted_weights(p, noisy)
            outcomes.append(rule_outcome(p, chosen, q=noisy, weights=w, cumulative=c))
            emds.append(float(emd(noisy, p.full).mean()))
            ms.append(float(w.mean()))
        print(
            f"{mix:>6.2f} {np.mean(emds):>10.4f} {np.mean(ms):>7.2f} "
            f"{np.mean([o.saved for o in outcomes]):>7.1%} "
            f"{np.mean([o.emd_full for o in outcomes]):>8.4f} "
            f"{np.mean([o.p95_full for o in outcomes]):>8.4f}"
        )

    if with_utility:
        utility_report(panels, priors, weights, aware, plain, chosen, current, guards=not shifted)


def _utility_task(task: tuple[Panel, np.ndarray, int]) -> tuple[float, float, np.ndarray]:
    torch.set_num_threads(1)
    panel, labels, repeat = task
    return utility(panel, labels, repeat=repeat)


def utility_report(
    panels: list[Panel],
    priors: list[np.ndarray],
    weights: list[np.ndarray],
    aware: list,
    plain: list,
    chosen: RetirementRule,
    current: RetirementRule,
    *,
    guards: bool,
    jobs: int = 1,
) -> None:
    """The small model trained on retired labels vs full-panel labels, paired repeats."""
    print(
        f"\nutility: the small model trained on the retired clips' exported labels (raw vote "
        f"shares at the stop) vs the full-panel labels; {UTILITY_REPEATS} paired model seeds "
        "per panel seed (same initialisation, inner splits, batch order); scored on the full "
        "panel, HI gap closed between the training folds' full-panel mean and the expected"
    )
    print(f"rule: {chosen.to_dict()}")
    rules = {"chosen": chosen, "today": current}
    stops: dict[str, list[Outcome]] = {name: [] for name in rules}
    for p, q, w, c, c0 in zip(panels, priors, weights, aware, plain, strict=True):
        stops["chosen"].append(rule_outcome(p, chosen, q=q, weights=w, cumulative=c))
        stops["today"].append(rule_outcome(p, current, q=None, weights=None, cumulative=c0))
    arms = ("full", *rules)
    tasks = [
        (p, p.full if name == "full" else stops[name][i].stopped_raw, r)
        for i, p in enumerate(panels)
        for r in range(UTILITY_REPEATS)
        for name in arms
    ]
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(_utility_task, tasks))
    else:
        results = [_utility_task(t) for t in tasks]
    gaps = {name: np.zeros((len(panels), UTILITY_REPEATS)) for name in arms}
    emds = {name: np.zeros((len(panels), UTILITY_REPEATS)) for name in arms}
    clip_loss = [np.zeros(N_CLIPS) for _ in panels]  # HI lost per clip by the chosen arm
    done = iter(results)
    for i, p in enumerate(panels):
        for r in range(UTILITY_REPEATS):
            preds = {}
            for name in arms:
                gaps[name][i, r], emds[name][i, r], preds[name] = next(done)
            clip_loss[i] += (
                np.minimum(preds["full"], p.full).sum(1)
                - np.minimum(preds["chosen"], p.full).sum(1)
            ) / UTILITY_REPEATS
    print(
        f"{'seed':>4} {'gap full':>9} {'gap ret.':>9} {'diff':>7} {'EMD full':>9} "
        f"{'EMD ret.':>9} {'gap today':>9} {'diff today':>10}   (means over the repeats)"
    )
    for i, p in enumerate(panels):
        full, ret, today = gaps["full"][i], gaps["chosen"][i], gaps["today"][i]
        print(
            f"{p.seed:>4} {full.mean():>9.1%} {ret.mean():>9.1%} "
            f"{100 * (ret - full).mean():>+6.2f}p {emds['full'][i].mean():>9.4f} "
            f"{emds['chosen'][i].mean():>9.4f} {today.mean():>9.1%} "
            f"{100 * (today - full).mean():>+9.2f}p"
        )
    for name in rules:
        diff = 100 * (gaps[name] - gaps["full"])
        print(f"difference in HI gap closed, {name}: {paired_summary(diff)}")
        print(
            f"  test EMD difference ({name} - full): "
            f"{(emds[name] - emds['full']).mean():+.5f}; per-repeat range of the gap "
            f"difference {diff.min():+.1f}..{diff.max():+.1f}"
        )
    if guards:
        print(
            "\nthe mode guard at the chosen tolerance and discount (saved, mean / p95 EMD to "
            "the full panel, stopped mode = full-panel mode):"
        )
        for guard in MODE_GUARDS:
            outs = [
                rule_outcome(p, replace(chosen, mode_guard=guard), q=q, weights=w, cumulative=c)
                for p, q, w, c in zip(panels, priors, weights, aware, strict=True)
            ]
            agree = [
                mode_agreement(o.stopped_raw, p.full) for o, p in zip(outs, panels, strict=True)
            ]
            print(
                f"  guard {guard:<4} {np.mean([o.saved for o in outs]):>6.1%} "
                f"{np.mean([o.emd_full for o in outs]):.4f} / "
                f"{np.mean([o.p95_full for o in outs]):.4f}  mode {np.mean(agree):.1%}"
                f"{'  meets' if meets(outs) else ''}"
            )
    print("\nwhere the chosen arm loses HI (per clip, full-panel model minus retired, points):")
    used = np.concatenate([o.used for o in stops["chosen"]])
    label_emd = np.concatenate(
        [emd(o.stopped_raw, p.full) for o, p in zip(stops["chosen"], panels, strict=True)]
    )
    loss = 100 * np.concatenate(clip_loss)
    for low, high in ((1, 14), (15, 19), (20, 29), (30, 39), (40, 40)):
        sel = (used >= low) & (used <= high)
        if sel.any():
            print(
                f"  votes {low:>2}-{high:<2} {sel.mean():>6.1%} of clips, label EMD "
                f"{label_emd[sel].mean():.4f}, HI loss {loss[sel].mean():+.3f} "
                f"(share of the total {loss[sel].sum() / loss.sum():.0%})"
            )


def utility_only(*, seeds: tuple[int, ...], jobs: int) -> None:
    """The utility check of the shipped defaults (the rule the grid chose), without the grid."""
    panels = [panel_build(s, shifted=False) for s in seeds]
    priors = [cached_prior(p, shifted=False) for p in panels]
    weights = [cross_fitted_weights(p, q) for p, q in zip(panels, priors, strict=True)]
    aware = [cumulative_votes(p, rater_aware=True) for p in panels]
    plain = [cumulative_votes(p, rater_aware=False) for p in panels]
    chosen = RetirementRule(min_votes=DEFAULT_MIN_VOTES, max_votes=N_EXPERTS, rater_aware=True)
    current = RetirementRule(
        min_votes=DEFAULT_MIN_VOTES, max_votes=N_EXPERTS, tolerance=DEFAULT_TOLERANCE
    )
    utility_report(panels, priors, weights, aware, plain, chosen, current, guards=True, jobs=jobs)


# --------------------------------------------------------------------------------------------
# The prior from the project's own video model (--prior-file; benchmarks/retirement_pixel.py)


@dataclass(frozen=True)
class ClipSet:
    """The clips of a rendered video set, with the video model's out-of-fold prior."""

    config: SyntheticConfig
    labels: SyntheticLabels
    q: np.ndarray  # (clips, 5) the model's prediction; uniform where none
    has_prior: np.ndarray  # (clips,) bool: the tracker kept the clip, so it has a prediction
    folds: np.ndarray  # (clips,) the version's folds; clip index % 3 where the clip was left out
    trained_on: np.ndarray  # (clips, 5) the video set's own votes (what the model trained on)
    info: dict


def _full_distribution(labels: SyntheticLabels) -> np.ndarray:
    ratings = rating_arrays(labels.ratings, rater_ids=labels.panel.rater_ids)
    grades = np.empty((ratings.n_clips, labels.panel.n_experts), dtype=np.int64)
    grades[ratings.clip_idx, ratings.rater_idx] = ratings.grade_idx
    return np.eye(N_GRADES)[grades].mean(axis=1)


def clip_set_load(path: Path) -> ClipSet:
    from benchmarks.retirement_pixel import config_from_record

    data = np.load(path)
    config = config_from_record(str(data["config"]))
    if config.n_clips != N_CLIPS or config.n_experts != N_EXPERTS:
        raise SystemExit(
            f"{path}: a {config.n_clips} x {config.n_experts} video set; this benchmark needs "
            f"{N_CLIPS} x {N_EXPERTS}"
        )
    labels = sample_labels(config=config)
    index = {c: i for i, c in enumerate(clip_ids(N_CLIPS))}
    rows = np.asarray([index[str(c)] for c in data["clip_ids"]])
    q = np.full((N_CLIPS, N_GRADES), 1.0 / N_GRADES)
    q[rows] = data["q"]
    has_prior = np.zeros(N_CLIPS, dtype=bool)
    has_prior[rows] = True
    folds = np.arange(N_CLIPS) % N_FOLDS
    folds[rows] = data["folds"]
    return ClipSet(
        config,
        labels,
        q,
        has_prior,
        folds,
        _full_distribution(labels),
        json.loads(str(data["info"])),
    )


def clip_set_panel(clips: ClipSet, seed: int) -> Panel:
    """Panel seed `seed` on the video set's clips: the same 40 experts (the video set's panel)
    grade them again, in a new random order; the rater model is fitted on a history of 300
    other clips of this seed. Each seed's votes are a new draw, independent of the votes the
    model trained on."""
    config, panel = clips.config, clips.labels.panel
    motility, morphology = latents_sample(n=N_CLIPS, config=config, rng=_rng(config.seed, 2))
    quality = config.quality(motility, morphology)  # exact (truth_clips.csv keeps 4 decimals)
    grades = panel_votes(quality, panel, rng=np.random.default_rng([config.seed, 17, seed]))
    order = np.argsort(np.random.default_rng([config.seed, 18, seed]).random(grades.shape), 1)
    h_m, h_h = latents_sample(
        n=N_HISTORY, config=config, rng=np.random.default_rng([config.seed, 19, seed])
    )
    history = panel_votes(
        config.quality(h_m, h_h), panel, rng=np.random.default_rng([config.seed, 20, seed])
    )
    fit = history_fit(history)
    return Panel(
        grades=np.take_along_axis(grades, order, axis=1),
        raters=order,
        full=np.eye(N_GRADES)[grades].mean(axis=1),
        expected=clips.labels.truth_clips[list(PROB_COLUMNS)].to_numpy(),
        features=np.zeros((N_CLIPS, 0)),
        folds=clips.folds,
        rater_fit=(fit.severity, fit.noise, fit.thresholds),
        seed=seed,
    )


def clip_set_feature_prior(clips: ClipSet) -> np.ndarray:
    """The feature head of `model_predictions` on the same clips, folds and training votes."""
    # Keyed by the folds too: another version of the same clips has other folds.
    folds_key = hashlib.sha256(clips.folds.astype(np.int64).tobytes()).hexdigest()[:12]
    path = CACHE / f"prior_clipset_features_gen{clips.config.seed}_{folds_key}.npz"
    if path.exists():
        return np.load(path)["q"]
    q = model_predictions(clip_features(clips.config), clips.trained_on, clips.folds, seed=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path.with_suffix(".tmp.npz"), q=q)
    path.with_suffix(".tmp.npz").rename(path)
    return q


def masked_weights(panel: Panel, q: np.ndarray, has_prior: np.ndarray) -> np.ndarray:
    """`cross_fitted_weights` over the clips with a prediction; m = 0 for the others."""
    counts = panel.full * N_EXPERTS
    weights = np.zeros(N_CLIPS)
    for fold in range(N_FOLDS):
        other = (panel.folds != fold) & has_prior
        weights[(panel.folds == fold) & has_prior] = prior_weight_fit(
            counts[other], q[other]
        ).weight
    return weights


def run_clip_set(prior_file: Path, *, seeds: tuple[int, ...]) -> None:
    """The side-by-side table with the video model's prior, at the platform's defaults."""
    clips = clip_set_load(prior_file)
    print(
        f"\n== the video model's prior ({prior_file.name}: {int(clips.has_prior.sum())} of "
        f"{N_CLIPS} clips predicted, training {clips.info}); {N_CLIPS} clips x {N_EXPERTS} "
        f"experts of generator seed {clips.config.seed}, panel seeds {seeds}"
    )
    panels = [clip_set_panel(clips, s) for s in seeds]
    priors = {"pixels": clips.q, "features": clip_set_feature_prior(clips)}
    has = clips.has_prior
    weights = {name: [masked_weights(p, q, has) for p in panels] for name, q in priors.items()}
    plain = [cumulative_votes(p, rater_aware=False) for p in panels]
    aware = [cumulative_votes(p, rater_aware=True) for p in panels]
    for name, q in priors.items():
        to_full = np.mean([emd(q[has], p.full[has]).mean() for p in panels])
        m_values = sorted({round(float(x), 1) for w in weights[name] for x in w[has]})
        print(
            f"prior ({name}): EMD to the full panel {to_full:.4f}, to the expected "
            f"{emd(q[has], panels[0].expected[has]).mean():.4f}, to the votes it trained on "
            f"{emd(q[has], clips.trained_on[has]).mean():.4f} (clips with a prediction); "
            f"fitted m per fold {m_values}"
        )
    base = RetirementRule(
        min_votes=DEFAULT_MIN_VOTES,
        max_votes=N_EXPERTS,
        tolerance=DEFAULT_TOLERANCE,
        prior_discount=DEFAULT_PRIOR_DISCOUNT,
        mode_guard=DEFAULT_MODE_GUARD,
    )
    both = replace(base, rater_aware=True)
    print(
        f"rules at the platform's defaults (tolerance {base.tolerance}, prior discount "
        f"{base.prior_discount}, mode guard {base.mode_guard}), not chosen on this table"
    )
    print(HEADER)

    def rows(rule: RetirementRule, name: str | None, cumulative: list) -> list[Outcome]:
        return [
            rule_outcome(
                p,
                rule,
                q=None if name is None else priors[name],
                weights=None if name is None else w,
                cumulative=c,
            )
            for p, w, c in zip(panels, weights[name or "pixels"], cumulative, strict=True)
        ]

    print(_row("current (own votes, tol 0.0175)", rows(base, None, plain)))
    print(_row(f"fixed {FIXED_VOTES} votes", [fixed_outcome(p) for p in panels]))
    print(_row("rater-aware only", rows(both, None, aware)))
    for name in ("features", "pixels"):
        print(_row(f"prior only ({name})", rows(base, name, plain)))
    for name in ("features", "pixels"):
        print(_row(f"both ({name})", rows(both, name, aware)))
    print(
        f"the full panel itself to the expected distribution: mean EMD "
        f"{np.mean([emd(p.full, p.expected).mean() for p in panels]):.4f}"
    )
    print("\nboth (pixels) at other prior discounts (for context, not to choose by):")
    for discount in PRIOR_DISCOUNTS:
        outcomes = rows(replace(both, prior_discount=discount), "pixels", aware)
        print(_row(f"both (pixels), discount {discount}", outcomes))

    print(
        "\ncurve (both, defaults): saved votes against the prior's EMD to the full panel; the "
        "video model's prior mixed with the expected distribution (a better model) or with a "
        "random distribution per clip (a worse one), m refitted"
    )
    print(
        f"{'prior':<30} {'prior EMD':>10} {'mean m':>7} {'saved':>7} {'EMDfull':>8} {'p95full':>8}"
    )
    curve = [(f"pixels + {1 - t:.2f} expected", t, 0.0) for t in BETTER_MIX]
    curve += [(f"pixels + {mix:.2f} noise", 1.0 - mix, mix) for mix in CURVE_NOISE]
    for label, share, mix in [*curve, ("features", None, 0.0)]:
        outcomes, emds, ms = [], [], []
        for p, c in zip(panels, aware, strict=True):
            rand = np.random.default_rng([p.seed, 11]).dirichlet(np.ones(N_GRADES), N_CLIPS)
            if share is None:
                q = priors["features"]
            else:
                q = share * clips.q + (1 - share - mix) * p.expected + mix * rand
            w = masked_weights(p, q, has)
            outcomes.append(rule_outcome(p, both, q=q, weights=w, cumulative=c))
            emds.append(float(emd(q[has], p.full[has]).mean()))
            ms.append(float(w[has].mean()))
        print(
            f"{label:<30} {np.mean(emds):>10.4f} {np.mean(ms):>7.2f} "
            f"{np.mean([o.saved for o in outcomes]):>7.1%} "
            f"{np.mean([o.emd_full for o in outcomes]):>8.4f} "
            f"{np.mean([o.p95_full for o in outcomes]):>8.4f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, no shifted run")
    parser.add_argument(
        "--utility-only", action="store_true", help="only the utility check of the defaults"
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="processes for the utility models (--utility-only)"
    )
    parser.add_argument(
        "--prior-file",
        type=Path,
        help="only the table with this video model's prior (benchmarks/retirement_pixel.py)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    seeds = SEEDS[:2] if args.quick else SEEDS
    if args.utility_only:
        utility_only(seeds=seeds, jobs=args.jobs)
        print(f"done in {time.perf_counter() - started:.1f} s")
        return
    print(
        f"target: saved >= {TARGET_SAVED:.0%}, mean EMD <= {TARGET_EMD}, p95 <= {TARGET_P95} "
        "to the full panel (worst seed)"
    )
    if args.prior_file:
        run_clip_set(args.prior_file, seeds=seeds)
        print(f"done in {time.perf_counter() - started:.1f} s")
        return
    run(shifted=False, seeds=seeds, with_utility=True)
    if not args.quick:
        run(shifted=True, seeds=seeds, with_utility=False)
    print(f"done in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
