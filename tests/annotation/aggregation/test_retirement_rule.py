"""The combined retirement rule in the database: the live queue and retire_settled agree, the
production run is chosen with an audited, fitted prior weight, frozen versions stay as they
were, and curators see why a clip retired."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.management import call_command
from django.utils import timezone

from annotation.aggregation.rater_model_service import rater_model_refit
from annotation.aggregation.retirement_service import (
    clips_retire_settled,
    clips_rule_outcome,
    retirement_policy,
)
from annotation.grades import GRADES, VOTE_FIELDS
from annotation.models import AuditEvent, Clip, RetirementPrior
from tests.grading_support import client_for, grade_offered
from tests.security.conftest import version_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def rule(settings):
    settings.RETIRE_MIN_VOTES = 4
    settings.MAX_VOTES = 14
    settings.RETIRE_TOLERANCE = 0.03
    settings.RETIRE_MODE_GUARD = 0.5
    settings.RETIRE_RATER_AWARE = True
    settings.RETIRE_PRIOR_DISCOUNT = 0.5
    settings.RETIRE_FULL_PANEL_VOTES = 8
    return settings


def _run_with_predictions(curator, clips, predictions, name="prod"):
    from modeling.models import Prediction, TrainingRun

    version = version_make(f"v-{name}", curator)
    run = TrainingRun.objects.create(
        version=version,
        name=name,
        config={},
        n_folds=3,
        created_by=curator,
        status="succeeded",
        finished_at=timezone.now(),
    )
    Prediction.objects.bulk_create(
        Prediction(
            run=run,
            clip=clip,
            fold=i % 3,
            model_version=f"run{run.pk}-test",
            **dict(zip(("p_a", "p_b", "p_c", "p_d", "p_e"), map(float, p), strict=True)),
        )
        for i, (clip, p) in enumerate(zip(clips, predictions, strict=True))
    )
    return run


def _history(make_clips, make_experts, add_votes, experts, n_clips=24, seed=0):
    """Clips every expert graded in full (8 votes each): the rater model's data and the full
    panels m is fitted on. Expert 0 grades one step harsher than the rest."""
    rng = np.random.default_rng(seed)
    clips = make_clips(n_clips, prefix="hist")
    for clip in clips:
        centre = rng.integers(0, 5)
        grades = [int(np.clip(centre + rng.integers(-1, 2), 0, 4)) for _ in experts]
        grades[0] = min(grades[0] + 1, 4)
        add_votes(clip, "".join(GRADES[g] for g in grades), experts)
    return clips


def _own_distribution(clip: Clip) -> np.ndarray:
    counts = np.array(Clip.objects.filter(pk=clip.pk).values_list(*VOTE_FIELDS).get(), float)
    return counts / counts.sum()


def test_the_live_queue_and_retire_settled_agree_with_a_prior_and_rater_weights(
    rule, make_clips, make_experts, add_votes, make_user
) -> None:
    experts = make_experts(8)
    history = _history(make_clips, make_experts, add_votes, experts)
    curator = make_user("curator")
    open_clips = make_clips(12, prefix="live")
    rng = np.random.default_rng(1)
    good = [_own_distribution(c) for c in history]
    guesses = rng.dirichlet(np.ones(5) * 3, size=len(open_clips))
    run = _run_with_predictions(curator, history + open_clips, good + list(guesses))
    from modeling.retirement_prior import retirement_run_choose

    policy, _ = retirement_run_choose(run=run, user=curator)
    assert policy.prior_weight > 0, run.retirement_prior_fit
    assert rater_model_refit() is not None  # the rule weighs votes with this snapshot

    # Experts grade the open clips through the grading service, vote by vote.
    for round_ in range(8):
        for i, clip in enumerate(open_clips):
            clip.refresh_from_db()
            if clip.retired_at is not None:
                continue
            grade = GRADES[int(np.clip(i % 5 + rng.integers(-1, 2), 0, 4))]
            grade_offered(experts[round_], clip, grade)

    live = {
        c.pk: c.retired_at is not None
        for c in Clip.objects.filter(pk__in=[c.pk for c in open_clips])
    }
    assert 0 < sum(live.values()) < len(live) or all(live.values()), live
    summary = clips_retire_settled(dry_run=True)
    assert (summary.retired, summary.reopened) == (0, 0), "retire_settled disagrees with the queue"
    rows = list(
        Clip.objects.filter(pk__in=list(live)).order_by("pk").values_list("pk", *VOTE_FIELDS)
    )
    state = clips_rule_outcome([r[0] for r in rows], np.array([r[1:] for r in rows]))
    assert dict(zip(state.clip_pks.tolist(), state.outcome.settled.tolist(), strict=True)) == live
    # The rule the queue ran is not the plain-count rule: the prior and the weights counted.
    assert np.all(state.prior_weight > 0)
    plain_weights = state.n_votes
    assert not np.allclose(state.weighted_votes, plain_weights)


def test_choosing_a_production_run_is_audited_and_never_touches_a_frozen_version(
    rule, make_clips, make_experts, add_votes, make_user
) -> None:
    from datasets.models import DatasetVersion
    from modeling.retirement_prior import retirement_run_choose

    experts = make_experts(8)
    history = _history(make_clips, make_experts, add_votes, experts)
    curator = make_user("curator")
    run = _run_with_predictions(curator, history, [_own_distribution(c) for c in history])
    frozen = DatasetVersion.objects.get(name="v-prod")
    frozen_before = (frozen.content_hash, frozen.clips.count(), frozen.ratings.count())

    policy, summary = retirement_run_choose(run=run, user=curator)

    run.refresh_from_db()
    assert policy.run_id == run.pk and policy.prior_weight == run.retirement_prior_weight > 0
    assert run.retirement_prior_fit["n_clips"] == len(history)
    assert run.retirement_prior_fit["emd_with"] < run.retirement_prior_fit["emd_without"]
    assert RetirementPrior.objects.filter(run_id=run.pk).count() == len(history)
    event = AuditEvent.objects.get(action="retirement_run_choose")
    assert event.username == curator.username
    assert event.detail["after"] == {"run_id": run.pk, "prior_weight": policy.prior_weight}
    assert summary.n_clips == Clip.objects.count()
    frozen.refresh_from_db()
    assert (frozen.content_hash, frozen.clips.count(), frozen.ratings.count()) == frozen_before

    # A run whose predictions are random gets m = 0: the prior is not used.
    rng = np.random.default_rng(3)
    noise_run = _run_with_predictions(
        curator, history, rng.dirichlet(np.ones(5), size=len(history)), name="noise"
    )
    policy, _ = retirement_run_choose(run=noise_run, user=curator)
    noise_run.refresh_from_db()
    assert policy.prior_weight == 0.0 == noise_run.retirement_prior_weight
    assert "prior not used" in noise_run.retirement_prior_fit["reason"]
    assert AuditEvent.objects.filter(action="retirement_run_choose").count() == 2


def test_a_run_that_has_not_succeeded_cannot_steer_retirement(rule, make_user, make_clips) -> None:
    from modeling.retirement_prior import ProductionRunError, retirement_run_choose

    curator = make_user("curator")
    run = _run_with_predictions(curator, make_clips(1), [np.full(5, 0.2)])
    run.status = "failed"
    run.save(update_fields=["status"])
    with pytest.raises(ProductionRunError, match="only a succeeded run"):
        retirement_run_choose(run=run, user=curator)
    assert retirement_policy().run_id is None
    assert not AuditEvent.objects.filter(action="retirement_run_choose").exists()


def test_a_change_of_the_rule_is_audited_once_by_retire_settled(rule, make_clips, capsys) -> None:
    make_clips(2)
    call_command("retire_settled")
    first = AuditEvent.objects.filter(action="retirement_rule_change").count()
    assert first == 1  # the first run records the rule in force
    call_command("retire_settled")
    assert AuditEvent.objects.filter(action="retirement_rule_change").count() == 1

    rule.RETIRE_TOLERANCE = 0.02
    call_command("retire_settled")
    assert "changed since the last run: audited" in capsys.readouterr().out
    event = AuditEvent.objects.filter(action="retirement_rule_change").latest("pk")
    assert (event.detail["before"]["tolerance"], event.detail["after"]["tolerance"]) == (0.03, 0.02)


def test_a_curator_sees_why_a_clip_is_open_and_the_votes_the_open_clips_still_need(
    rule, make_clips, make_experts, add_votes, make_user
) -> None:
    retired, open_clip = make_clips(2)
    experts = make_experts(8)
    add_votes(retired, "CCCCCCCC", experts)
    add_votes(open_clip, "AE", experts)
    clips_retire_settled()
    curator = client_for(make_user("curator"))

    page = curator.get(f"/clips/{retired.external_id}/").content.decode()
    assert "<strong>Retired</strong>: its posterior is settled" in page
    assert 'id="retirement-table"' in page and "Votes used" in page
    page = curator.get(f"/clips/{open_clip.external_id}/").content.decode()
    assert "<strong>Open</strong>: its fewer votes than the minimum" not in page
    assert "<strong>Open</strong>: it has fewer votes than the minimum" in page
    assert "more votes predicted until it settles" in page

    dashboard = curator.get("/dashboard/").content.decode()
    assert 'id="retirement-needed"' in dashboard
    assert "The 1 open clip needs about" in dashboard
    assert "No production run" in dashboard

    expert = client_for(experts[0])
    assert expert.get(f"/clips/{retired.external_id}/").status_code == 403


def test_a_curator_chooses_and_clears_the_production_run_on_its_page(
    rule, make_clips, make_experts, add_votes, make_user
) -> None:
    experts = make_experts(8)
    history = _history(make_clips, make_experts, add_votes, experts)
    curator_user = make_user("curator")
    run = _run_with_predictions(curator_user, history, [_own_distribution(c) for c in history])
    curator = client_for(curator_user)
    page = curator.get(f"/training/{run.pk}/").content.decode()
    assert 'id="btn-production-choose"' in page

    assert (
        client_for(experts[0])
        .post(f"/training/{run.pk}/production/", {"action": "choose"})
        .status_code
        == 403
    )
    assert retirement_policy().run_id is None

    answer = curator.post(f"/training/{run.pk}/production/", {"action": "choose"}, follow=True)
    assert f"run {run.pk} steers retirement with m = " in answer.content.decode()
    assert retirement_policy().run_id == run.pk
    page = curator.get(f"/training/{run.pk}/").content.decode()
    assert "Production run of retirement" in page and 'id="btn-production-clear"' in page

    curator.post(f"/training/{run.pk}/production/", {"action": "clear"})
    assert retirement_policy().run_id is None and not RetirementPrior.objects.exists()
    assert AuditEvent.objects.filter(action="retirement_run_choose").count() == 2


def _vote_statements(expert, clip) -> list[str]:
    """The statements of one vote submission (the expert holds the clip beforehand)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from annotation.grading.answers import rating_submit
    from tests.grading_support import offer

    offer(expert, clip)
    with CaptureQueriesContext(connection) as seen:
        rating_submit(expert=expert, clip=clip, grade="C", time_spent_ms=1500, telemetry={})
    return [q["sql"] for q in seen.captured_queries]


def test_a_vote_past_the_minimum_reads_the_rule_inputs_in_one_statement(
    rule, make_clips, make_experts, add_votes, make_user, monkeypatch
) -> None:
    """Counts, not time: below the minimum the vote reads nothing of the rule; past it one
    statement reads the ratings, the policy, the newest snapshot's identity and the prior
    (with or without a production run), plus one for the snapshot's arrays when this process
    has not cached them yet."""
    from annotation.aggregation import retirement_service

    rule.RETIRE_TOLERANCE = 1e-4  # the measured clips keep collecting
    rule.RETIRE_MODE_GUARD = 1.0
    experts = make_experts(8)
    history = _history(make_clips, make_experts, add_votes, experts)
    assert rater_model_refit() is not None
    young, plain, steered = make_clips(3, prefix="cost")
    add_votes(young, "BC", experts[:2])
    for clip in (plain, steered):
        add_votes(clip, "BCCDB", experts[:5])
    monkeypatch.setattr(retirement_service, "_raters_cached", None)
    below = _vote_statements(experts[5], young)
    cold = _vote_statements(experts[5], plain)
    warm = _vote_statements(experts[6], plain)
    curator = make_user("curator")
    good = [_own_distribution(c) for c in history]
    run = _run_with_predictions(curator, [*history, steered], [*good, np.full(5, 0.2)])
    from modeling.retirement_prior import retirement_run_choose

    policy, _ = retirement_run_choose(run=run, user=curator)
    assert policy.prior_weight > 0
    steered_votes = _vote_statements(experts[5], steered)
    print(
        f"statements per vote: {len(below)} below the minimum; past it {len(cold)} (snapshot not"
        f" cached), {len(warm)} (cached), {len(steered_votes)} (cached, with a production run)"
    )
    assert not any("annotation_retirementpolicy" in s for s in below)
    assert len(cold) == len(below) + 2, cold
    assert len(warm) == len(below) + 1, warm
    assert len(steered_votes) == len(below) + 1, steered_votes
    read = next(s for s in steered_votes if "annotation_retirementprior" in s)
    assert "annotation_retirementpolicy" in read and "annotation_ratermodelsnapshot" in read
    for clip, n in ((plain, 7), (steered, 6)):
        clip.refresh_from_db()
        assert clip.votes_total == n and clip.retired_at is None
    # The one-statement read gives the rule the inputs the general path reads.
    rows = list(
        Clip.objects.filter(pk__in=[plain.pk, steered.pk])
        .order_by("pk")
        .values_list("pk", *VOTE_FIELDS)
    )
    general = clips_rule_outcome([r[0] for r in rows], np.array([r[1:] for r in rows]))
    for i, (pk, *counts) in enumerate(rows):
        one = retirement_service._clip_rule_outcome(
            pk, counts, retirement_service.retirement_rule()
        )
        assert np.allclose(one.votes[0], general.votes[i])
        assert one.prior_weight[0] == general.prior_weight[i]
        assert np.allclose(one.outcome.expected_emd[0], general.outcome.expected_emd[i])
    assert general.prior_weight.tolist() == [0.0, policy.prior_weight]
