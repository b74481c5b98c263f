"""`make demo`'s seeding: demo users, clips with votes, a practice set and a trained model."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from annotation.access.roles import ROLES, user_role
from annotation.models import Clip, ReferenceClip
from datasets.models import DatasetVersion, TrainingSet
from modeling.models import JobStatus, Prediction, TrainingRun


@pytest.mark.django_db
def test_seed_demo_seeds_everything_a_new_user_tries_and_reuses_it(
    settings, tmp_path: Path
) -> None:
    settings.VAR_DIR = tmp_path
    settings.EXPORT_ROOT = tmp_path / "exports"
    settings.TRAINING_RUNS_ROOT = tmp_path / "runs"
    args = ["seed_demo", "--clips", "9", "--votes-per-clip", "12"]
    call_command(*args, stdout=io.StringIO())
    users = get_user_model().objects
    assert all(user_role(users.get(username=f"demo-{role}")) == role for role in ROLES)
    assert Clip.objects.count() == 9 and all(c.votes_total == 12 for c in Clip.objects.all())
    version = DatasetVersion.objects.get(name="demo-v1")
    assert version.frozen and TrainingSet.objects.filter(version=version).exists()
    run = TrainingRun.objects.get(version=version)
    assert run.status == JobStatus.SUCCEEDED
    assert Prediction.objects.filter(run=run).count() == 9
    # The field guide has examples, all settled clips filed under their panel's commonest grade.
    references = list(ReferenceClip.objects.select_related("clip"))
    assert references and all(r.clip.retired_at is not None for r in references)
    for r in references:
        counts = {g: getattr(r.clip, f"votes_{g.lower()}") for g in "ABCDE"}
        assert counts[r.grade] == max(counts.values())
    out = io.StringIO()
    call_command(*args, stdout=out)  # a second run reuses what exists
    assert Clip.objects.count() == 9 and TrainingRun.objects.count() == 1
    assert ReferenceClip.objects.count() == len(references)
    assert "imported 0 clips (9 already there)" in out.getvalue()
