"""The production run: whose predictions steer adaptive retirement, and with what weight.

A curator chooses one succeeded run (`retirement_run_choose`). Its predictions of clips it did
not train on (out-of-fold rows, fold set, and clips ingested after its version, fold None:
every Prediction row a run stores is one of the two) become the clips' RetirementPrior rows;
the weight m of those pseudo-votes is fitted by cross-validation on the clips that already
have full panels (at least MERSV_RETIRE_FULL_PANEL_VOTES votes) and stored with the run, with
the fit's figures, for the curator pages. With a fit that does not help (held-out gain under
2 %, or too few full panels) m is 0 and the rule is today's. The choice is audited
(`retirement_run_choose`) and the rule is applied again to every clip in the same transaction;
frozen dataset versions keep their own copies and are never touched.

Experts never see any of it: the prior decides only when to stop asking about a clip.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from annotation.access.audit import audit_record
from annotation.aggregation.retirement import PriorWeightFit, prior_weight_fit
from annotation.aggregation.retirement_service import (
    RetireSummary,
    clips_retire_settled,
    retirement_policy_locked,
)
from annotation.errors import ServiceError
from annotation.grades import VOTE_FIELDS
from annotation.models import RetirementPolicy, RetirementPrior
from modeling.models import P_FIELDS, JobStatus, Prediction, TrainingRun


class ProductionRunError(ServiceError):
    """A run that cannot steer retirement; the message says why."""


def run_prior_weight_fit(*, run: TrainingRun) -> PriorWeightFit:
    """Fit m for the run's predictions on the clips with full panels (no write)."""
    rows = list(
        Prediction.objects.filter(
            run=run, clip__votes_total__gte=settings.RETIRE_FULL_PANEL_VOTES
        ).values_list(*P_FIELDS, *(f"clip__{f}" for f in VOTE_FIELDS))
    )
    table = np.array(rows, dtype=float).reshape(-1, 2 * len(P_FIELDS))
    q, counts = table[:, : len(P_FIELDS)], table[:, len(P_FIELDS) :]
    q = q / np.maximum(q.sum(axis=1, keepdims=True), 1e-12)
    return prior_weight_fit(counts, q, n_seen=_seen_counts())


def _seen_counts() -> tuple[int, ...]:
    # Judge the posterior mean at vote counts a clip meets before it retires, below the panel.
    full = settings.RETIRE_FULL_PANEL_VOTES
    return tuple(n for n in (5, 10, 15, 20) if n < full) or (max(full - 1, 1),)


def retirement_run_choose(
    *, run: TrainingRun | None, user: Any, request: HttpRequest | None = None
) -> tuple[RetirementPolicy, RetireSummary]:
    """Make `run` the production run (None: no model prior), fit and store its m, write the
    clips' priors, audit, and re-apply the rule to every clip: one transaction.

    Locks the policy row first (two curators choosing at once are serialised), then
    `clips_retire_settled` locks every clip in id order.
    """
    if run is not None and run.status != JobStatus.SUCCEEDED:
        raise ProductionRunError(
            f"run {run.pk} ({run.name}) has status {run.status}; only a succeeded run can steer "
            "retirement"
        )
    if run is not None and not run.predictions.exists():
        raise ProductionRunError(f"run {run.pk} ({run.name}) has no predictions to use")
    with transaction.atomic():
        policy = retirement_policy_locked()
        before = {"run_id": policy.run_id, "prior_weight": policy.prior_weight}
        RetirementPrior.objects.all().delete()
        if run is None:
            policy.run_id, policy.run_name, policy.prior_weight = None, "", 0.0
            fit_detail: dict[str, Any] = {}
        else:
            fit = run_prior_weight_fit(run=run)
            fit_detail = _json_ready(fit.to_dict())
            run.retirement_prior_weight = fit.weight
            run.retirement_prior_fit = fit_detail
            run.save(update_fields=["retirement_prior_weight", "retirement_prior_fit"])
            predicted = Prediction.objects.filter(run=run).values_list("clip_id", *P_FIELDS)
            RetirementPrior.objects.bulk_create(
                RetirementPrior(
                    clip_id=clip_id, run_id=run.pk, **dict(zip(P_FIELDS, p, strict=True))
                )
                for clip_id, *p in predicted
            )
            policy.run_id, policy.run_name, policy.prior_weight = run.pk, run.name, fit.weight
        policy.prior_fit = fit_detail
        policy.changed_at = timezone.now()
        policy.save(update_fields=["run_id", "run_name", "prior_weight", "prior_fit", "changed_at"])
        audit_record(
            action="retirement_run_choose",
            user=user,
            object_type="modeling.trainingrun" if run is not None else "",
            object_id=run.pk if run is not None else "",
            request=request,
            detail={
                "before": before,
                "after": {"run_id": policy.run_id, "prior_weight": policy.prior_weight},
                "fit": fit_detail,
            },
        )
        summary = clips_retire_settled(actor=user)
    return policy, summary


def retirement_priors_add(*, run: TrainingRun, predictions: Sequence[Prediction]) -> int:
    """Give new clips predicted by the production run their priors (a no-op for other runs).
    Returns the number of priors written."""
    if not RetirementPolicy.objects.filter(pk=1, run_id=run.pk).exists():
        return 0
    RetirementPrior.objects.bulk_create(
        [
            RetirementPrior(
                clip_id=p.clip_id, run_id=run.pk, **{f: getattr(p, f) for f in P_FIELDS}
            )
            for p in predictions
        ],
        update_conflicts=True,
        unique_fields=["clip"],
        update_fields=["run_id", *P_FIELDS],
    )
    return len(predictions)


def _json_ready(values: dict[str, Any]) -> dict[str, Any]:
    """NaN (no fit) as None, tuples as lists: JSON the database and the pages accept."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, float) and not np.isfinite(value):
            out[key] = None
        elif isinstance(value, tuple):
            out[key] = list(value)
        else:
            out[key] = value
    return out


__all__ = [
    "ProductionRunError",
    "retirement_priors_add",
    "retirement_run_choose",
    "run_prior_weight_fit",
]
