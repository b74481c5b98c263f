"""Adaptive retirement of clips: the rule of `annotation.aggregation.retirement` applied to the
database, by the live queue (vote by vote) and by `manage.py retire_settled` (every clip).

Both call `clips_rule_outcome`, the one function that turns a clip's state into the rule's
inputs: its votes (rater-aware with the rater model's latest snapshot when
MERSV_RETIRE_RATER_AWARE is on), its raw vote count, and the production run's prediction
(RetirementPrior) with the run's fitted weight m (RetirementPolicy). So the two give the same
answer for the same state (tests/annotation/aggregation/test_retirement_rule.py).

`Clip.retired_at` mirrors the rule: a clip is retired once settled, and reopened (retired_at
back to None) when a changed grade, a new rater-model snapshot or a new production run makes
it unsettled again. The rule reads only live tables: frozen dataset versions keep their own
copies and are never touched. A change of the rule's settings is audited
(`retirement_rule_change`) by the first `clips_retire_settled` that applies it; a change of
the production run by `modeling.retirement_prior.retirement_run_choose`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from annotation.aggregation.retirement import (
    RetirementRule,
    RuleOutcome,
    rater_adjusted_votes,
    rule_decision,
)
from annotation.grades import GRADES, VOTE_FIELDS
from annotation.models import (
    Clip,
    RaterModelSnapshot,
    Rating,
    RetirementPolicy,
    RetirementPrior,
)


def retirement_rule() -> RetirementRule:
    """The rule with this installation's settings."""
    # A lab that asks for fewer votes than the minimum gets its maximum as the minimum.
    return RetirementRule(
        min_votes=min(settings.RETIRE_MIN_VOTES, settings.MAX_VOTES),
        max_votes=settings.MAX_VOTES,
        tolerance=settings.RETIRE_TOLERANCE,
        prior_discount=settings.RETIRE_PRIOR_DISCOUNT,
        mode_guard=settings.RETIRE_MODE_GUARD,
        rater_aware=settings.RETIRE_RATER_AWARE,
    )


def retirement_policy() -> RetirementPolicy:
    """The policy in force, read only (a vote writes nothing here): the row, or an unsaved
    default (no production run, m = 0) before anyone chose one or ran retire_settled."""
    return RetirementPolicy.objects.filter(pk=1).first() or RetirementPolicy(pk=1)


def retirement_policy_locked() -> RetirementPolicy:
    """The policy row, created if missing, locked for the rest of the transaction."""
    RetirementPolicy.objects.get_or_create(pk=1)
    return RetirementPolicy.objects.select_for_update().get(pk=1)


@dataclass(frozen=True)
class RaterParameters:
    """The rater model's latest snapshot as arrays keyed by rater pk."""

    rater_pks: np.ndarray  # (n_raters,) ascending
    severity: np.ndarray
    noise: np.ndarray
    thresholds: np.ndarray


def rater_parameters() -> RaterParameters | None:
    """The newest rater-model snapshot (stale or not: a refit moves every clip the same way
    at the next `retire_settled`), or None without one."""
    row = (
        RaterModelSnapshot.objects.order_by("-pk")
        .values_list("rater_pks", "severity", "noise", "thresholds")
        .first()
    )
    if row is None:
        return None
    pks, severity, noise, thresholds = (np.asarray(v) for v in row)
    order = np.argsort(pks)
    return RaterParameters(
        rater_pks=pks[order].astype(np.int64),
        severity=severity[order].astype(float),
        noise=noise[order].astype(float),
        thresholds=thresholds.astype(float),
    )


@dataclass(frozen=True)
class ClipsRuleState:
    """The rule applied to some clips, with its inputs (for the curator pages)."""

    clip_pks: np.ndarray  # (n,)
    n_votes: np.ndarray  # (n,) raw votes
    votes: np.ndarray  # (n, 5) the votes the rule used (rater-aware: weighted soft votes)
    weighted_votes: np.ndarray  # (n,) sum of the vote weights
    prior_q: np.ndarray | None  # (n, 5) or None without a production run
    prior_weight: np.ndarray  # (n,) m where the clip has a prediction, else 0
    outcome: RuleOutcome
    rule: RetirementRule


def clips_rule_outcome(
    clip_pks: Sequence[int] | np.ndarray,
    counts: np.ndarray,
    *,
    rule: RetirementRule | None = None,
    policy: RetirementPolicy | None = None,
) -> ClipsRuleState:
    """THE retirement rule on clips given their current counts (n, 5), in clip_pks order.

    Reads the clips' ratings (for rater-aware votes), their priors and the policy. The caller
    holds the locks it needs (the clip's row for a vote; every row for retire_settled).
    """
    rule = rule or retirement_rule()
    policy = policy or retirement_policy()
    pks = np.asarray(clip_pks, dtype=np.int64)
    counts = np.asarray(counts, dtype=float).reshape(-1, len(GRADES))
    n_votes = counts.sum(axis=1)
    votes = counts
    raters = rater_parameters() if rule.rater_aware else None
    if raters is not None and pks.size:
        rows = list(
            Rating.objects.filter(clip_id__in=pks.tolist())
            .order_by()
            .values_list("clip_id", "rater_id", "grade")
        )
        clip_col = np.array([r[0] for r in rows], dtype=np.int64)
        rater_col = np.array([r[1] for r in rows], dtype=np.int64)
        grade_col = np.array([GRADES.index(r[2]) for r in rows], dtype=np.int64)
        # Raters missing from the snapshot (newer than the fit) vote plainly, weight 1.
        position = np.searchsorted(raters.rater_pks, rater_col)
        position = np.minimum(position, max(raters.rater_pks.size - 1, 0))
        known = raters.rater_pks.size > 0
        fitted = (raters.rater_pks[position] == rater_col) if known else np.zeros(0, bool)
        severity = np.append(raters.severity, np.nan)
        noise = np.append(raters.noise, np.nan)
        rater_idx = np.where(fitted, position, raters.rater_pks.size)
        order = np.argsort(pks)
        clip_idx = order[np.searchsorted(pks[order], clip_col)]
        votes = rater_adjusted_votes(
            clip_idx,
            rater_idx,
            grade_col,
            n_clips=pks.size,
            severity=severity,
            noise=noise,
            thresholds=raters.thresholds,
        )
    prior_q: np.ndarray | None = None
    prior_weight = np.zeros(pks.size)
    if policy.run_id is not None and policy.prior_weight > 0 and pks.size:
        priors = {
            row[0]: row[1:]
            for row in RetirementPrior.objects.filter(
                clip_id__in=pks.tolist(), run_id=policy.run_id
            ).values_list("clip_id", "p_a", "p_b", "p_c", "p_d", "p_e")
        }
        if priors:
            prior_q = np.full((pks.size, len(GRADES)), 1.0 / len(GRADES))
            for i, pk in enumerate(pks.tolist()):
                if pk in priors:
                    prior_q[i] = priors[pk]
                    prior_weight[i] = policy.prior_weight
    outcome = rule_decision(
        votes, n_votes=n_votes, rule=rule, prior_q=prior_q, prior_weight=prior_weight
    )
    return ClipsRuleState(
        clip_pks=pks,
        n_votes=n_votes,
        votes=votes,
        weighted_votes=votes.sum(axis=1),
        prior_q=prior_q,
        prior_weight=prior_weight,
        outcome=outcome,
        rule=rule,
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
    rule = retirement_rule()
    n_votes = sum(counts)
    if n_votes < rule.min_votes and n_votes < rule.max_votes:
        # The rule's first condition: too few votes whatever their weights or the prior, so
        # the vote path reads nothing more (tests/annotation/grading/test_wiring.py).
        settled = False
    else:
        state = clips_rule_outcome([clip.pk], np.array([counts]), rule=rule)
        settled = bool(state.outcome.settled[0])
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
    rule_changed: bool = False  # the settings differ from those last applied (audited)


def _rule_change_audit(
    policy: RetirementPolicy, rule: RetirementRule, *, actor: Any, now: datetime
) -> bool:
    """Record a change of the rule's settings once (policy row locked by the caller)."""
    current = rule.to_dict()
    if policy.rule == current:
        return False
    from annotation.access.audit import audit_record

    audit_record(
        action="retirement_rule_change",
        user=actor,
        username=None if actor is not None else "retire_settled",
        object_type="annotation.retirementpolicy",
        object_id=1,
        detail={"before": policy.rule, "after": current},
    )
    policy.rule = current
    policy.changed_at = now
    policy.save(update_fields=["rule", "changed_at"])
    return True


def clips_retire_settled(
    *, dry_run: bool = False, now: datetime | None = None, actor: Any = None
) -> RetireSummary:
    """Apply the rule to every clip (imported data, changed settings, a new production run or
    rater model), in one transaction.

    Locks the policy row, then all Clip rows in id order, so no vote can slip in between the
    decision and the update (the grading service locks one clip at a time: no deadlock).
    """
    now = now or timezone.now()
    rule = retirement_rule()
    with transaction.atomic():
        policy = retirement_policy_locked()
        rows = list(
            Clip.objects.select_for_update()
            .order_by("pk")
            .values_list("pk", "retired_at", *VOTE_FIELDS)
        )
        pks = np.array([row[0] for row in rows], dtype=np.int64)
        was_retired = np.array([row[1] is not None for row in rows], dtype=bool)
        counts = np.array([row[2:] for row in rows], dtype=np.int64).reshape(-1, len(VOTE_FIELDS))
        settled = clips_rule_outcome(pks, counts, rule=rule, policy=policy).outcome.settled
        settled = np.asarray(settled, dtype=bool).reshape(-1)
        to_retire = pks[settled & ~was_retired].tolist()
        to_reopen = pks[~settled & was_retired].tolist()
        changed = False
        if not dry_run:
            Clip.objects.filter(pk__in=to_retire).update(retired_at=now)
            Clip.objects.filter(pk__in=to_reopen).update(retired_at=None)
            changed = _rule_change_audit(policy, rule, actor=actor, now=now)
    return RetireSummary(
        n_clips=len(rows),
        retired=len(to_retire),
        reopened=len(to_reopen),
        n_retired=int(settled.sum()) if not dry_run else int(was_retired.sum()),
        dry_run=dry_run,
        rule_changed=changed,
    )


def clips_settled(counts: np.ndarray) -> np.ndarray:
    """The rule's verdict on plain counts (no ratings, no prior): (..., 5) -> (...) bool."""
    counts = np.asarray(counts, dtype=float)
    return rule_decision(counts, n_votes=counts.sum(axis=-1), rule=retirement_rule()).settled


__all__ = [
    "ClipsRuleState",
    "RaterParameters",
    "RetireSummary",
    "clip_retire_if_settled",
    "clips_retire_settled",
    "clips_rule_outcome",
    "clips_settled",
    "rater_parameters",
    "retirement_policy",
    "retirement_policy_locked",
    "retirement_rule",
]
