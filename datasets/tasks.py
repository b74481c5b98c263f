from __future__ import annotations

import contextlib

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from datasets import services

BUILD_SOFT_LIMIT_S = 3000


@shared_task(soft_time_limit=BUILD_SOFT_LIMIT_S, time_limit=BUILD_SOFT_LIMIT_S + 300)
def build_dataset_version(version_id: int) -> None:
    if not services.version_claim(version_id=version_id):
        return
    # A DatasetError is recorded on the version as its error; nothing more to do here.
    try:
        with contextlib.suppress(services.DatasetError):
            services.dataset_version_build(version_id=version_id)
    except SoftTimeLimitExceeded:
        services.dataset_version_fail(
            version_id=version_id,
            error=f"building took longer than {BUILD_SOFT_LIMIT_S} s and was stopped; "
            "select fewer clips or ask an admin to raise the limit",
        )
