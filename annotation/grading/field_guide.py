"""The field guide: for each grade a few reference clips a curator chose from settled clips.

Blindness: an expert must never meet, in the guide, a clip they may still be asked to grade,
and never a clip's votes. So a curator may choose only a retired clip (it left the grading
pool), the guide shows only references whose clip is still retired (a clip reopened later
drops out of it until it settles again), a reference clip is never offered as a hidden repeat
(`annotation.grading.repeats`), and what the guide shows is the curator's grade and note only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import transaction

from annotation.access.audit import audit_record
from annotation.access.roles import CURATOR, user_has_role
from annotation.errors import ConflictError, ServiceError
from annotation.grades import GRADES
from annotation.grading.checks import grade_check
from annotation.models import Clip, ReferenceClip, Video

if TYPE_CHECKING:
    from django.contrib.auth.models import User

NOTE_MAX_LENGTH = ReferenceClip.NOTE_MAX_LENGTH


class NotCuratorError(ServiceError):
    """Only curators (and admins) choose the field guide's clips."""


class NotSettledError(ConflictError):
    """The clip is still in the grading pool: it cannot be shown to experts as an example."""


class AlreadyReferenceError(ConflictError):
    """The clip is in the field guide already (once per clip)."""


def _curator_check(user: User) -> None:
    if not user_has_role(user, CURATOR):
        raise NotCuratorError("only curators choose the field guide's clips")


def reference_clip_add(*, curator: User, clip: Clip, grade: str, note: str = "") -> ReferenceClip:
    """Put a settled clip in the field guide as an example of `grade`. Takes the Clip row lock,
    so that the clip cannot be reopened between the check and the insert."""
    _curator_check(curator)
    grade = grade_check(grade)
    note = (note or "").strip()
    if len(note) > NOTE_MAX_LENGTH:
        raise ServiceError(f"the note has {len(note)} characters; keep it to {NOTE_MAX_LENGTH}")
    with transaction.atomic():
        locked = Clip.objects.select_for_update().get(pk=clip.pk)
        if locked.retired_at is None:
            raise NotSettledError(
                f"clip {locked.external_id} is still in the grading pool; only settled (retired) "
                "clips can join the field guide, so that no expert sees a clip they may grade"
            )
        if ReferenceClip.objects.filter(clip=locked).exists():
            raise AlreadyReferenceError(
                f"clip {locked.external_id} is in the field guide already; remove it first to "
                "file it under another grade"
            )
        # Under the clip's lock a second curator's add waits here and then finds this one.
        reference = ReferenceClip.objects.create(
            clip=locked, grade=grade, chosen_by=curator, note=note
        )
        audit_record(
            action="reference_clip_add", user=curator, obj=reference,
            detail={"clip": locked.external_id, "grade": grade},
        )  # fmt: skip
    return reference


def reference_clip_remove(*, curator: User, reference: ReferenceClip) -> None:
    """Take a clip out of the field guide."""
    _curator_check(curator)
    with transaction.atomic():
        audit_record(
            action="reference_clip_remove", user=curator, obj=reference,
            detail={"clip": reference.clip.external_id, "grade": reference.grade},
        )  # fmt: skip
        reference.delete()


def reference_clips_shown() -> list[ReferenceClip]:
    """The references experts may see: clips still retired, of READY videos (one query)."""
    return list(
        ReferenceClip.objects.filter(
            clip__retired_at__isnull=False, clip__video__status=Video.Status.READY
        )
        .select_related("clip__video")
        .order_by("grade", "created_at", "id")
    )


@dataclass(frozen=True)
class FieldGuideSection:
    grade: str
    references: list[ReferenceClip]


def field_guide() -> list[FieldGuideSection]:
    """The field guide, one section per grade A..E (a section may be empty)."""
    shown = reference_clips_shown()
    return [FieldGuideSection(g, [r for r in shown if r.grade == g]) for g in GRADES]
