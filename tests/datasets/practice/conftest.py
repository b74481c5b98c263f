"""Fixtures of the trainee tests: graded clips frozen into a dataset version, a practice set of
them, and a succeeded training run whose predictions tests write by hand."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.utils import timezone

from annotation.grades import GRADES
from annotation.models import Clip
from datasets.models import DatasetClip, DatasetVersion, TrainingSet
from datasets.practice import practice_set_create
from modeling.models import JobStatus, Prediction, TrainingRun
from tests.annotation.grading.conftest import cast_votes, make_clip  # noqa: F401  (fixtures)


def version_freeze(clips: list[Clip], name: str = "trainee-v1") -> DatasetVersion:
    """A ready, frozen version holding a copy of each clip's current distribution (what
    datasets.services.dataset_version_build stores, without writing an export)."""
    version = DatasetVersion.objects.create(
        name=name, pseudonym_salt="x", status=DatasetVersion.Status.READY
    )
    for i, clip in enumerate(clips):
        counts = clip.vote_counts
        n = sum(counts)
        p = [c / n for c in counts]
        mean = sum((k + 1) * q for k, q in enumerate(p))
        DatasetClip.objects.create(
            version=version,
            clip=clip,
            clip_external_id=clip.external_id,
            patient_pseudonym="p1",
            video_pseudonym=f"v{i}",
            fold=i % 3,
            counts=counts,
            n=n,
            p=p,
            mean=mean,
            std=0.0,
            mode=GRADES[max(range(5), key=lambda k: counts[k])],
            entropy=0.0,
            kinematics=clip.kinematics_dict(),
            fps=15.0,
            start_x=clip.start_x,
            start_y=clip.start_y,
            pixel_size_um=0.5,
        )
    DatasetVersion.objects.filter(pk=version.pk).update(frozen=True)
    version.refresh_from_db()
    return version


@pytest.fixture
def practice_clips(make_clip, cast_votes) -> Callable[..., TrainingSet]:  # noqa: F811
    """``practice_clips("AAB", "CCD", ...)``: one clip per vote string, voted by experts,
    retired, frozen into a version and opened as a practice set."""

    def build(*votes: str, name: str = "practice") -> TrainingSet:
        clips = []
        for grades in votes:
            clip = make_clip()
            cast_votes(clip, grades)
            # Settled: a practice set takes only clips out of the expert queue for good.
            Clip.objects.filter(pk=clip.pk).update(retired_at=timezone.now())
            clip.refresh_from_db()
            clips.append(clip)
        version = version_freeze(clips, name=f"{name}-version")
        return practice_set_create(name=name, version=version, created_by=None)

    return build


def run_with_predictions(
    version: DatasetVersion, predictions: dict[int, list[float]], name: str = "small-emd"
) -> TrainingRun:
    """A succeeded run on `version` with the given predicted distributions by clip pk."""
    run = TrainingRun.objects.create(
        version=version,
        name=name,
        config={},
        status=JobStatus.SUCCEEDED,
        finished_at=timezone.now(),
        model_version=f"{name}-test",
    )
    Prediction.objects.bulk_create(
        [
            Prediction(
                run=run,
                clip_id=clip_id,
                fold=0,
                model_version=run.model_version,
                **dict(zip(("p_a", "p_b", "p_c", "p_d", "p_e"), p, strict=True)),
            )
            for clip_id, p in predictions.items()
        ]
    )
    return run
