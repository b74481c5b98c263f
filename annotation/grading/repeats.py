"""Hidden repeats: a clip an expert graded a while ago is offered again, blind, to measure how
consistent the expert is with themself (`annotation.aggregation.agreement.intra_rater_consistency`).

The answer is stored as a RepeatRating, apart from Rating: it never counts in a grade
distribution, never moves the clip's vote counts, and so takes no Clip lock.

Settings: REPEAT_RATE (share of queue requests that offer a repeat; 0 switches repeats off) and
REPEAT_MIN_AGE_H (hours since the expert last graded or changed the clip, so that a repeat
tests their judgement rather than their memory).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from annotation.errors import ServiceError
from annotation.grading.checks import grade_check, time_spent_check
from annotation.models import Clip, Rating, RepeatRating, Video

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def _graded_before() -> datetime:
    return timezone.now() - timedelta(hours=settings.REPEAT_MIN_AGE_H)


def repeat_candidate_for_expert(*, expert: User, rng: random.Random | None = None) -> Clip | None:
    """A clip to offer this expert again as a hidden repeat, or None (most of the time).

    With probability REPEAT_RATE, and only while the expert's repeats stay below REPEAT_RATE
    of their grades (however often the queue is asked), picks at random one clip they graded
    at least REPEAT_MIN_AGE_H hours ago and have not repeated yet. Writes nothing: the
    caller offers the clip and `repeat_submit` stores the answer.
    """
    rate = settings.REPEAT_RATE
    rng = rng or random.Random()
    if rate <= 0 or rng.random() >= rate:
        return None
    n_ratings = Rating.objects.filter(rater=expert).count()
    if RepeatRating.objects.filter(rater=expert).count() + 1 > rate * n_ratings:
        return None
    repeated = RepeatRating.objects.filter(clip=OuterRef("pk"), rater=expert)
    graded = Rating.objects.filter(
        clip=OuterRef("pk"), rater=expert, updated_at__lte=_graded_before()
    )
    # A field-guide clip is never repeated: the expert may have seen the curator's grade of it.
    candidates = Clip.objects.filter(
        Exists(graded), ~Exists(repeated), video__status=Video.Status.READY, reference__isnull=True
    ).order_by("pk")
    n_candidates = candidates.count()
    if n_candidates == 0:
        return None
    return candidates[rng.randrange(n_candidates)]


def repeat_submit(*, expert: User, clip: Clip, grade: str, time_spent_ms: int) -> RepeatRating:
    """Store an expert's answer to a hidden repeat of a clip they graded before.

    Refused (ServiceError) when they have not graded the clip, graded or changed it less than
    REPEAT_MIN_AGE_H hours ago, or already answered a repeat of it. The expert's current
    grade of the clip is kept as `original_grade`; their Rating and the clip's counts stay as
    they are.
    """
    grade = grade_check(grade)
    time_spent_ms = time_spent_check(time_spent_ms)
    rating = Rating.objects.filter(clip=clip, rater=expert).first()
    if rating is None:
        raise ServiceError(
            f"you have not graded clip {clip.external_id}: a repeat needs your first grade"
        )
    if rating.updated_at > _graded_before():
        raise ServiceError(
            f"clip {clip.external_id} was graded less than {settings.REPEAT_MIN_AGE_H:g} hours "
            "ago; it cannot be repeated yet"
        )
    try:
        with transaction.atomic():
            return RepeatRating.objects.create(
                clip=clip,
                rater=expert,
                grade=grade,
                original_grade=rating.grade,
                time_spent_ms=time_spent_ms,
            )
    except IntegrityError:
        raise ServiceError(f"you already answered the repeat of clip {clip.external_id}") from None


__all__ = ["repeat_candidate_for_expert", "repeat_submit"]
