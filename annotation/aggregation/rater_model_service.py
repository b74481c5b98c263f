"""The rater model fit, cached in the database as a RaterModelSnapshot.

A fit of the paper's scale (615 clips x 40 experts) takes about a second, too long for a page
view. A snapshot is keyed by the ratings it saw (`rater_model_data_key`: their count, the
newest id and the newest update time), so any new, changed or deleted rating makes it stale;
`annotation.aggregation.selectors.rater_model_latest` then serves the stale one and queues one
refit (`annotation.aggregation.services`), which the worker runs (`rater_model_refit`). A row
in the database, not the process-local cache, so the web processes and the worker share one
fit and it survives restarts.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Max
from django.utils import timezone

from annotation.aggregation.rater_model import rater_model_fit
from annotation.aggregation.ratings import RatingsFrame, ratings_frame
from annotation.models import RaterModelRefit, RaterModelSnapshot, Rating


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
    store it under `data_key` and drop older snapshots. None (and no snapshot left) when
    there are no ratings.

    Only clips with votes are fitted: a clip without votes would just get the population prior.
    Two requests that fit at once both succeed; the unique key keeps one of their rows.
    """
    if frame.clip_idx.size == 0:
        RaterModelSnapshot.objects.all().delete()  # no ratings left: no fit stays current
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


def rater_model_refit() -> RaterModelSnapshot | None:
    """Fit the rater model to the current ratings unless the newest snapshot is current (the
    task's body); empties the marker when done, whatever happened. None without ratings."""
    # A fit that runs long keeps its marker fresh from its start, not from when it was queued.
    RaterModelRefit.objects.filter(pk=1, queued_at__isnull=False).update(queued_at=timezone.now())
    refitted = False
    try:
        data_key = rater_model_data_key()  # before the ratings: the fit is at least this new
        snapshot = RaterModelSnapshot.objects.filter(data_key=data_key).first()
        refitted = snapshot is None
        if snapshot is None:
            snapshot = rater_model_snapshot_fit(data_key=data_key, frame=ratings_frame())
    finally:
        RaterModelRefit.objects.filter(pk=1).update(queued_at=None)
    if refitted and snapshot is not None and settings.RETIRE_RATER_AWARE:
        # The retirement rule weighs votes with the newest fit: apply it again to every clip
        # (after the marker is cleared: the fit is served as current meanwhile).
        from annotation.aggregation.retirement_service import clips_retire_settled

        clips_retire_settled()
    return snapshot


__all__ = ["rater_model_data_key", "rater_model_refit", "rater_model_snapshot_fit"]
