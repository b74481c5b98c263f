"""The rater model's refit, moved off the request: queued by a curator read, run by the worker.

A fit of the paper's scale takes about a second (more on a larger panel). When every curator
read after a vote fitted again in the request, ten curators looking at the dashboard after one
vote meant ten fits at once. Now a read that finds the newest snapshot stale serves it as it
is (its age and vote count shown beside it) and asks for one refit
(`rater_model_refit_request`); the Celery task `annotation.tasks.refit_rater_model` fits
(`annotation.aggregation.rater_model_service.rater_model_refit`). The marker row
`RaterModelRefit` keeps it to one queued or running fit: a read queues only while the marker
is empty, the task empties it when done, and a vote during the fit leaves the new snapshot
stale, so the next read queues the next fit.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.db.models import Exists, Q
from django.utils import timezone

from annotation.models import RaterModelRefit, RaterModelSnapshot

# A marker older than this is taken for a lost task (a broker restart, a worker killed before
# it acknowledged) and may be queued again; far above a fit's time at any panel size we know.
REFIT_LOST_AFTER = timedelta(minutes=15)


def rater_model_refit_queued() -> bool:
    """Whether a refit is queued or running (and not lost)."""
    queued_at = RaterModelRefit.objects.filter(pk=1).values_list("queued_at", flat=True).first()
    return queued_at is not None and queued_at > timezone.now() - REFIT_LOST_AFTER


def rater_model_refit_request(*, data_key: str | None = None) -> bool:
    """Queue one refit of the rater model unless one is queued or running already.

    The conditional UPDATE is the lock: of many concurrent calls, only the one whose UPDATE
    changed the marker row sends the task (after its transaction commits). With `data_key`
    (the ratings the caller found newer than the stored fit) it claims nothing once a fit of
    those ratings is stored: a read that saw the old fit just before the worker stored the new
    one and cleared the marker sends no second refit. Returns whether a refit is queued now
    (by this call or an earlier one)."""
    if rater_model_refit_queued():  # the common case after a vote: no write at all
        return True
    RaterModelRefit.objects.get_or_create(pk=1)
    now = timezone.now()
    marker = RaterModelRefit.objects.filter(pk=1).filter(
        Q(queued_at__isnull=True) | Q(queued_at__lte=now - REFIT_LOST_AFTER)
    )
    if data_key is not None:
        marker = marker.exclude(Exists(RaterModelSnapshot.objects.filter(data_key=data_key)))
    with transaction.atomic():
        claimed = marker.update(queued_at=now)
        if claimed:
            transaction.on_commit(_send_refit)
    return bool(claimed) or rater_model_refit_queued()


def _send_refit() -> None:
    from annotation.tasks import refit_rater_model

    refit_rater_model.delay()


__all__ = [
    "REFIT_LOST_AFTER",
    "rater_model_refit_queued",
    "rater_model_refit_request",
]
