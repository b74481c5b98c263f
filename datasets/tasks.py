from __future__ import annotations

import contextlib

from celery import shared_task

from datasets import services


@shared_task(soft_time_limit=3000, time_limit=3300)
def build_dataset_version(version_id: int) -> None:
    if not services.version_claim(version_id=version_id):
        return
    # A DatasetError is recorded on the version as its error; nothing more to do here.
    with contextlib.suppress(services.DatasetError):
        services.dataset_version_build(version_id=version_id)
