"""The checks of an expert's answer: plain values in, clean values or a ServiceError out.

No query, no lock: the answer services (`annotation.grading.answers`), hidden repeats
(`annotation.grading.repeats`), the field guide and trainee practice share them.
"""

from __future__ import annotations

from collections.abc import Mapping

from annotation.errors import ServiceError
from annotation.grades import GRADES
from annotation.models import CannotJudge

# Telemetry the grading page sends with each grade: counters (with their upper bounds), the
# playback speeds used, and flags.
TELEMETRY_COUNTERS: dict[str, int] = {"plays": 10_000, "frames_stepped": 100_000}
TELEMETRY_FLAGS: tuple[str, ...] = ("zoom_used", "full_field_opened")
TELEMETRY_SPEEDS: tuple[float, ...] = (0.25, 0.5, 1.0, 1.5, 2.0)
TELEMETRY_KEYS: tuple[str, ...] = (*TELEMETRY_COUNTERS, "speeds_used", *TELEMETRY_FLAGS)
# An hour on one clip is a tab left open, not grading time worth more than an hour.
MAX_TIME_SPENT_MS = 3_600_000


def grade_check(grade: object) -> str:
    if not isinstance(grade, str) or grade not in GRADES:
        raise ServiceError(f"grade {grade!r} is not one of A..E")
    return grade


def time_spent_check(time_spent_ms: object) -> int:
    if isinstance(time_spent_ms, bool) or not isinstance(time_spent_ms, int):
        raise ServiceError("time_spent_ms must be a whole number of milliseconds")
    if not 0 <= time_spent_ms <= MAX_TIME_SPENT_MS:
        raise ServiceError(f"time_spent_ms must lie between 0 and {MAX_TIME_SPENT_MS}")
    return time_spent_ms


def telemetry_clean(raw: object) -> dict[str, object]:
    """Check the page's telemetry and return it complete (missing keys get their zero)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ServiceError("telemetry must be an object of counters and flags")
    unknown = sorted(set(raw) - set(TELEMETRY_KEYS))
    if unknown:
        raise ServiceError(
            f"unknown telemetry key(s) {', '.join(map(repr, unknown))}; "
            f"known keys: {', '.join(TELEMETRY_KEYS)}"
        )
    clean: dict[str, object] = {}
    for key, limit in TELEMETRY_COUNTERS.items():
        value = raw.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
            raise ServiceError(f"telemetry {key!r} must be a whole number from 0 to {limit}")
        clean[key] = value
    speeds = raw.get("speeds_used", [])
    if not isinstance(speeds, list) or any(
        isinstance(s, bool) or not isinstance(s, int | float) or s not in TELEMETRY_SPEEDS
        for s in speeds
    ):
        allowed = ", ".join(f"{s:g}" for s in TELEMETRY_SPEEDS)
        raise ServiceError(f"telemetry 'speeds_used' must be a list of speeds from {allowed}")
    clean["speeds_used"] = sorted({float(s) for s in speeds})
    for key in TELEMETRY_FLAGS:
        value = raw.get(key, False)
        if not isinstance(value, bool):
            raise ServiceError(f"telemetry {key!r} must be true or false")
        clean[key] = value
    return clean


def telemetry_merge(old: Mapping[str, object], new: Mapping[str, object]) -> dict[str, object]:
    """Telemetry of two visits to one clip (a grade changed later): counters add up."""
    old, new = telemetry_clean(dict(old)), telemetry_clean(dict(new))
    merged: dict[str, object] = {
        # telemetry_clean has checked the counters are ints and speeds_used a list.
        key: min(int(old[key]) + int(new[key]), limit)  # type: ignore[call-overload]
        for key, limit in TELEMETRY_COUNTERS.items()
    }
    merged["speeds_used"] = sorted({*old["speeds_used"], *new["speeds_used"]})  # type: ignore[misc]  # as above
    merged.update({key: bool(old[key] or new[key]) for key in TELEMETRY_FLAGS})
    return merged


def cannot_judge_reason_check(reason: object) -> str:
    if reason not in CannotJudge.Reason.values:
        raise ServiceError(
            f"reason {reason!r} is not one of {', '.join(CannotJudge.Reason.values)}"
        )
    return str(reason)


def cannot_judge_note_check(reason: str, note: object) -> str:
    """The note of a "cannot judge" answer, stripped: required (at most NOTE_MAX_LENGTH
    characters) with the reason "other", refused with any other reason, whose label says it."""
    if note is None:
        note = ""
    if not isinstance(note, str):
        raise ServiceError("note must be text")
    note = note.strip()
    limit = CannotJudge.NOTE_MAX_LENGTH
    if reason != CannotJudge.Reason.OTHER:
        if note:
            raise ServiceError(
                f"a note is taken only with the reason 'other', not with {reason!r}; "
                "leave it out or choose 'other'"
            )
        return ""
    if not note:
        raise ServiceError(
            f"with the reason 'other', say in a few words why you cannot judge the clip "
            f"(note, at most {limit} characters)"
        )
    if len(note) > limit:
        raise ServiceError(f"the note has {len(note)} characters; keep it to {limit} at most")
    return note
