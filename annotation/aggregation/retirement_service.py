"""Adaptive retirement of clips (the rule: `annotation.aggregation.retirement.retirement_decision`).

`Clip.retired_at` mirrors the rule applied to the clip's current votes with the settings
RETIRE_TOLERANCE, RETIRE_MIN_VOTES and MAX_VOTES: a clip is retired once settled, and reopened
(retired_at back to None) when a changed grade makes it unsettled again, so the queue asks
more experts about a clip whose distribution turned out less certain than it looked. The rule
is a function of the votes alone, so re-running it (`manage.py retire_settled`, after an import
or a change of settings) gives the same answer the vote-by-vote calls gave.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from annotation.aggregation.retirement import retirement_decision
from annotation.grades import VOTE_FIELDS
from annotation.models import Clip


def clips_settled(counts: np.ndarray) -> np.ndarray:
    """The retirement rule with this installation's settings: (..., 5) votes -> (...) bool."""
    # A lab that asks for fewer votes than the minimum gets its maximum as the minimum.
    return retirement_decision(
        counts,
        min_votes=min(settings.RETIRE_MIN_VOTES, settings.MAX_VOTES),
        max_votes=settings.MAX_VOTES,
        tolerance=settings.RETIRE_TOLERANCE,
    )


def clip_retire_if_settled(
    *, clip: Clip, now: datetime | None = None, counts: Sequence[int] | None = None
) -> bool:
    """Retire the clip if its votes are settled, reopen it if they no longer are; return whether
    it is retired after the call.

    Call with the Clip row lock held, inside the transaction that changed its votes. `counts`
    are the clip's votes A..E after the change, as the statement that changed them returned
    them; `clip.retired_at` must then be current (read under the lock). Without counts both
    are read again from the database (the vote-count updates use F() expressions, so a locked
    instance may hold the counts from before the vote).
    """
    if counts is not None:
        retired_at = clip.retired_at
    else:
        *counts, retired_at = (
            Clip.objects.filter(pk=clip.pk).values_list(*VOTE_FIELDS, "retired_at").get()
        )
    settled = bool(clips_settled(np.array(counts)))
    if settled and retired_at is None:
        clip.retired_at = now or timezone.now()
        Clip.objects.filter(pk=clip.pk).update(retired_at=clip.retired_at)
    elif not settled and retired_at is not None:
        clip.retired_at = None
        Clip.objects.filter(pk=clip.pk).update(retired_at=None)
    else:
        clip.retired_at = retired_at
    return settled


@dataclass(frozen=True)
class RetireSummary:
    n_clips: int
    retired: int  # clips retired by this run
    reopened: int  # retired clips whose votes are no longer settled
    n_retired: int  # retired clips after the run
    dry_run: bool


def clips_retire_settled(*, dry_run: bool = False, now: datetime | None = None) -> RetireSummary:
    """Apply the rule to every clip (imported data, changed settings), in one transaction.

    Locks all Clip rows in id order, so no vote can slip in between the decision and the
    update (the grading service locks one clip at a time: no deadlock).
    """
    now = now or timezone.now()
    with transaction.atomic():
        rows = list(
            Clip.objects.select_for_update()
            .order_by("pk")
            .values_list("pk", "retired_at", *VOTE_FIELDS)
        )
        pks = np.array([row[0] for row in rows], dtype=np.int64)
        was_retired = np.array([row[1] is not None for row in rows], dtype=bool)
        counts = np.array([row[2:] for row in rows], dtype=np.int64).reshape(-1, len(VOTE_FIELDS))
        settled = clips_settled(counts)
        to_retire = pks[settled & ~was_retired].tolist()
        to_reopen = pks[~settled & was_retired].tolist()
        if not dry_run:
            Clip.objects.filter(pk__in=to_retire).update(retired_at=now)
            Clip.objects.filter(pk__in=to_reopen).update(retired_at=None)
    return RetireSummary(
        n_clips=len(rows),
        retired=len(to_retire),
        reopened=len(to_reopen),
        n_retired=int(settled.sum()) if not dry_run else int(was_retired.sum()),
        dry_run=dry_run,
    )


__all__ = ["RetireSummary", "clip_retire_if_settled", "clips_retire_settled", "clips_settled"]
