"""All expert ratings as aligned index arrays, read in one query: the frame the panel
statistics (`annotation.aggregation.selectors`) and the rater model fit
(`annotation.aggregation.rater_model_service`) work on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.contrib.auth import get_user_model

from annotation.aggregation.distributions import grade_counts
from annotation.grades import GRADES
from annotation.models import Clip, Rating


@dataclass(frozen=True)
class RatingsFrame:
    """Every expert rating as aligned index arrays (the layout of `aggregation.distributions`)."""

    clip_idx: np.ndarray  # (n_ratings,) int, index into clip_pks
    rater_idx: np.ndarray  # (n_ratings,) int, index into rater_pks
    grade_idx: np.ndarray  # (n_ratings,) int, 0=A .. 4=E
    time_ms: np.ndarray  # (n_ratings,) int, time spent on the grade; 0 = not measured (import)
    clip_pks: np.ndarray  # (n_clips,) int, every clip, ascending
    clip_ids: tuple[str, ...]  # (n_clips,) external ids
    rater_pks: np.ndarray  # (n_raters,) int, users with at least one rating, ascending
    rater_names: tuple[str, ...]  # (n_raters,) pseudonymous user names

    @property
    def n_clips(self) -> int:
        return int(self.clip_pks.size)

    @property
    def n_raters(self) -> int:
        return int(self.rater_pks.size)

    def counts(self) -> np.ndarray:
        """Votes per clip and grade, (n_clips, 5)."""
        return grade_counts(self.clip_idx, self.grade_idx, self.n_clips)


def ratings_frame() -> RatingsFrame:
    """All expert ratings in one query (plus one for the clips, one for the raters' names)."""
    clips = list(Clip.objects.order_by("pk").values_list("pk", "external_id"))
    clip_pks = np.array([pk for pk, _ in clips], dtype=np.int64)
    rows = list(
        Rating.objects.order_by().values_list("clip_id", "rater_id", "grade", "time_spent_ms")
    )
    if rows:
        clip_col, rater_col, grade_col, time_col = zip(*rows, strict=True)
    else:
        clip_col = rater_col = grade_col = time_col = ()
    rating_clips = np.fromiter(clip_col, dtype=np.int64, count=len(rows))
    rater_pks, rater_idx = np.unique(
        np.fromiter(rater_col, dtype=np.int64, count=len(rows)), return_inverse=True
    )
    # Grades are single ASCII letters: one join and a byte view beat a dict lookup per row.
    grade_idx = np.frombuffer("".join(grade_col).encode("ascii"), dtype=np.uint8).astype(np.int64)
    grade_idx -= ord(GRADES[0])
    names = dict(
        get_user_model().objects.filter(pk__in=rater_pks.tolist()).values_list("pk", "username")
    )
    return RatingsFrame(
        clip_idx=np.searchsorted(clip_pks, rating_clips),
        rater_idx=rater_idx.astype(np.int64).ravel(),
        grade_idx=grade_idx,
        time_ms=np.fromiter(time_col, dtype=np.int64, count=len(rows)),
        clip_pks=clip_pks,
        clip_ids=tuple(external_id for _, external_id in clips),
        rater_pks=rater_pks,
        rater_names=tuple(names[pk] for pk in rater_pks.tolist()),
    )
