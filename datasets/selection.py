"""What a dataset version's filters select: the clips and the votes a build freezes.

The build and the build form's live preview call the same `selection_read`, so the counts a
curator sees before building are the counts the build then freezes. Filters act at two
levels:

- clips: ready video, full length (a clip cut short by a lost target has fewer frames than
  training reads: left out, counted as ``clips_short``), retired only, ingestion dates,
  "cannot judge" majority, and clips where the rater model's severity-corrected distribution
  lies further than a threshold (EMD) from the raw one (the panel disagrees with itself once
  severities are accounted for);
- votes: every vote of chosen raters (pseudonymous expert ids) and grades the dashboard flags
  as very fast (`annotation.aggregation.selectors.fast_grade_mask`) are left out; the minimum
  number of votes then applies to the votes that remain, and a clip left with none is dropped.

The filters are stored as a JSON mapping on the version (`DatasetVersion.filters`); a key a
version lacks (built before the filter existed) means the filter was off.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import Count, F, QuerySet

from annotation.aggregation.distributions import distribution_stats, emd
from annotation.aggregation.rater_model_service import rater_model_refit
from annotation.aggregation.selectors import fast_grade_mask, snapshot_corrected_by_clip
from annotation.errors import ServiceError
from annotation.grades import GRADES, N_GRADES
from annotation.models import Clip, Rating, Video


class SelectionError(ServiceError):
    """A filter value the curator can fix; the message says which and how."""


@dataclass(frozen=True)
class Selection:
    """The clips and votes one set of filters selects, and what the vote filters left out."""

    clips: list[Clip]
    ratings: list[tuple[str, str, str]]  # (clip external id, rater user name, grade)
    left_out: dict[str, int] = field(default_factory=dict)

    @property
    def patients(self) -> int:
        return len({c.video.patient_id for c in self.clips})

    @property
    def raters(self) -> int:
        return len({rater for _, rater, _ in self.ratings})

    def modes(self) -> list[str]:
        """The grade mode of each selected clip (in `clips` order), from the kept votes."""
        index = {c.external_id: i for i, c in enumerate(self.clips)}
        counts = np.zeros((len(self.clips), N_GRADES), dtype=np.int64)
        for clip_id, _, grade in self.ratings:
            counts[index[clip_id], GRADES.index(grade)] += 1
        return [str(m) for m in distribution_stats(counts).mode] if self.clips else []


def filters_normalised(
    *,
    min_votes: int = 1,
    retired_only: bool = False,
    created_from: str | None = None,
    created_to: str | None = None,
    exclude_cannot_judge_majority: bool = True,
    exclude_raters: list[str] | tuple[str, ...] = (),
    exclude_fast_grades: bool = False,
    max_rater_model_emd: float | None = None,
) -> dict[str, Any]:
    """The filters as stored on a version, checked: unknown rater ids and a negative threshold
    are refused by name."""
    if min_votes < 1:
        raise SelectionError("a clip needs at least one vote to have a distribution")
    if max_rater_model_emd is not None and not 0 <= max_rater_model_emd <= 4:
        raise SelectionError(
            "the rater-model threshold is an EMD between 0 and 4 (all mass on A against all "
            f"mass on E); got {max_rater_model_emd}"
        )
    raters = sorted({r.strip() for r in exclude_raters if r.strip()})
    known = set(User.objects.filter(username__in=raters).values_list("username", flat=True))
    unknown = [r for r in raters if r not in known]
    if unknown:
        raise SelectionError(f"no expert has the id {', '.join(unknown)}; check the list")
    return {
        "min_votes": int(min_votes),
        "retired_only": bool(retired_only),
        "created_from": created_from,
        "created_to": created_to,
        "exclude_cannot_judge_majority": bool(exclude_cannot_judge_majority),
        "exclude_raters": raters,
        "exclude_fast_grades": bool(exclude_fast_grades),
        "max_rater_model_emd": None if max_rater_model_emd is None else float(max_rater_model_emd),
    }


def _candidate_clips(filters: dict[str, Any]) -> QuerySet[Clip]:
    # votes_total >= min_votes is necessary (vote filters only remove votes), so it prunes here.
    clips = Clip.objects.filter(
        video__status=Video.Status.READY, votes_total__gte=max(1, filters.get("min_votes", 1))
    )
    if filters.get("retired_only"):
        clips = clips.filter(retired_at__isnull=False)
    if filters.get("created_from"):
        clips = clips.filter(created_at__gte=filters["created_from"])
    if filters.get("created_to"):
        clips = clips.filter(created_at__lte=filters["created_to"])
    if filters.get("exclude_cannot_judge_majority"):
        # "Cannot judge" dominates when more experts said so than graded the clip.
        clips = clips.annotate(n_cannot=Count("cannot_judge")).exclude(
            n_cannot__gt=F("votes_total")
        )
    return clips.select_related("video__patient").order_by("external_id")


def _rater_model_outliers(clips: list[Clip], threshold: float) -> set[int]:
    """Clips whose corrected distribution lies more than `threshold` (EMD) from the raw one.

    The fit must be that of the current ratings, so that the preview counts what the build then
    freezes: unlike the pages (which serve a stale fit and queue a refit), this filter fits here
    when the ratings changed since the newest fit. It runs only when a curator asks for it."""
    snapshot = rater_model_refit()
    if snapshot is None or not clips:
        return set()
    corrected = snapshot_corrected_by_clip(snapshot)
    raw = distribution_stats(np.array([c.vote_counts for c in clips], dtype=np.int64)).p
    outliers = set()
    for clip, p in zip(clips, raw, strict=True):
        q = corrected.get(clip.pk)
        if q is not None and float(emd(p, np.array([q[g] for g in GRADES]))) > threshold:
            outliers.add(clip.pk)
    return outliers


def _fast_votes(rows: list[tuple[int, int, str, str, int]]) -> np.ndarray:
    """Which of these votes the dashboard flags as very fast; medians per expert over all
    their measured grades, as the dashboard computes them."""
    raters = sorted({r[1] for r in rows})
    times = Rating.objects.filter(rater_id__in=raters, time_spent_ms__gt=0).values_list(
        "rater_id", "time_spent_ms"
    )
    by_rater: dict[int, list[int]] = {}
    for rater, ms in times:
        by_rater.setdefault(rater, []).append(ms)
    medians = {rater: float(np.median(ms)) for rater, ms in by_rater.items()}
    time_ms = np.array([r[4] for r in rows], dtype=np.int64)
    median = np.array([medians.get(r[1], 0.0) for r in rows], dtype=float)
    return fast_grade_mask(time_ms, median)


def selection_read(filters: dict[str, Any]) -> Selection:
    """The clips and votes `filters` select now (call inside a transaction for a snapshot)."""
    clips = list(_candidate_clips(filters))
    left_out: Counter[str] = Counter()
    # Training reads the first INGEST_N_FRAMES frames of every clip: a shorter one (its target
    # lost near the end) cannot be used, and padding would invent frames.
    full = [c for c in clips if c.n_frames >= settings.INGEST_N_FRAMES]
    left_out["clips_short"] = len(clips) - len(full)
    clips = full
    threshold = filters.get("max_rater_model_emd")
    if threshold is not None:
        outliers = _rater_model_outliers(clips, float(threshold))
        left_out["clips_rater_model"] = len(outliers)
        clips = [c for c in clips if c.pk not in outliers]
    by_pk = {c.pk: c for c in clips}
    rows = list(
        Rating.objects.filter(clip__in=list(by_pk))
        .order_by("clip_id", "rater_id")
        .values_list("clip_id", "rater_id", "rater__username", "grade", "time_spent_ms")
    )
    excluded_raters = set(filters.get("exclude_raters") or ())
    keep = np.array([r[2] not in excluded_raters for r in rows], dtype=bool)
    left_out["votes_excluded_raters"] = int((~keep).sum())
    if filters.get("exclude_fast_grades") and rows:
        fast = _fast_votes(rows) & keep
        left_out["votes_fast"] = int(fast.sum())
        keep &= ~fast
    kept = [r for r, k in zip(rows, keep, strict=True) if k]
    per_clip = Counter(r[0] for r in kept)
    min_votes = max(1, int(filters.get("min_votes", 1)))
    chosen = [c for c in clips if per_clip[c.pk] >= min_votes]
    left_out["clips_too_few_votes_left"] = len(clips) - len(chosen)
    chosen_pks = {c.pk for c in chosen}
    ratings = [(by_pk[r[0]].external_id, r[2], r[3]) for r in kept if r[0] in chosen_pks]
    return Selection(clips=chosen, ratings=ratings, left_out=dict(left_out))
