"""What the curator pages show about retirement (never an expert's: curator views only).

`clip_retirement`: for one clip, the votes used, their weights, the model prior's share, the
posterior's expected EMD against its tolerance, the mode-change bound, and why the clip is
retired or still open. `retirement_overview`: the rule, the production run with its fitted m
and the fit's figures, the rater-aware weights per expert, and the predicted votes still
needed by the open clips. Both go through `retirement_service.clips_rule_outcome`, the rule
the queue runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from django.contrib.auth import get_user_model

from annotation.aggregation.retirement import (
    RetirementRule,
    reliability_weights,
    rule_alpha,
    votes_needed,
)
from annotation.aggregation.retirement_service import (
    ClipsRuleState,
    clips_rule_outcome,
    rater_parameters,
    retirement_policy,
    retirement_rule,
)
from annotation.grades import GRADES, VOTE_FIELDS
from annotation.models import Clip


def _alpha(state: ClipsRuleState) -> np.ndarray:
    """The posterior the rule judged, (n, 5)."""
    return rule_alpha(
        state.votes, rule=state.rule, prior_q=state.prior_q, prior_weight=state.prior_weight
    )


REASONS = {
    "settled": "its posterior is settled: expected EMD within the tolerance",
    "max_votes": "it reached the maximum number of votes",
    "too_few_votes": "it has fewer votes than the minimum",
    "uncertain": "its posterior is still too uncertain (expected EMD above the tolerance)",
    "mode": "its posterior still allows another grade mode (mode guard)",
}


@dataclass(frozen=True)
class ClipRetirement:
    n_votes: int
    weighted_votes: float  # sum of the rater-aware vote weights (= n_votes without)
    prior_weight: float  # m for this clip (0: no prior); the rule counts prior_discount * m
    prior_share: float  # m / the posterior's total concentration
    prior_q: dict[str, float] | None
    posterior_mean: dict[str, float]
    expected_emd: float
    tolerance: float
    mode_change: float
    mode_guard: float
    prior_discount: float
    settled: bool
    reason: str  # key of REASONS
    reason_text: str
    votes_needed: int  # predicted further votes until settled (0 when settled)
    retired: bool
    run_id: int | None
    run_name: str


def clip_retirement(clip: Clip) -> ClipRetirement:
    counts = np.array([[getattr(clip, f) for f in VOTE_FIELDS]])
    policy = retirement_policy()
    state = clips_rule_outcome([clip.pk], counts, policy=policy)
    rule: RetirementRule = state.rule
    outcome = state.outcome
    weighted = float(state.weighted_votes[0])
    has_prior = bool(state.prior_weight[0] > 0)
    alpha = _alpha(state)[0]
    mean = alpha / alpha.sum()
    needed = votes_needed(
        alpha,
        n_votes=state.n_votes[0],
        rule=rule,
        weight_per_vote=weighted / state.n_votes[0] if state.n_votes[0] else 1.0,
    )
    if outcome.settled[0]:
        needed = np.asarray(0)
    reason = str(outcome.reason[0])
    return ClipRetirement(
        n_votes=int(state.n_votes[0]),
        weighted_votes=weighted,
        prior_weight=float(state.prior_weight[0]),
        prior_share=float(outcome.prior_share[0]),
        prior_q=(
            dict(zip(GRADES, map(float, state.prior_q[0]), strict=True))
            if state.prior_q is not None and has_prior
            else None
        ),
        posterior_mean=dict(zip(GRADES, map(float, mean), strict=True)),
        expected_emd=float(outcome.expected_emd[0]),
        tolerance=rule.tolerance,
        mode_change=float(outcome.mode_change[0]),
        mode_guard=rule.mode_guard,
        prior_discount=rule.prior_discount,
        settled=bool(outcome.settled[0]),
        reason=reason,
        reason_text=REASONS[reason],
        votes_needed=int(needed),
        retired=clip.retired_at is not None,
        run_id=policy.run_id,
        run_name=policy.run_name,
    )


@dataclass(frozen=True)
class ExpertWeight:
    rater: str
    severity: float
    noise: float
    weight: float


@dataclass(frozen=True)
class RetirementOverview:
    rule: dict[str, Any]
    run_id: int | None
    run_name: str
    prior_weight: float
    prior_fit: dict[str, Any]
    n_open: int
    votes_still_needed: int  # predicted, summed over the open clips
    n_with_prior: int
    experts: list[ExpertWeight]
    rater_aware_active: bool


def retirement_overview() -> RetirementOverview:
    policy = retirement_policy()
    rule = retirement_rule()
    rows = list(
        Clip.objects.filter(retired_at__isnull=True).order_by("pk").values_list("pk", *VOTE_FIELDS)
    )
    pks = [r[0] for r in rows]
    counts = np.array([r[1:] for r in rows], dtype=float).reshape(-1, len(GRADES))
    needed_total = 0
    n_with_prior = 0
    if pks:
        state = clips_rule_outcome(pks, counts, rule=rule, policy=policy)
        has_prior = state.prior_weight > 0
        n_with_prior = int(has_prior.sum())
        voted = state.n_votes > 0
        # Future votes weigh what the open clips' votes weigh on average (1 without weights).
        per_vote = (
            float((state.weighted_votes[voted] / state.n_votes[voted]).mean())
            if voted.any()
            else 1.0
        )
        needed = votes_needed(
            _alpha(state),
            n_votes=state.n_votes,
            rule=rule,
            weight_per_vote=per_vote,
        )
        needed_total = int(np.where(state.outcome.settled, 0, needed).sum())
    experts: list[ExpertWeight] = []
    raters = rater_parameters()
    if raters is not None and raters.rater_pks.size:
        names = dict(
            get_user_model()
            .objects.filter(pk__in=raters.rater_pks.tolist())
            .values_list("pk", "username")
        )
        weights = reliability_weights(raters.noise)
        experts = [
            ExpertWeight(
                rater=names.get(int(pk), str(pk)),
                severity=float(sev),
                noise=float(noi),
                weight=float(w),
            )
            for pk, sev, noi, w in zip(
                raters.rater_pks, raters.severity, raters.noise, weights, strict=True
            )
        ]
    return RetirementOverview(
        rule=rule.to_dict(),
        run_id=policy.run_id,
        run_name=policy.run_name,
        prior_weight=policy.prior_weight,
        prior_fit=policy.prior_fit,
        n_open=len(pks),
        votes_still_needed=needed_total,
        n_with_prior=n_with_prior,
        experts=experts,
        rater_aware_active=rule.rater_aware and raters is not None,
    )


__all__ = ["ClipRetirement", "RetirementOverview", "clip_retirement", "retirement_overview"]
