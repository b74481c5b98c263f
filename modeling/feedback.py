"""Model predictions as feedback: for trainees after a grade, for experts comparing their
grades with the panel, and for sample triage (which sperm of a sample to pick).

Reads only, except `triage_predictions_ensure`, which predicts a sample's missing clips.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from django.conf import settings
from django.db.models import QuerySet

from annotation.aggregation.distributions import SCORES, emd
from annotation.grades import GRADE_INDEX, GRADES
from annotation.grading.answers import ratings_mark_panel_seen
from annotation.models import Clip, ClipAssignment, Rating, Video
from datasets.models import TrainingSet
from modeling.models import P_FIELDS, JobStatus, Prediction, TrainingRun

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def _p(prediction: Prediction | None) -> dict[str, float] | None:
    if prediction is None:
        return None
    return dict(zip(GRADES, prediction.p, strict=True))


def runs_succeeded() -> QuerySet[TrainingRun]:
    return TrainingRun.objects.filter(status=JobStatus.SUCCEEDED).order_by("-finished_at", "-pk")


# --- trainees -------------------------------------------------------------------------------


def trainee_prediction(*, practice_set: TrainingSet, clip_id: int) -> Prediction | None:
    """The model's out-of-fold prediction of a practice clip: from TRAINEE_RUN_ID when set,
    else from the newest succeeded run on the set's version that predicted the clip. None:
    no model has predicted it."""
    predictions = Prediction.objects.filter(
        clip_id=clip_id, run__status=JobStatus.SUCCEEDED, run__version=practice_set.version
    ).select_related("run")
    if settings.TRAINEE_RUN_ID:
        predictions = predictions.filter(run_id=settings.TRAINEE_RUN_ID)
    return predictions.order_by("-run__finished_at", "-run_id").first()


# --- experts: their grades against the panel ------------------------------------------------


@dataclass(frozen=True)
class CompareRow:
    clip: Clip
    grade: str
    panel: dict[str, int]  # vote counts A..E, the expert's own vote included
    panel_mean: float
    gap: float  # the expert's score - the panel's mean score (positive = harsher)
    emd: float  # EMD between the expert's one-hot grade and the panel distribution
    prediction: dict[str, float] | None
    run: TrainingRun | None


def _latest_predictions(clip_ids: Iterable[int]) -> dict[int, Prediction]:
    """Per clip, the prediction of the newest succeeded run that has one (one query)."""
    latest: dict[int, Prediction] = {}
    rows = (
        Prediction.objects.filter(clip_id__in=list(clip_ids), run__status=JobStatus.SUCCEEDED)
        .select_related("run")
        .order_by("clip_id", "-run__finished_at", "-run_id")
    )
    for prediction in rows:
        latest.setdefault(prediction.clip_id, prediction)
    return latest


def expert_comparison(*, expert: User) -> list[CompareRow]:
    """The clips this expert graded, with the panel and the model, those where they differ
    most from the panel first (by EMD, then by the gap in mean score).

    Blind grading holds: only clips with the expert's own Rating appear, and none held for
    them right now (a hidden repeat they are about to answer again). Empty when the lab hides
    the panel after a vote (SHOW_PANEL_AFTER_VOTE off).
    """
    if not settings.SHOW_PANEL_AFTER_VOTE:
        return []
    held = ClipAssignment.objects.filter(expert=expert).values("clip_id")
    ratings = list(
        Rating.objects.filter(rater=expert)
        .exclude(clip_id__in=held)
        .select_related("clip__video")  # the compare page's player reads the video's fps
        .order_by("clip__external_id")
    )
    # Showing the panel fixes the counted grade of every clip on the page.
    ratings_mark_panel_seen(expert=expert, clip_ids=[r.clip_id for r in ratings])
    predictions = _latest_predictions(r.clip_id for r in ratings)
    rows = []
    for rating in ratings:
        counts = np.array(rating.clip.vote_counts, dtype=float)
        p = counts / counts.sum()
        own = np.eye(len(GRADES))[GRADE_INDEX[rating.grade]]
        mean = float(p @ SCORES)
        prediction = predictions.get(rating.clip_id)
        rows.append(
            CompareRow(
                clip=rating.clip,
                grade=rating.grade,
                panel=dict(zip(GRADES, rating.clip.vote_counts, strict=True)),
                panel_mean=mean,
                gap=float(SCORES[GRADE_INDEX[rating.grade]] - mean),
                emd=float(emd(own, p)),
                prediction=_p(prediction),
                run=prediction.run if prediction else None,
            )
        )
    rows.sort(key=lambda r: (-r.emd, -abs(r.gap), r.clip.external_id))
    return rows


# --- sample triage --------------------------------------------------------------------------


def triage_order(predictions: Sequence[tuple[int, Sequence[float]]]) -> list[int]:
    """Clip ids ranked for picking: highest predicted p_A + p_B first, ties broken by the
    higher p_A, then by the lower clip id. predictions: (clip id, [p_A, ..., p_E]) pairs."""
    return [
        clip_id
        for clip_id, p in sorted(
            predictions, key=lambda item: (-(item[1][0] + item[1][1]), -item[1][0], item[0])
        )
    ]


@dataclass(frozen=True)
class TriageRow:
    rank: int | None  # 1 = best; None while the clip has no prediction
    clip: Clip
    p_good: float | None  # p_A + p_B
    prediction: dict[str, float] | None
    kinematics: dict[str, float]


@dataclass(frozen=True)
class Triage:
    video: Video
    run: TrainingRun
    rows: list[TriageRow]
    pending: int  # clips whose prediction is still being made
    error: str  # why predictions could not be made, verbatim; "" when fine


def triage_predictions_ensure(*, run: TrainingRun, clips: Sequence[Clip]) -> tuple[int, str]:
    """Queue the prediction of the sample's clips the run has not predicted, in the worker
    (a page view never runs inference or writes predictions). Returns (clips left pending,
    error message or "")."""
    from modeling.services import TrainingError, predictions_new_clips_enqueue

    have = set(Prediction.objects.filter(run=run, clip__in=clips).values_list("clip_id", flat=True))
    missing = [c for c in clips if c.pk not in have]
    if not missing:
        return 0, ""
    try:
        predictions_new_clips_enqueue(run=run)
    except TrainingError as exc:
        return len(missing), str(exc)
    return len(missing), ""


def sample_triage(*, video: Video, run: TrainingRun, predict_missing: bool = True) -> Triage:
    """The clips of one sample (video) ranked by predicted p_A + p_B (`triage_order`), with
    their predicted distributions and kinematics; clips without a prediction come last."""
    clips = list(video.clips.order_by("target_index", "pk"))
    pending, error = (0, "")
    if predict_missing and clips:
        pending, error = triage_predictions_ensure(run=run, clips=clips)
    predictions = {
        p.clip_id: p
        for p in Prediction.objects.filter(run=run, clip__in=clips).only(*P_FIELDS, "clip_id")
    }
    order = triage_order([(cid, p.p) for cid, p in predictions.items()])
    by_id = {c.pk: c for c in clips}
    rows = [
        TriageRow(
            rank=i + 1,
            clip=by_id[cid],
            p_good=predictions[cid].p_a + predictions[cid].p_b,
            prediction=_p(predictions[cid]),
            kinematics=by_id[cid].kinematics_dict(),
        )
        for i, cid in enumerate(order)
    ]
    rows += [
        TriageRow(None, c, None, None, c.kinematics_dict())
        for c in clips
        if c.pk not in predictions
    ]
    return Triage(video=video, run=run, rows=rows, pending=pending, error=error)
