"""Adaptive retirement of clips: the vote-by-vote service and the retire_settled command."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import transaction

from annotation.aggregation.retirement import posterior_expected_emd
from annotation.aggregation.retirement_service import clip_retire_if_settled, clips_retire_settled
from annotation.grading import answers as grading
from annotation.models import Clip, Rating
from tests.grading_support import grade_offered


@pytest.fixture
def rule(settings):
    """The default rule: >= 10 votes and expected EMD <= 0.0175, or 40 votes."""
    settings.RETIRE_MIN_VOTES = 10
    settings.RETIRE_TOLERANCE = 0.0175
    settings.MAX_VOTES = 40
    return settings


def _retire_locked(clip: Clip) -> bool:
    # As the grading service will call it: in the vote's transaction, under the Clip lock.
    with transaction.atomic():
        locked = Clip.objects.select_for_update().get(pk=clip.pk)
        return clip_retire_if_settled(clip=locked)


def test_a_clip_whose_votes_agree_is_retired(rule, make_clips, make_experts, add_votes) -> None:
    clip = make_clips(1)[0]
    add_votes(clip, "B" * 14, make_experts(14))
    assert posterior_expected_emd([0, 14, 0, 0, 0]) <= rule.RETIRE_TOLERANCE

    assert _retire_locked(clip) is True

    clip.refresh_from_db()
    assert clip.retired_at is not None


def test_a_clip_whose_votes_disagree_stays_open(rule, make_clips, make_experts, add_votes) -> None:
    clip = make_clips(1)[0]
    add_votes(clip, "AABBCCDDEEAABBCCDDEE", make_experts(20))

    assert _retire_locked(clip) is False

    clip.refresh_from_db()
    assert clip.retired_at is None


def test_a_clip_is_never_retired_below_the_minimum_number_of_votes(
    rule, make_clips, make_experts, add_votes
) -> None:
    rule.RETIRE_TOLERANCE = 0.5  # so loose that only the minimum holds the clip back
    clip = make_clips(1)[0]
    raters = make_experts(10)
    add_votes(clip, "C" * 9, raters)
    assert _retire_locked(clip) is False

    add_votes(clip, " " * 9 + "C", raters)
    assert _retire_locked(clip) is True


def test_a_clip_is_retired_at_the_maximum_number_of_votes_however_split(
    rule, make_clips, make_experts, add_votes
) -> None:
    rule.MAX_VOTES = 12
    clip = make_clips(1)[0]
    raters = make_experts(12)
    add_votes(clip, "AEAEAEAEAEA", raters)
    assert _retire_locked(clip) is False

    add_votes(clip, " " * 11 + "E", raters)
    assert _retire_locked(clip) is True


def test_the_service_reads_the_counts_the_transaction_just_wrote(
    rule, make_clips, make_experts, add_votes
) -> None:
    rule.RETIRE_MIN_VOTES = 3
    rule.RETIRE_TOLERANCE = 0.1
    clip = make_clips(1)[0]
    experts = make_experts(3)
    add_votes(clip, "BB", experts)
    stale = Clip.objects.get(pk=clip.pk)  # holds the counts before the third vote

    grade_offered(experts[2], clip, "B", time_spent_ms=3000)

    assert clip_retire_if_settled(clip=stale) is True
    assert stale.retired_at is not None


def test_a_changed_grade_that_unsettles_a_retired_clip_reopens_it(
    rule, make_clips, make_experts, add_votes
) -> None:
    rule.RETIRE_MIN_VOTES = 4
    rule.RETIRE_TOLERANCE = 0.03
    clip = make_clips(1)[0]
    experts = make_experts(8)
    add_votes(clip, "CCCCCCCC", experts)
    assert _retire_locked(clip) is True

    for expert in experts[:3]:
        rating = Rating.objects.get(clip=clip, rater=expert)
        grading.rating_change(expert=expert, rating=rating, grade="A")
    assert posterior_expected_emd(Clip.objects.get(pk=clip.pk).vote_counts) > 0.03

    assert _retire_locked(clip) is False
    clip.refresh_from_db()
    assert clip.retired_at is None


def test_retire_settled_applies_the_rule_to_every_clip(
    rule, make_clips, make_experts, add_votes, capsys
) -> None:
    settled, unsure, _empty, reopened = make_clips(4)
    raters = make_experts(16)
    add_votes(settled, "D" * 16, raters)
    add_votes(unsure, "ABCDE" * 3, raters)
    add_votes(reopened, "AE", raters)
    Clip.objects.filter(pk=reopened.pk).update(retired_at="2026-01-01T00:00:00Z")

    call_command("retire_settled", "--dry-run")
    assert "would retire 1 clip(s), would reopen 1" in capsys.readouterr().out
    assert list(Clip.objects.filter(retired_at__isnull=False)) == [reopened]

    call_command("retire_settled")
    assert "retired 1 clip(s), reopened 1; 1 of 4 clips retired" in capsys.readouterr().out
    assert list(Clip.objects.filter(retired_at__isnull=False)) == [settled]
    assert clips_retire_settled().retired == 0  # a second run changes nothing


def test_retire_settled_warns_about_inconsistent_settings_and_uses_max_votes(
    rule, make_clips
) -> None:
    import io

    make_clips(1)
    rule.RETIRE_MIN_VOTES = 50
    out = io.StringIO()
    call_command("retire_settled", stdout=out)
    assert "exceeds MERSV_MAX_VOTES" in out.getvalue()
    assert f">= {rule.MAX_VOTES} votes" in out.getvalue()
