"""The paper's scale in a second: 615 clips of 41 patients, graded by a 40-expert panel.

Rows are bulk-written the way `datasets.importer` writes an import (Rating and RatingChange
rows, then one recount of the clip counts), so the clip list reads the same columns it reads
in production. Media are not written: the clip list shows none.
"""

from __future__ import annotations

import numpy as np
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from annotation.access.roles import EXPERT
from annotation.grades import GRADES
from annotation.ingest.kinematics import KINEMATICS_KEYS
from annotation.ingest.services import clip_vote_counts_recount
from annotation.models import Clip, Patient, Rating, RatingChange, Video


def panel_clips_bulk(
    *,
    n_clips: int = 615,
    n_experts: int = 40,
    n_patients: int = 41,
    seed: int = 0,
    prefix: str = "L",
    unrated_every: int = 50,
) -> list[Clip]:
    """`n_clips` clips named ``{prefix}0001`` .., each graded by a random 5..n_experts of the
    experts (grades drawn around a per-clip true grade); every `unrated_every`-th clip has no
    votes and every 7th is retired. Returns the clips with their counts recounted."""
    rng = np.random.default_rng(seed)
    user_model = get_user_model()
    experts = user_model.objects.bulk_create(
        [user_model(username=f"{prefix.lower()}-expert-{k:02d}") for k in range(n_experts)]
    )
    group, _ = Group.objects.get_or_create(name=EXPERT)
    group.user_set.add(*experts)
    patients = Patient.objects.bulk_create(
        [Patient(code=f"{prefix}P{k:03d}") for k in range(n_patients)]
    )
    videos = Video.objects.bulk_create(
        [
            Video(
                patient=patient,
                file=f"videos/{prefix}{k}.mp4",
                original_name=f"{prefix}{k}.mp4",
                pixel_size_um=0.5,
                fps=15.0,
                width=640,
                height=480,
                frame_count=30,
                status=Video.Status.READY if k % 10 else Video.Status.FAILED,
            )
            for k, patient in enumerate(patients)
        ]
    )
    clips = []
    for i in range(n_clips):
        vcl = float(rng.uniform(10, 200))
        kinematics = dict.fromkeys(KINEMATICS_KEYS, 0.5) | {"vcl": vcl, "speed": vcl}
        clips.append(
            Clip(
                video=videos[i % n_patients],
                external_id=f"{prefix}{i + 1:04d}",
                target_index=i // n_patients,
                start_x=100.0,
                start_y=100.0,
                track=[[100.0, 100.0]],
                n_frames=30,
                crop_size=96,
                frames_file=f"clips/{prefix}{i}.npy",
                crop_file=f"clips/{prefix}{i}.mp4",
                filmstrip_file=f"clips/{prefix}{i}.png",
                retired_at="2026-01-01T00:00:00Z" if i % 7 == 3 else None,
                **Clip.kinematics_fields(kinematics),
            )
        )
    clips = Clip.objects.bulk_create(clips)
    ratings = []
    for i, clip in enumerate(clips):
        if unrated_every and i % unrated_every == unrated_every - 1:
            continue
        true_grade = rng.integers(0, len(GRADES))
        spread = rng.uniform(0.3, 1.5)
        n_votes = int(rng.integers(min(5, n_experts), n_experts + 1))
        raters = rng.choice(n_experts, size=n_votes, replace=False)
        grades = np.clip(np.rint(rng.normal(true_grade, spread, n_votes)), 0, len(GRADES) - 1)
        ratings.extend(
            Rating(clip=clip, rater=experts[r], grade=GRADES[int(g)], time_spent_ms=4000)
            for r, g in zip(raters, grades, strict=True)
        )
    Rating.objects.bulk_create(ratings, batch_size=5000)
    RatingChange.objects.bulk_create(
        [RatingChange(rating=r, grade=r.grade) for r in ratings], batch_size=5000
    )
    clip_vote_counts_recount(clip_ids=[c.pk for c in clips])
    return list(Clip.objects.filter(pk__in=[c.pk for c in clips]).order_by("external_id"))
