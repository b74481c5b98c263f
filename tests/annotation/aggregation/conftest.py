"""Fixtures of the aggregation web tests: clips with small real media, experts, and votes
written the way the importer writes them (bulk rows, then a recount of the clip counts)."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from annotation.ingest.services import clip_vote_counts_recount
from annotation.models import Clip, Rating, RatingChange
from tests.annotation.grading.conftest import stub_clip_create
from tests.conftest import PASSWORD

_ids = itertools.count(1)


@pytest.fixture
def make_clips(db) -> Callable[..., list[Clip]]:
    """Factory: ``make_clips(n, n_frames=4, prefix="agg")`` -> n clips of READY videos (one
    patient each), with a filmstrip PNG, frame array and stub MP4 under MEDIA_ROOT, no votes.
    Clip ids sort in creation order."""

    def make(n: int, *, n_frames: int = 4, prefix: str = "agg") -> list[Clip]:
        clips = []
        for _ in range(n):
            tag = f"{prefix}{next(_ids):04d}"
            patient = f"P-{tag}-{uuid.uuid4().hex[:4]}"  # one patient each
            clips.append(
                stub_clip_create(
                    external_id=tag, patient_code=patient, n_frames=n_frames, start=(60.0, 70.0)
                )
            )
        return clips

    return make


@pytest.fixture
def make_experts(make_user) -> Callable[..., list]:
    """``make_experts(n, prefix="rater")``: n expert accounts with distinctive names."""
    counter = itertools.count(1)

    def make(n: int, *, prefix: str = "rater") -> list:
        return [make_user("expert", f"{prefix}-{next(counter):02d}") for _ in range(n)]

    return make


@pytest.fixture
def add_votes(db) -> Callable[..., list[Rating]]:
    """``add_votes(clip, "AABC", raters, time_ms=5000, age_hours=0)``: rater k grades the clip
    grades[k]; Rating and RatingChange rows are bulk-written and the clip's counts recounted,
    as `datasets.importer` does. A space in `grades` skips that rater."""

    def add(
        clip: Clip,
        grades: str,
        raters: Sequence,
        *,
        time_ms: int | Sequence[int] = 5000,
        age_hours: float = 0.0,
    ) -> list[Rating]:
        times = [time_ms] * len(grades) if isinstance(time_ms, int) else list(time_ms)
        rows = [
            Rating(clip=clip, rater=rater, grade=grade, time_spent_ms=ms)
            for grade, rater, ms in zip(grades, raters, times, strict=False)
            if grade != " "
        ]
        Rating.objects.bulk_create(rows)
        RatingChange.objects.bulk_create([RatingChange(rating=r, grade=r.grade) for r in rows])
        if age_hours:
            then = timezone.now() - timedelta(hours=age_hours)
            Rating.objects.filter(pk__in=[r.pk for r in rows]).update(
                created_at=then, updated_at=then
            )
        clip_vote_counts_recount(clip_ids=[clip.pk])
        clip.refresh_from_db()
        return rows

    return add


@pytest.fixture
def client_for() -> Callable[..., Client]:
    """``client_for(user)``: a test client logged in as that user."""

    def make(user) -> Client:
        client = Client()
        assert client.login(username=user.username, password=PASSWORD)
        return client

    return make
