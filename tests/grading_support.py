"""Answers given through the grading service as the queue would take them.

`rating_submit` and `cannot_judge_submit` accept answers only to the clip held for the expert
(`annotation.grading.answers._answer_offered_check`). A fixture that needs a vote on a chosen clip
holds that clip for the expert first, as the queue does when it offers it."""

from __future__ import annotations

import json
from datetime import timedelta

from django.test import Client
from django.utils import timezone

from annotation.grading import answers as grading
from annotation.models import CannotJudge, Clip, ClipAssignment, Rating


def offer(expert, clip: Clip) -> None:
    """Hold `clip` for `expert` (the queue's ClipAssignment), as if the queue offered it. A clip
    the expert already answered is left alone (a hold on it would be a hidden repeat)."""
    if (
        Rating.objects.filter(clip=clip, rater=expert).exists()
        or CannotJudge.objects.filter(clip=clip, rater=expert).exists()
    ):
        return
    now = timezone.now()
    ClipAssignment.objects.update_or_create(
        clip=clip, expert=expert,
        defaults={"assigned_at": now, "expires_at": now + timedelta(minutes=10)},
    )  # fmt: skip


def grade_offered(
    expert, clip: Clip, grade: str = "B", *, time_spent_ms: int = 1000, telemetry=None
) -> Rating:
    offer(expert, clip)
    return grading.rating_submit(
        expert=expert, clip=clip, grade=grade, time_spent_ms=time_spent_ms, telemetry=telemetry
    )


def cannot_judge_offered(
    expert, clip: Clip, reason: str = "out_of_focus", *, note: str = "", time_spent_ms: int = 0
) -> CannotJudge:
    offer(expert, clip)
    return grading.cannot_judge_submit(
        expert=expert, clip=clip, reason=reason, note=note, time_spent_ms=time_spent_ms
    )


def client_for(user) -> Client:
    """A test client logged in as `user`."""
    client = Client()
    client.force_login(user)
    return client


def post_json(client: Client, url: str, body: dict):
    return client.post(url, json.dumps(body), content_type="application/json")
