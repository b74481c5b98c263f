"""Reads of the annotation app for the curator dashboard, the clip page and the aggregation API.

Grade distributions come from the vote counts stored on Clip (kept equal to its Rating rows in
the vote transaction), panel statistics from all expert ratings loaded in one query as index
arrays (`annotation.aggregation.ratings`) and handed to the numpy code of
`annotation.aggregation.distributions`, `.agreement` and `.rater_model`. Query counts do not
grow with the number of clips or ratings.

Identities: rows carry the raters' user names, which are pseudonymous ids. Only curators and
admins may be shown them; every page and API that calls these selectors is curator-only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from django.conf import settings
from django.db.models import Count, Prefetch, Q, Sum
from django.utils import timezone

from annotation.aggregation.agreement import (
    expert_agreement,
    fleiss_kappa_interval,
    intra_rater_consistency,
    krippendorff_alpha,
)
from annotation.aggregation.distributions import (
    DistributionStats,
    distribution_stats,
    figure3_stats,
)
from annotation.aggregation.rater_model_service import rater_model_data_key
from annotation.aggregation.ratings import RatingsFrame, ratings_frame
from annotation.aggregation.services import rater_model_refit_queued, rater_model_refit_request
from annotation.grades import GRADE_INDEX, GRADES, N_GRADES, PROB_COLUMNS, VOTE_FIELDS
from annotation.models import (
    CannotJudge,
    Clip,
    RaterModelSnapshot,
    Rating,
    RatingChange,
    RepeatRating,
)

# Columns of the distribution table (GET /api/distributions.csv).
CSV_COLUMNS: tuple[str, ...] = ("clip_id", *PROB_COLUMNS, "n", "mean", "std", "mode")
MAX_BOOTSTRAP = 5000


def _number(value: float) -> float | None:
    """A float for JSON: NaN (a statistic without data) becomes None."""
    return float(value) if np.isfinite(value) else None


def _by_grade(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    return {g: float(v) for g, v in zip(GRADES, values, strict=True)}


# --- grade distributions of clips ------------------------------------------------------------


@dataclass(frozen=True)
class ClipDistribution:
    """A clip's grade distribution and its statistics; statistics are None without votes."""

    clip_id: str
    counts: dict[str, int]
    p: dict[str, float] | None
    n: int
    mean: float | None
    std: float | None
    mode: str  # "" without votes
    entropy: float | None
    retired: bool
    corrected: dict[str, float] | None = None  # severity-corrected; None when not asked or no fit


def _distribution_rows(
    clip_ids: Sequence[str], stats: DistributionStats, retired: Sequence[bool]
) -> list[ClipDistribution]:
    return [
        ClipDistribution(
            clip_id=clip_id,
            counts=dict(zip(GRADES, stats.counts[i].tolist(), strict=True)),
            p=_by_grade(stats.p[i]) if stats.n[i] else None,
            n=int(stats.n[i]),
            mean=_number(stats.mean[i]),
            std=_number(stats.std[i]),
            mode=str(stats.mode[i]),
            entropy=_number(stats.entropy[i]),
            retired=bool(retired[i]),
        )
        for i, clip_id in enumerate(clip_ids)
    ]


def clip_distributions(
    clips: Sequence[Clip], *, snapshot: RaterModelSnapshot | None = None
) -> list[ClipDistribution]:
    """Distributions of these clips from their stored vote counts, vectorised; with the
    severity-corrected distribution too when a rater model snapshot is given."""
    counts = np.array([c.vote_counts for c in clips], dtype=np.int64).reshape(-1, N_GRADES)
    rows = _distribution_rows(
        [c.external_id for c in clips],
        distribution_stats(counts),
        [c.retired_at is not None for c in clips],
    )
    if snapshot is None:
        return rows
    corrected = snapshot_corrected_by_clip(snapshot)
    return [
        _with_corrected(row, corrected.get(clip.pk)) for row, clip in zip(rows, clips, strict=True)
    ]


def _with_corrected(row: ClipDistribution, corrected: dict[str, float] | None) -> ClipDistribution:
    return ClipDistribution(**{**row.__dict__, "corrected": corrected})


def clip_distribution(clip: Clip) -> ClipDistribution:
    """One clip's grade distribution from its stored vote counts."""
    return clip_distributions([clip])[0]


def clip_distribution_corrected(
    clip: Clip, *, snapshot: RaterModelSnapshot | None
) -> dict[str, float] | None:
    """The rater model's severity-corrected distribution of a clip; None without votes."""
    if snapshot is None:
        return None
    try:
        row = snapshot.clip_pks.index(clip.pk)
    except ValueError:
        return None
    return _by_grade(snapshot.corrected[row])


def snapshot_corrected_by_clip(snapshot: RaterModelSnapshot) -> dict[int, dict[str, float]]:
    return {pk: _by_grade(p) for pk, p in zip(snapshot.clip_pks, snapshot.corrected, strict=True)}


def distributions_csv_rows(*, chunk_size: int = 2000) -> Iterator[list[str]]:
    """The distribution table, header first: one row per clip WITH votes (clips without votes
    are left out: they have no distribution), ordered by clip id. Streams in chunks."""
    yield list(CSV_COLUMNS)
    rows = (
        Clip.objects.filter(votes_total__gt=0)
        .order_by("external_id")
        .values_list("external_id", *VOTE_FIELDS)
        .iterator(chunk_size=chunk_size)
    )
    chunk: list[tuple[Any, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == chunk_size:
            yield from _csv_chunk(chunk)
            chunk = []
    if chunk:
        yield from _csv_chunk(chunk)


def _csv_chunk(chunk: list[tuple[Any, ...]]) -> Iterator[list[str]]:
    stats = distribution_stats(np.array([row[1:] for row in chunk], dtype=np.int64))
    for i, row in enumerate(chunk):
        yield [
            row[0],
            *(f"{p:.6f}" for p in stats.p[i]),
            str(int(stats.n[i])),
            f"{stats.mean[i]:.6f}",
            f"{stats.std[i]:.6f}",
            str(stats.mode[i]),
        ]


# --- the rater model -------------------------------------------------------------------------


@dataclass(frozen=True)
class RaterModelLatest:
    """The newest rater model fit and how it stands against the current ratings."""

    snapshot: RaterModelSnapshot | None  # None: never fitted (or no ratings)
    stale: bool  # ratings were added, changed or deleted since the fit
    refit_queued: bool  # a refit is queued or running on the worker

    @property
    def age_s(self) -> float | None:
        if self.snapshot is None:
            return None
        return max((timezone.now() - self.snapshot.created_at).total_seconds(), 0.0)


def rater_model_latest() -> RaterModelLatest:
    """The newest rater model fit, served as it is, never fitted in the request: when the
    ratings changed since (or it was never fitted), one refit is queued for the worker
    (`annotation.aggregation.services`) and the stale fit is served meanwhile, with its age.
    Two or three queries; a write only for the read that queues the refit."""
    data_key = rater_model_data_key()
    snapshot = RaterModelSnapshot.objects.order_by("-pk").first()
    has_ratings = not data_key.startswith("0:")
    stale = snapshot.data_key != data_key if snapshot is not None else has_ratings
    queued = rater_model_refit_request(data_key=data_key) if stale else rater_model_refit_queued()
    if stale and not queued:  # the worker stored the fit of these ratings a moment ago
        snapshot = RaterModelSnapshot.objects.order_by("-pk").first()
        stale = snapshot is None or snapshot.data_key != data_key
    return RaterModelLatest(snapshot=snapshot, stale=stale, refit_queued=queued)


# --- grading time -----------------------------------------------------------------------------


def fast_grade_mask(time_ms: np.ndarray, rater_median_ms: np.ndarray) -> np.ndarray:
    """Which grades were very fast: under FAST_GRADE_MS, or under FAST_GRADE_FRACTION of the
    expert's own median time per grade. Times of 0 (not measured: imported grades) never are.

    time_ms: (n,) per grade; rater_median_ms: (n,) the median of the grade's expert.
    """
    limit = np.maximum(settings.FAST_GRADE_MS, settings.FAST_GRADE_FRACTION * rater_median_ms)
    return (time_ms > 0) & (time_ms < limit)


def _median_time_per_rater(rater_idx: np.ndarray, time_ms: np.ndarray, n_raters: int) -> np.ndarray:
    """Median measured time per grade for each rater, (n_raters,); NaN without measured times."""
    timed = time_ms > 0
    medians = pd.Series(time_ms[timed]).groupby(rater_idx[timed]).median()
    return medians.reindex(range(n_raters)).to_numpy(dtype=float)


# --- panel statistics ------------------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    alpha: float | None  # Krippendorff's alpha, ordinal
    alpha_ci_low: float | None
    alpha_ci_high: float | None
    confidence: float
    n_resamples: int
    n_clips_pairable: int  # clips with at least two votes: the ones alpha sees
    fleiss_kappa: float | None
    fleiss_kappa_ci_low: float | None  # the same bootstrap resamples of clips as alpha's
    fleiss_kappa_ci_high: float | None


@dataclass(frozen=True)
class ExpertRow:
    rater: str  # pseudonymous user name (curators only)
    n_votes: int
    n_compared: int  # votes on clips someone else also rated
    severity: float | None  # mean score minus the leave-one-out panel mean (+ = harsher)
    model_severity: float | None  # rater model severity in latent units (+ = harsher)
    kappa_quadratic: float | None  # weighted kappa against the leave-one-out panel grade
    mean_emd: float | None  # EMD of the one-hot vote to the leave-one-out distribution
    repeat_pairs: int  # hidden repeats answered
    repeat_agreement: float | None  # share of repeats given the same grade
    repeat_mean_abs_diff: float | None  # mean |first - repeat| in grade steps
    median_time_ms: float | None  # median measured time per grade
    n_timed: int  # grades with a measured time (imported grades have none)
    n_fast: int  # very fast grades (fast_grade_mask)
    fast_share: float | None  # n_fast / n_timed
    # Grade changes made after seeing the panel: kept apart, never counted (grading.answers).
    n_changed_after_panel: int = 0

    @property
    def flagged(self) -> bool:
        return self.n_fast > 0


@dataclass(frozen=True)
class RetirementProgress:
    n_clips: int
    n_retired: int
    n_open: int
    max_votes: int  # votes a clip gets without retirement (the full panel)
    votes_on_retired: int
    votes_saved: int  # sum over retired clips of (max_votes - their votes)
    votes_saved_share: float | None  # votes_saved / (n_retired * max_votes)


@dataclass(frozen=True)
class Consistency:
    n_pairs: int
    exact_agreement: float | None
    mean_abs_diff: float | None


@dataclass(frozen=True)
class RaterModelInfo:
    fitted_at: datetime
    fit_seconds: float
    converged: bool
    n_ratings: int
    thresholds: list[float]
    age_s: float  # seconds since the fit
    stale: bool  # ratings changed since: a refit is queued, this fit is served meanwhile
    refit_queued: bool


@dataclass(frozen=True)
class PanelStatistics:
    n_clips: int
    n_rated_clips: int
    n_raters: int
    n_ratings: int
    figure3: dict[
        str, Any
    ]  # annotation.aggregation.distributions.figure3_stats, ratings_per_expert included
    agreement: Agreement
    consistency: Consistency
    experts: list[ExpertRow]
    retirement: RetirementProgress
    rater_model: RaterModelInfo | None
    fast_grade_ms: int
    fast_grade_fraction: float


def retirement_progress() -> RetirementProgress:
    retired = Q(retired_at__isnull=False)
    seen = Clip.objects.aggregate(
        n=Count("pk"),
        retired=Count("pk", filter=retired),
        votes=Sum("votes_total", filter=retired),
    )
    max_votes = settings.MAX_VOTES
    n_retired = seen["retired"]
    votes_on_retired = seen["votes"] or 0
    # Clips retired at max_votes save nothing; a clip cannot go beyond max_votes by the rule.
    saved = max(n_retired * max_votes - votes_on_retired, 0)
    return RetirementProgress(
        n_clips=seen["n"],
        n_retired=n_retired,
        n_open=seen["n"] - n_retired,
        max_votes=max_votes,
        votes_on_retired=votes_on_retired,
        votes_saved=saved,
        votes_saved_share=saved / (n_retired * max_votes) if n_retired and max_votes else None,
    )


def _consistency(frame: RatingsFrame) -> tuple[Consistency, pd.DataFrame]:
    rows = list(RepeatRating.objects.values_list("rater_id", "original_grade", "grade"))
    raters = np.array([r for r, _, _ in rows], dtype=np.int64)
    known = np.isin(raters, frame.rater_pks)
    pairs = [row for row, keep in zip(rows, known, strict=True) if keep]
    result = intra_rater_consistency(
        np.searchsorted(frame.rater_pks, raters[known]),
        np.array([GRADE_INDEX[g] for _, g, _ in pairs], dtype=np.int64),
        np.array([GRADE_INDEX[g] for _, _, g in pairs], dtype=np.int64),
        n_raters=frame.n_raters,
    )
    overall = Consistency(
        n_pairs=result.n_pairs,
        exact_agreement=_number(result.exact_agreement),
        mean_abs_diff=_number(result.mean_abs_diff),
    )
    return overall, result.per_rater


def panel_statistics(*, bootstrap: int, seed: int = 0) -> PanelStatistics:
    """Figure 3, agreement, per-expert table, retirement progress and the rater model's info.

    bootstrap: resamples of the alpha and Fleiss kappa confidence intervals, 0..MAX_BOOTSTRAP
    (0 = no CI).
    A constant number of queries; the rater model is never fitted here (a stale fit is
    served, with its age, and a refit queued).
    """
    if not 0 <= bootstrap <= MAX_BOOTSTRAP:
        raise ValueError(f"bootstrap must lie in 0..{MAX_BOOTSTRAP}, got {bootstrap}")
    latest = rater_model_latest()  # never fits here: a stale fit queues a refit
    snapshot = latest.snapshot
    frame = ratings_frame()
    arrays = (frame.clip_idx, frame.rater_idx, frame.grade_idx)
    counts = frame.counts()
    stats = distribution_stats(counts)

    alpha = krippendorff_alpha(
        *arrays, n_clips=frame.n_clips, n_raters=frame.n_raters, n_resamples=bootstrap, seed=seed
    )
    kappa = fleiss_kappa_interval(counts, n_resamples=bootstrap, seed=seed)
    agreement = Agreement(
        alpha=_number(alpha.alpha),
        alpha_ci_low=_number(alpha.ci_low),
        alpha_ci_high=_number(alpha.ci_high),
        confidence=alpha.confidence,
        n_resamples=alpha.n_resamples,
        n_clips_pairable=alpha.n_clips_pairable,
        fleiss_kappa=_number(kappa.kappa),
        fleiss_kappa_ci_low=_number(kappa.ci_low),
        fleiss_kappa_ci_high=_number(kappa.ci_high),
    )
    per_expert = expert_agreement(*arrays, n_clips=frame.n_clips, n_raters=frame.n_raters)
    consistency, per_rater_repeats = _consistency(frame)
    medians = _median_time_per_rater(frame.rater_idx, frame.time_ms, frame.n_raters)
    fast = fast_grade_mask(frame.time_ms, medians[frame.rater_idx])
    n_fast = np.bincount(frame.rater_idx[fast], minlength=frame.n_raters)
    n_timed = np.bincount(frame.rater_idx[frame.time_ms > 0], minlength=frame.n_raters)
    model_severity = (
        dict(zip(snapshot.rater_pks, snapshot.severity, strict=True)) if snapshot else {}
    )
    after_panel = dict(
        RatingChange.objects.filter(after_panel=True)
        .order_by()
        .values("rating__rater_id")
        .annotate(n=Count("pk"))
        .values_list("rating__rater_id", "n")
    )

    experts = []
    for j, (pk, name) in enumerate(zip(frame.rater_pks.tolist(), frame.rater_names, strict=True)):
        row, repeats = per_expert.iloc[j], per_rater_repeats.iloc[j]
        experts.append(
            ExpertRow(
                rater=name,
                n_votes=int(row["n_votes"]),
                n_compared=int(row["n_compared"]),
                severity=_number(row["severity"]),
                model_severity=model_severity.get(pk),
                kappa_quadratic=_number(row["kappa_quadratic"]),
                mean_emd=_number(row["mean_emd"]),
                repeat_pairs=int(repeats["n_pairs"]),
                repeat_agreement=_number(repeats["exact_agreement"]),
                repeat_mean_abs_diff=_number(repeats["mean_abs_diff"]),
                median_time_ms=_number(medians[j]),
                n_timed=int(n_timed[j]),
                n_fast=int(n_fast[j]),
                fast_share=int(n_fast[j]) / int(n_timed[j]) if n_timed[j] else None,
                n_changed_after_panel=after_panel.get(pk, 0),
            )
        )
    return PanelStatistics(
        n_clips=frame.n_clips,
        n_rated_clips=int((stats.n > 0).sum()),
        n_raters=frame.n_raters,
        n_ratings=int(frame.clip_idx.size),
        figure3=figure3_stats(stats, rater_idx=frame.rater_idx, n_raters=frame.n_raters),
        agreement=agreement,
        consistency=consistency,
        experts=experts,
        retirement=retirement_progress(),
        rater_model=None
        if snapshot is None
        else RaterModelInfo(
            fitted_at=snapshot.created_at,
            fit_seconds=snapshot.fit_seconds,
            converged=snapshot.converged,
            n_ratings=snapshot.n_ratings,
            thresholds=list(snapshot.thresholds),
            age_s=latest.age_s or 0.0,
            stale=latest.stale,
            refit_queued=latest.refit_queued,
        ),
        fast_grade_ms=settings.FAST_GRADE_MS,
        fast_grade_fraction=settings.FAST_GRADE_FRACTION,
    )


# --- the votes of one clip (curator clip page) ------------------------------------------------


@dataclass(frozen=True)
class ClipVote:
    rater: str  # pseudonymous user name (curators only)
    grade: str
    time_spent_ms: int
    fast: bool
    created_at: datetime
    changes: list[RatingChange]  # grade changes after the first grade, oldest first


@dataclass(frozen=True)
class ClipRepeat:
    rater: str
    original_grade: str
    grade: str
    time_spent_ms: int
    created_at: datetime


def clip_votes(clip: Clip) -> list[ClipVote]:
    """Every expert vote of a clip with its changes and a very-fast flag (three queries)."""
    ratings = list(
        Rating.objects.filter(clip=clip)
        .select_related("rater")
        .prefetch_related(
            Prefetch(
                "changes",
                queryset=RatingChange.objects.exclude(previous_grade="").order_by("changed_at"),
            )
        )
        .order_by("created_at", "pk")
    )
    raters = sorted({r.rater_id for r in ratings})
    times = Rating.objects.filter(rater_id__in=raters, time_spent_ms__gt=0).values_list(
        "rater_id", "time_spent_ms"
    )
    frame = pd.DataFrame(list(times), columns=["rater", "ms"])
    medians = frame.groupby("rater")["ms"].median().to_dict() if len(frame) else {}
    time_ms = np.array([r.time_spent_ms for r in ratings], dtype=np.int64)
    rater_median = np.array([medians.get(r.rater_id, np.nan) for r in ratings], dtype=float)
    fast = fast_grade_mask(time_ms, np.nan_to_num(rater_median, nan=0.0))
    return [
        ClipVote(
            rater=r.rater.get_username(),
            grade=r.grade,
            time_spent_ms=r.time_spent_ms,
            fast=bool(is_fast),
            created_at=r.created_at,
            changes=list(r.changes.all()),
        )
        for r, is_fast in zip(ratings, fast, strict=True)
    ]


def clip_repeats(clip: Clip) -> list[ClipRepeat]:
    """The hidden repeats answered on a clip (never part of its distribution)."""
    return [
        ClipRepeat(
            rater=r.rater.get_username(),
            original_grade=r.original_grade,
            grade=r.grade,
            time_spent_ms=r.time_spent_ms,
            created_at=r.created_at,
        )
        for r in RepeatRating.objects.filter(clip=clip).select_related("rater").order_by("pk")
    ]


@dataclass(frozen=True)
class ClipCannotJudge:
    rater: str
    reason: str  # the reason's label
    note: str  # the expert's words (reason "other" only)
    time_spent_ms: int
    created_at: datetime


def clip_cannot_judge(clip: Clip) -> list[ClipCannotJudge]:
    """The "cannot judge" answers of a clip, oldest first (never part of its distribution)."""
    return [
        ClipCannotJudge(
            rater=c.rater.get_username(),
            reason=c.get_reason_display(),
            note=c.note,
            time_spent_ms=c.time_spent_ms,
            created_at=c.created_at,
        )
        for c in CannotJudge.objects.filter(clip=clip).select_related("rater").order_by("pk")
    ]


__all__ = [
    "CSV_COLUMNS",
    "MAX_BOOTSTRAP",
    "Agreement",
    "ClipCannotJudge",
    "ClipDistribution",
    "ClipRepeat",
    "ClipVote",
    "Consistency",
    "ExpertRow",
    "PanelStatistics",
    "RaterModelInfo",
    "RaterModelLatest",
    "RetirementProgress",
    "clip_distribution",
    "clip_distribution_corrected",
    "clip_distributions",
    "clip_repeats",
    "clip_votes",
    "distributions_csv_rows",
    "fast_grade_mask",
    "panel_statistics",
    "rater_model_latest",
    "retirement_progress",
    "snapshot_corrected_by_clip",
]
