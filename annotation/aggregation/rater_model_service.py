"""The rater model fit, cached in the database as a RaterModelSnapshot.

A fit of the paper's scale (615 clips x 40 experts) takes about a second, too long for every
page view. A snapshot is keyed by the ratings it saw (`rater_model_data_key`: their count, the
newest id and the newest update time), so any new, changed or deleted rating makes it stale;
`annotation.aggregation.selectors.rater_model_current` then fits again on the request that finds it
stale and every later request reuses the row. A row in the database, not the process-local
cache, so the web processes and the worker share one fit and it survives restarts.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
from django.db import IntegrityError, transaction
from django.db.models import Count, Max

from annotation.aggregation.rater_model import rater_model_fit
from annotation.models import RaterModelSnapshot, Rating

if TYPE_CHECKING:
    from annotation.aggregation.ratings import RatingsFrame


def rater_model_data_key() -> str:
    """Names the current expert ratings; changes with every rating written, changed or deleted."""
    seen = Rating.objects.aggregate(n=Count("id"), top=Max("id"), last=Max("updated_at"))
    last = seen["last"].isoformat() if seen["last"] else "-"
    return f"{seen['n']}:{seen['top'] or 0}:{last}"


def _rounded(values: np.ndarray) -> list[Any]:  # nested lists of floats, as deep as values
    # Six decimals: far below any difference a page or a model would show, a third of the JSON.
    return np.round(values, 6).tolist()


def rater_model_snapshot_fit(*, data_key: str, frame: RatingsFrame) -> RaterModelSnapshot | None:
    """Fit the rater model to `frame` (loaded after `data_key` was read, so at least as new),
    store it under `data_key` and drop older snapshots. None when there are no ratings.

    Only clips with votes are fitted: a clip without votes would just get the population prior.
    Two requests that fit at once both succeed; the unique key keeps one of their rows.
    """
    if frame.clip_idx.size == 0:
        return None
    voted_clips, clip_idx = np.unique(frame.clip_idx, return_inverse=True)
    started = time.perf_counter()
    fit = rater_model_fit(
        clip_idx,
        frame.rater_idx,
        frame.grade_idx,
        n_clips=voted_clips.size,
        n_raters=frame.n_raters,
    )
    snapshot = RaterModelSnapshot(
        data_key=data_key,
        fit_seconds=round(time.perf_counter() - started, 3),
        converged=fit.converged,
        n_ratings=int(frame.clip_idx.size),
        clip_pks=frame.clip_pks[voted_clips].tolist(),
        corrected=_rounded(fit.corrected_distribution()),
        z_mean=_rounded(fit.z_mean),
        rater_pks=frame.rater_pks.tolist(),
        severity=_rounded(fit.severity),
        noise=_rounded(fit.noise),
        thresholds=_rounded(fit.thresholds),
    )
    try:
        with transaction.atomic():
            snapshot.save()
    except IntegrityError:  # another request stored the same fit first
        return RaterModelSnapshot.objects.get(data_key=data_key)
    RaterModelSnapshot.objects.filter(pk__lt=snapshot.pk).delete()
    return snapshot


__all__ = ["rater_model_data_key", "rater_model_snapshot_fit"]
