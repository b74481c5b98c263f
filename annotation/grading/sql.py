"""The grading queue's reads on the submit-and-next path, written as SQL.

Every expert waits on these after each vote (`annotation.grading.answers`): which clip they hold,
whether they may answer a clip, the next clip to offer, their progress. Built with the ORM they
cost more to compile than to run (subqueries over ratings, cannot-judge answers, trainee
ratings and holds), so they are plain SQL with parameters, on the tables and columns the
models name. The rules stay in `annotation.grading.answers`, which is the only caller; the tests of
the queue (tests/annotation/grading) run through these statements on PostgreSQL, the demo on SQLite.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any, TypedDict

from django.db import connection
from django.db.models import Field, Model
from django.db.models.expressions import RawSQL

from annotation.grades import GRADES
from annotation.models import CannotJudge, Clip, ClipAssignment, Rating, RepeatRating, Video

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations


@dataclass(frozen=True)
class _Tables:
    clip: str
    video: str
    rating: str
    cannot: str
    hold: str
    repeat: str
    dataset_clip: str
    trainee_rating: str
    dataset_clip_clip: str  # column of dataset_clip naming the clip
    trainee_rating_clip: str  # column of trainee_rating naming the dataset clip
    trainee_rating_trainee: str  # column of trainee_rating naming the trainee


def _related(model: type[Model], name: str) -> type[Model]:
    related = model._meta.get_field(name).related_model
    assert isinstance(related, type)  # a model class once the apps are loaded, not "self"
    return related


def _column(model: type[Model], name: str) -> str:
    field = model._meta.get_field(name)
    assert isinstance(field, Field) and field.column  # a concrete field with a column
    return field.column


@cache
def _tables() -> _Tables:
    quote = connection.ops.quote_name
    # Trainee ratings by the reverse relations, so this app does not import `datasets`.
    dataset_clip = _related(Clip, "dataset_clips")
    trainee_rating = _related(dataset_clip, "trainee_ratings")
    return _Tables(
        clip=quote(Clip._meta.db_table),
        video=quote(Video._meta.db_table),
        rating=quote(Rating._meta.db_table),
        cannot=quote(CannotJudge._meta.db_table),
        hold=quote(ClipAssignment._meta.db_table),
        repeat=quote(RepeatRating._meta.db_table),
        dataset_clip=quote(dataset_clip._meta.db_table),
        trainee_rating=quote(trainee_rating._meta.db_table),
        dataset_clip_clip=quote(_column(dataset_clip, "clip")),
        trainee_rating_clip=quote(_column(trainee_rating, "dataset_clip")),
        trainee_rating_trainee=quote(_column(trainee_rating, "trainee")),
    )


def _when(moment: datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(moment)


def _rows(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _open_unanswered(expert_id: int) -> tuple[str, list[Any]]:
    """WHERE terms on clip `c` joined to video `v`: open (READY video, not retired) and not
    answered by the expert, as an expert or as a trainee (who saw its panel)."""
    t = _tables()
    sql = f"""c.retired_at IS NULL AND v.status = %s
        AND NOT EXISTS (SELECT 1 FROM {t.rating} r WHERE r.clip_id = c.id AND r.rater_id = %s)
        AND NOT EXISTS (SELECT 1 FROM {t.cannot} j WHERE j.clip_id = c.id AND j.rater_id = %s)
        AND NOT EXISTS (
            SELECT 1 FROM {t.dataset_clip} d
            JOIN {t.trainee_rating} tr ON tr.{t.trainee_rating_clip} = d.id
            WHERE d.{t.dataset_clip_clip} = c.id AND tr.{t.trainee_rating_trainee} = %s
        )"""
    return sql, [Video.Status.READY.value, expert_id, expert_id, expert_id]


@dataclass(frozen=True)
class AnswerState:
    """What decides whether an expert may answer a clip."""

    held: bool  # the expert has a hold on the clip, live or lapsed
    held_live: bool  # ... that has not expired
    rating_pk: int | None  # their Rating of the clip
    repeated: bool  # they answered a hidden repeat of it
    skipped: bool  # they answered "cannot judge"
    others: int  # live holds of other experts

    def repeat_pending(self) -> bool:
        """Offered as a hidden repeat and not answered yet: a live hold on a rated clip."""
        return self.held_live and self.rating_pk is not None and not self.repeated


def answer_state(*, expert_id: int, clip_id: int, now: datetime) -> AnswerState:
    """One statement. Call with the Clip row lock held when the answer depends on it
    (assignments of a clip are written only under its lock)."""
    t = _tables()
    at = _when(now)
    sql = f"""SELECT
        (SELECT COUNT(*) FROM {t.hold} WHERE clip_id = %s AND expert_id = %s),
        (SELECT COUNT(*) FROM {t.hold} WHERE clip_id = %s AND expert_id = %s AND expires_at > %s),
        (SELECT MIN(id) FROM {t.rating} WHERE clip_id = %s AND rater_id = %s),
        (SELECT COUNT(*) FROM {t.repeat} WHERE clip_id = %s AND rater_id = %s),
        (SELECT COUNT(*) FROM {t.cannot} WHERE clip_id = %s AND rater_id = %s),
        (SELECT COUNT(*) FROM {t.hold} WHERE clip_id = %s AND expires_at > %s AND expert_id <> %s)
    """
    own = [clip_id, expert_id]
    params = [*own, *own, at, *own, *own, *own, clip_id, at, expert_id]
    held, live, rating_pk, repeated, skipped, others = _rows(sql, params)[0]
    return AnswerState(
        held=bool(held), held_live=bool(live), rating_pk=rating_pk, repeated=bool(repeated),
        skipped=bool(skipped), others=int(others),
    )  # fmt: skip


class HoldsOfOthers(TypedDict):
    live_holds_of_others: int


def clip_with_holds_of_others(
    *, clip_id: int, expert_id: int, now: datetime
) -> WithAnnotations[Clip, HoldsOfOthers]:
    """The clip with its video, and as `live_holds_of_others` the live holds of experts other
    than this one on it, in one statement."""
    t = _tables()
    others = RawSQL(  # noqa: S611  table names from the models, values as parameters
        f"SELECT COUNT(*) FROM {t.hold} a WHERE a.clip_id = {t.clip}.id "
        "AND a.expires_at > %s AND a.expert_id <> %s",
        [_when(now), expert_id],
    )
    return (
        Clip.objects.select_related("video").annotate(live_holds_of_others=others).get(pk=clip_id)
    )


@dataclass(frozen=True)
class Hold:
    pk: int
    clip_id: int
    usable: bool  # live, on an open clip the expert has not answered


def holds_of(*, expert_id: int, now: datetime) -> list[Hold]:
    """The expert's holds, each with whether it may still be served to them."""
    t = _tables()
    sql = f"""SELECT a.id, a.clip_id,
            a.expires_at > %s AND c.retired_at IS NULL AND v.status = %s
            AND NOT EXISTS (SELECT 1 FROM {t.rating} r WHERE r.clip_id = a.clip_id
                            AND r.rater_id = a.expert_id)
            AND NOT EXISTS (SELECT 1 FROM {t.cannot} j WHERE j.clip_id = a.clip_id
                            AND j.rater_id = a.expert_id)
        FROM {t.hold} a JOIN {t.clip} c ON c.id = a.clip_id JOIN {t.video} v ON v.id = c.video_id
        WHERE a.expert_id = %s ORDER BY a.id"""
    rows = _rows(sql, [_when(now), Video.Status.READY.value, expert_id])
    return [Hold(pk=pk, clip_id=clip_id, usable=bool(usable)) for pk, clip_id, usable in rows]


def next_candidate(
    *, expert_id: int, now: datetime, target: int, passed_over: list[int], skip_locked: bool
) -> int | None:
    """The id of the open clip the expert has not answered with the fewest votes whose votes
    plus live holds of other experts stay below `target`, locked (FOR UPDATE, with
    skip_locked passing over rows locked by others) where the database can lock rows."""
    t = _tables()
    where, params = _open_unanswered(expert_id)
    sql = f"""SELECT c.id FROM {t.clip} c JOIN {t.video} v ON v.id = c.video_id
        WHERE {where}
        AND c.votes_total + (
            SELECT COUNT(*) FROM {t.hold} a
            WHERE a.clip_id = c.id AND a.expires_at > %s AND a.expert_id <> %s
        ) < %s"""
    params += [_when(now), expert_id, target]
    if passed_over:
        sql += f" AND c.id NOT IN ({', '.join(['%s'] * len(passed_over))})"
        params += passed_over
    sql += " ORDER BY c.votes_total, c.id LIMIT 1"  # clip_open_queue_idx
    features = connection.features
    if features.has_select_for_update:
        sql += " FOR UPDATE OF c" if features.has_select_for_update_of else " FOR UPDATE"
        if skip_locked and features.has_select_for_update_skip_locked:
            sql += " SKIP LOCKED"
    rows = _rows(sql, params)
    return rows[0][0] if rows else None


def commit_without_flush() -> None:
    """Let the current transaction's COMMIT return before its WAL reaches the disk (PostgreSQL's
    synchronous_commit off, for this transaction alone; a no-op elsewhere).

    Only for a transaction that writes holds and nothing else: a hold is a lease of a few
    minutes, so a server crash in the next fraction of a second may forget the newest holds
    (the experts then get a clip again), never a vote. It saves the wait for the disk that the
    vote's own commit does take (median 1-2 ms, tail 5+ ms on a busy disk, for each step).
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


def hold_clear(*, expert_id: int, clip_id: int) -> None:
    """End the expert's hold on the clip (nothing refers to holds: a plain DELETE)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {_tables().hold} WHERE clip_id = %s AND expert_id = %s",
            [clip_id, expert_id],
        )


def votes_add(*, clip_id: int, deltas: Mapping[str, int]) -> tuple[int, ...]:
    """Add votes (grade -> change) to a clip's counts and return its counts A..E after the
    change, in one statement (UPDATE ... RETURNING). Call with the Clip row lock held."""
    t = _tables()
    terms, params = [], []
    for grade, n in deltas.items():
        if n:
            terms.append(f"votes_{grade.lower()} = votes_{grade.lower()} + %s")
            params.append(n)
    terms.append("votes_total = votes_total + %s")
    params += [sum(deltas.values()), clip_id]
    columns = ", ".join(f"votes_{g.lower()}" for g in GRADES)
    sql = f"UPDATE {t.clip} SET {', '.join(terms)} WHERE id = %s RETURNING {columns}"
    return tuple(int(n) for n in _rows(sql, params)[0])


def progress_counts(*, expert_id: int, target: int) -> tuple[int, int, int]:
    """(rated, cannot judge, clips the queue could still offer) for the expert."""
    t = _tables()
    where, params = _open_unanswered(expert_id)
    sql = f"""SELECT
        (SELECT COUNT(*) FROM {t.rating} WHERE rater_id = %s),
        (SELECT COUNT(*) FROM {t.cannot} WHERE rater_id = %s),
        (SELECT COUNT(*) FROM {t.clip} c JOIN {t.video} v ON v.id = c.video_id
         WHERE {where} AND c.votes_total < %s)"""
    rated, skipped, remaining = _rows(sql, [expert_id, expert_id, *params, target])[0]
    return int(rated), int(skipped), int(remaining)


__all__ = [
    "AnswerState",
    "Hold",
    "answer_state",
    "clip_with_holds_of_others",
    "commit_without_flush",
    "hold_clear",
    "holds_of",
    "next_candidate",
    "progress_counts",
    "votes_add",
]
