"""Adaptive retirement of clips: the rule of `annotation.aggregation.retirement` applied to the
database, by the live queue (vote by vote) and by `manage.py retire_settled` (every clip).

Both call `clips_rule_outcome`, the one function that turns a clip's state into the rule's
inputs: its votes (rater-aware with the rater model's latest snapshot when
MERSV_RETIRE_RATER_AWARE is on), its raw vote count, and the production run's prediction
(RetirementPrior) with the run's fitted weight m (RetirementPolicy). So the two give the same
answer for the same state (tests/annotation/aggregation/test_retirement_rule.py). A vote past
the minimum reads the rule's inputs in one statement (`_clip_rule_outcome`: the clip's ratings,
the policy, the newest rater snapshot's identity and the clip's prior), the snapshot's arrays
coming from a per-process cache: 1 statement more than a vote below the minimum, with or
without a production run (2 when a refit replaced the snapshot; before: 3 without a run, 4 with).

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
from django.db.models import Subquery
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

PRIOR_FIELDS = ("p_a", "p_b", "p_c", "p_d", "p_e")


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


_SNAPSHOT_ARRAYS = ("rater_pks", "severity", "noise", "thresholds")
# The newest snapshot's arrays in this process, keyed by (pk, data_key, created_at): snapshots
# are written once and never changed (a refit adds a row and deletes the older ones), so the
# key names the same arrays for as long as the row exists. One entry: a vote needs the newest.
_raters_cached: tuple[tuple[Any, ...], RaterParameters] | None = None


def _rater_arrays(row: Sequence[Any]) -> RaterParameters:
    pks, severity, noise, thresholds = (np.asarray(v) for v in row)
    order = np.argsort(pks)
    return RaterParameters(
        rater_pks=pks[order].astype(np.int64),
        severity=severity[order].astype(float),
        noise=noise[order].astype(float),
        thresholds=thresholds.astype(float),
    )


def rater_parameters() -> RaterParameters | None:
    """The newest rater-model snapshot (stale or not: a refit moves every clip the same way
    at the next `retire_settled`), or None without one."""
    global _raters_cached
    row = (
        RaterModelSnapshot.objects.order_by("-pk")
        .values_list("pk", "data_key", "created_at", *_SNAPSHOT_ARRAYS)
        .first()
    )
    if row is None:
        return None
    parameters = _rater_arrays(row[3:])
    _raters_cached = (tuple(row[:3]), parameters)
    return parameters


def _rater_parameters_of(key: tuple[Any, ...]) -> RaterParameters | None:
    """The snapshot `key` = (pk, data_key, created_at) names, from this process's cache when it
    holds that snapshot, else read (and cached); the newest if it was deleted meanwhile."""
    global _raters_cached
    cached = _raters_cached
    if cached is not None and cached[0] == key:
        return cached[1]
    row = RaterModelSnapshot.objects.filter(pk=key[0]).values_list(*_SNAPSHOT_ARRAYS).first()
    if row is None:  # replaced by a refit between the two statements
        return rater_parameters()
    parameters = _rater_arrays(row)
    _raters_cached = (key, parameters)
    return parameters


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
    raters = rater_parameters() if rule.rater_aware else None
    ratings: list[tuple[int, int, str]] = []
    if raters is not None and pks.size:
        ratings = list(
            Rating.objects.filter(clip_id__in=pks.tolist())
            .order_by()
            .values_list("clip_id", "rater_id", "grade")
        )
    priors: dict[int, Sequence[float]] = {}
    if policy.run_id is not None and policy.prior_weight > 0 and pks.size:
        priors = {
            row[0]: row[1:]
            for row in RetirementPrior.objects.filter(
                clip_id__in=pks.tolist(), run_id=policy.run_id
            ).values_list("clip_id", *PRIOR_FIELDS)
        }
    return _rule_state(
        pks, counts, rule=rule, raters=raters, ratings=ratings, priors=priors,
        prior_weight=policy.prior_weight,
    )  # fmt: skip


def _clip_rule_outcome(clip_pk: int, counts: Sequence[int], rule: RetirementRule) -> ClipsRuleState:
    """`clips_rule_outcome` for the one clip a vote changed, its inputs read in one statement:
    the clip's ratings, each row carrying the policy's run and m, the newest rater-model
    snapshot's identity and the clip's prior (the snapshot's arrays come from the process's
    cache: a second statement only when a refit replaced the snapshot)."""
    policy = RetirementPolicy.objects.filter(pk=1)
    newest = RaterModelSnapshot.objects.order_by("-pk")
    rows = list(
        Rating.objects.filter(clip_id=clip_pk)
        .order_by()
        .annotate(
            policy_run=Subquery(policy.values("run_id")[:1]),
            policy_weight=Subquery(policy.values("prior_weight")[:1]),
            snapshot_pk=Subquery(newest.values("pk")[:1]),
            snapshot_key=Subquery(newest.values("data_key")[:1]),
            snapshot_at=Subquery(newest.values("created_at")[:1]),
        )
        .values_list(
            "rater_id", "grade", "policy_run", "policy_weight", "snapshot_pk", "snapshot_key",
            "snapshot_at", "clip__retirement_prior__run_id",
            *(f"clip__retirement_prior__{f}" for f in PRIOR_FIELDS),
        )
    )  # fmt: skip
    if not rows:  # no rating to carry the rest (a rule with min_votes 0): the general path
        return clips_rule_outcome([clip_pk], np.array([counts]), rule=rule)
    run_id, weight, snapshot_pk, snapshot_key, snapshot_at, prior_run, *prior = rows[0][2:]
    raters = None
    if rule.rater_aware and snapshot_pk is not None:
        raters = _rater_parameters_of((snapshot_pk, snapshot_key, snapshot_at))
    weight = float(weight or 0.0)
    priors = {clip_pk: prior} if run_id is not None and weight > 0 and prior_run == run_id else {}
    return _rule_state(
        np.array([clip_pk], dtype=np.int64), counts, rule=rule, raters=raters,
        ratings=[(clip_pk, row[0], row[1]) for row in rows], priors=priors, prior_weight=weight,
    )  # fmt: skip


def _rule_state(
    pks: np.ndarray,
    counts: np.ndarray | Sequence[Any],
    *,
    rule: RetirementRule,
    raters: RaterParameters | None,
    ratings: list[tuple[int, int, str]],
    priors: dict[int, Sequence[float]],
    prior_weight: float,
) -> ClipsRuleState:
    """The rule on inputs already read: ratings (clip pk, rater pk, grade) are used only with
    raters; priors by clip pk, weighted by `prior_weight`."""
    counts = np.asarray(counts, dtype=float).reshape(-1, len(GRADES))
    n_votes = counts.sum(axis=1)
    votes = counts
    if raters is not None and pks.size:
        rows = ratings
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
    weights = np.zeros(pks.size)
    if priors:
        prior_q = np.full((pks.size, len(GRADES)), 1.0 / len(GRADES))
        for i, pk in enumerate(pks.tolist()):
            if pk in priors:
                prior_q[i] = priors[pk]
                weights[i] = prior_weight
    outcome = rule_decision(
        votes, n_votes=n_votes, rule=rule, prior_q=prior_q, prior_weight=weights
    )
    return ClipsRuleState(
        clip_pks=pks,
        n_votes=n_votes,
        votes=votes,
        weighted_votes=votes.sum(axis=1),
        prior_q=prior_q,
        prior_weight=weights,
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
        state = _clip_rule_outcome(clip.pk, counts, rule)
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
