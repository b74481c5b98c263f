"""Celery tasks of the modeling app, routed to the ``training`` queue (CELERY_TASK_ROUTES).

Thin: they take ids and call services. A training task may run up to
``TRAINING_TIME_LIMIT_S``; past it the run is marked failed with a message saying so, and
its checkpoints stay for a resume. The broker's visibility timeout is set above the hard
limit (config/settings.py), so a task still running is never handed to a second worker.
"""

from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from annotation.models import Clip
from modeling import services
from modeling.models import TrainingRun

log = logging.getLogger(__name__)

SOFT_LIMIT = settings.TRAINING_TIME_LIMIT_S
HARD_LIMIT = SOFT_LIMIT + 300  # time to record the failure after the soft limit


def _time_limit_message() -> str:
    return (
        f"the run exceeded the worker's time limit of {SOFT_LIMIT / 3600:g} h "
        "(MERSV_TRAINING_TIME_LIMIT_S); its checkpoints are kept: resume it to continue, or "
        "train fewer epochs"
    )


@shared_task(bind=True, soft_time_limit=SOFT_LIMIT, time_limit=HARD_LIMIT, max_retries=None)
def train_run(self, run_id: int) -> None:
    try:
        services.training_run_execute(run_id=run_id)
    except services.RunBusy as busy:
        raise self.retry(countdown=busy.retry_after) from busy
    except SoftTimeLimitExceeded:
        services.training_run_fail(run_id=run_id, error=_time_limit_message())


@shared_task(bind=True, soft_time_limit=SOFT_LIMIT, time_limit=HARD_LIMIT, max_retries=None)
def run_grid_step(self, grid_id: int) -> None:
    """Train the grid's next run, then queue the next step; the last step writes the report.
    One run per task: each gets the full time limit."""
    run = services.experiment_grid_next_run(grid_id=grid_id)
    if run is None:
        services.experiment_grid_finish(grid_id=grid_id)
        return
    try:
        services.training_run_execute(run_id=run.pk)
    except services.RunBusy as busy:
        raise self.retry(countdown=busy.retry_after) from busy
    except SoftTimeLimitExceeded:
        services.training_run_fail(run_id=run.pk, error=_time_limit_message())
    except Exception:  # recorded on the run; the grid goes on with the next setting
        log.exception("grid %s: run %s failed", grid_id, run.pk)
    run_grid_step.delay(grid_id)


@shared_task(soft_time_limit=3600, time_limit=3900)
def predict_new_clips(run_id: int, clip_ids: list[int]) -> None:
    run = TrainingRun.objects.filter(pk=run_id).first()
    if run is None:
        return
    try:
        services.predictions_for_new_clips(
            run=run, clips=list(Clip.objects.filter(pk__in=clip_ids))
        )
    except SoftTimeLimitExceeded:
        # No row to fail: predictions are stored together at the end, so nothing is half-done.
        log.warning("run %s: predicting %d new clips ran out of time", run_id, len(clip_ids))
