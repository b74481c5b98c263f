"""The clip list of the curators (the clips page and GET /api/distributions/): sort, filter and
search done in the database, so a page of 50 costs the same two queries at 615 clips as at 6.

The distribution columns are computed in SQL from the vote counts stored on Clip (kept equal to
its Rating rows in the vote transaction), with the same definitions as the numpy code:

- ``mean_grade``: the mean grade score, A=1 .. E=5 (`distributions.distribution_stats`);
  NULL without votes.
- ``mode_grade``: the most voted grade with the tie rule of `distributions.grade_mode_index`
  (among the tied top grades the one nearest the mean, then the better one); NULL without
  votes.
- ``agreement``: the clip's observed pairwise agreement, the P_i of Fleiss' kappa
  (`agreement.fleiss_kappa`): the share of pairs of votes that name the same grade; NULL with
  fewer than two votes.

Only curators and admins are shown this list: it says how experts voted.

The query string is the list's whole state (a bookmark brings back the same page):

    q=TEXT            clip id or patient code contains TEXT (case-insensitive)
    status=S          the video's status: pending, processing, ready, failed
    retired=yes|no    left the rating queue or not
    votes_min=N, votes_max=N
    mode=A..E|none    the mode grade ("none": clips without votes)
    agreement_min=X, agreement_max=X     X in [0, 1]
    patient=CODE      one patient (exact code)
    sort=KEY, -KEY    one of SORT_KEYS; "-" for descending (default: clip)
    page=N
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from urllib.parse import urlencode

from django.db.models import (
    Case,
    CharField,
    ExpressionWrapper,
    F,
    FloatField,
    IntegerField,
    Q,
    QuerySet,
    Value,
    When,
)
from django.db.models.expressions import Combinable
from django.db.models.functions import Abs, Cast, Greatest, Least, Mod, NullIf, Substr

from annotation.errors import ServiceError
from annotation.grades import GRADES, VOTE_FIELDS
from annotation.models import Clip, Video

PAGE_SIZE = 50

# Sort keys as the URL names them, and the column each sorts by. Every sort ends on the clip id,
# so pages never overlap or skip a clip when several clips share a value.
SORT_KEYS: dict[str, str] = {
    "clip": "external_id",
    "patient": "video__patient__code",
    "status": "video__status",
    "votes": "votes_total",
    "mean": "mean_grade",
    "mode": "mode_grade",
    "agreement": "agreement",
    "retired": "retired_at",
    "vcl": "vcl",
    "vsl": "vsl",
    "lin": "lin",
}
STATUSES: tuple[str, ...] = tuple(Video.Status.values)
MODES: tuple[str, ...] = (*GRADES, "none")
# The query string's parameters and what each means (the API schema's descriptions too).
PARAMETER_HELP: dict[str, str] = {
    "q": "search: clip id or patient code contains this text (case-insensitive)",
    "status": f"the video's status: {', '.join(STATUSES)}",
    "retired": "yes: only clips out of the rating queue; no: only open clips",
    "votes_min": "at least this many expert votes",
    "votes_max": "at most this many expert votes",
    "mode": "the mode grade, A..E, or none for clips without votes",
    "agreement_min": "agreement (share of pairs of votes naming the same grade) at least, 0..1",
    "agreement_max": "agreement at most, 0..1",
    "patient": "one patient's clips (exact code)",
    "sort": f"{', '.join(SORT_KEYS)}; a leading '-' sorts descending (default: clip)",
    "page": "page number, from 1",
}
PARAMETERS: tuple[str, ...] = tuple(PARAMETER_HELP)
MAX_SEARCH_LENGTH = 100
# A whole number as the URL may carry it: ASCII digits only (str.isdigit takes "²"), at most
# nine of them, so int() never meets an unbounded text.
_WHOLE = re.compile(r"[0-9]{1,9}")


class ClipListQueryError(ServiceError):
    """A parameter of the clip list the list cannot use; the message names each one."""


@dataclass(frozen=True)
class ClipListQuery:
    """The clip list's state, parsed from the query string (`clip_list_query_parse`)."""

    q: str = ""
    status: str = ""
    retired: bool | None = None
    votes_min: int | None = None
    votes_max: int | None = None
    mode: str = ""
    agreement_min: float | None = None
    agreement_max: float | None = None
    patient: str = ""
    sort: str = "clip"
    page: int = 1

    def as_params(self, **changes: object) -> dict[str, str]:
        """The query string's parameters for this state (with `changes`), defaults left out."""
        params: dict[str, str] = {}
        for field in fields(self):
            value = changes.get(field.name, getattr(self, field.name))
            if value is None or value == "" or value == field.default:
                continue
            if isinstance(value, bool):
                value = "yes" if value else "no"
            params[field.name] = str(value)
        return params

    def url_query(self, **changes: object) -> str:
        """This state as a query string (no "?"), e.g. for a link that changes the sort."""
        return urlencode(self.as_params(**changes))

    @property
    def filtered(self) -> bool:
        """Whether any filter or search is set (not just a sort or a page)."""
        return bool(self.as_params(sort="clip", page=1))

    @property
    def sort_key(self) -> str:
        return self.sort.removeprefix("-")

    @property
    def descending(self) -> bool:
        return self.sort.startswith("-")


def _int(params: Mapping[str, str], name: str, problems: list[str]) -> int | None:
    raw = params.get(name, "").strip()
    if not raw:
        return None
    if not _WHOLE.fullmatch(raw):
        problems.append(f"{name} must be a whole number of 0 or more, not {raw[:20]!r}")
        return None
    return int(raw)


def _share(params: Mapping[str, str], name: str, problems: list[str]) -> float | None:
    raw = params.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:  # NaN fails too
        problems.append(f"{name} must be a number from 0 to 1 (a share of pairs), not {raw[:20]!r}")
        return None
    return value


def _choice(
    params: Mapping[str, str], name: str, choices: tuple[str, ...], problems: list[str]
) -> str:
    raw = params.get(name, "").strip()
    if raw and raw not in choices:
        problems.append(f"{name} must be one of {', '.join(choices)}, not {raw[:20]!r}")
        return ""
    return raw


def clip_list_query_parse(params: Mapping[str, str]) -> ClipListQuery:
    """The clip list's state from a query string; empty values count as not given.

    Raises ClipListQueryError naming every parameter that is wrong, and how to fix it.
    """
    problems: list[str] = []
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        problems.append(
            f"unknown parameter(s) {', '.join(unknown)}: "
            f"the clip list takes {', '.join(PARAMETERS)}"
        )
    q = params.get("q", "").strip()
    if len(q) > MAX_SEARCH_LENGTH:
        problems.append(f"q (the search) must be at most {MAX_SEARCH_LENGTH} characters")
    retired_raw = _choice(params, "retired", ("yes", "no"), problems)
    votes_min = _int(params, "votes_min", problems)
    votes_max = _int(params, "votes_max", problems)
    if votes_min is not None and votes_max is not None and votes_min > votes_max:
        problems.append(f"votes_min ({votes_min}) must not exceed votes_max ({votes_max})")
    agreement_min = _share(params, "agreement_min", problems)
    agreement_max = _share(params, "agreement_max", problems)
    if agreement_min is not None and agreement_max is not None and agreement_min > agreement_max:
        problems.append(
            f"agreement_min ({agreement_min}) must not exceed agreement_max ({agreement_max})"
        )
    sort = params.get("sort", "").strip() or "clip"
    if sort.removeprefix("-") not in SORT_KEYS:
        problems.append(
            f"sort must be one of {', '.join(SORT_KEYS)} (with a leading '-' for descending), "
            f"not {sort[:20]!r}"
        )
        sort = "clip"
    status = _choice(params, "status", STATUSES, problems)
    mode = _choice(params, "mode", MODES, problems)
    page_raw = params.get("page", "").strip() or "1"
    if not _WHOLE.fullmatch(page_raw) or int(page_raw) < 1:
        problems.append(f"page must be a whole number of 1 or more, not {page_raw[:20]!r}")
        page_raw = "1"
    if problems:
        raise ClipListQueryError("; ".join(problems) + ".")
    return ClipListQuery(
        q=q,
        status=status,
        retired=None if not retired_raw else retired_raw == "yes",
        votes_min=votes_min,
        votes_max=votes_max,
        mode=mode,
        agreement_min=agreement_min,
        agreement_max=agreement_max,
        patient=params.get("patient", "").strip()[:64],
        sort=sort,
        page=int(page_raw),
    )


def clips_with_distribution_columns() -> QuerySet[Clip]:
    """Every clip with ``mean_grade``, ``mode_grade`` and ``agreement`` annotated (see the
    module docstring); the expressions are plain SQL (PostgreSQL and SQLite)."""
    n = F("votes_total")
    votes = [F(name) for name in VOTE_FIELDS]  # A..E
    score_sum: Combinable = votes[0]
    pairs_same: Combinable = votes[0] * (votes[0] - 1)
    for k, vote in enumerate(votes[1:], start=2):
        score_sum = score_sum + vote * k
        pairs_same = pairs_same + vote * (vote - 1)
    top = Greatest(*votes)
    # The tie rule of grade_mode_index in exact integers, as one key per grade: a top grade's
    # distance to the mean times n is |score * n - score_sum|, other grades sit above every
    # distance; the key is that times 8 plus the grade's index (0=A .. 4=E). The smallest key
    # is the nearest top grade, the better one on a tie, and its low bits name it.
    never = Value(1 << 24)
    keys = [
        Case(
            When(**{VOTE_FIELDS[k]: top}, then=Abs(n * (k + 1) - score_sum)),
            default=never,
            output_field=IntegerField(),
        )
        * 8
        + k
        for k in range(len(GRADES))
    ]
    mode_index = Mod(Least(*keys), 8)
    mode_grade = Case(
        When(votes_total=0, then=Value(None)),
        default=Substr(Value("".join(GRADES)), mode_index + 1, 1),
        output_field=CharField(),
    )
    return Clip.objects.annotate(
        mean_grade=ExpressionWrapper(
            Cast(score_sum, FloatField()) / NullIf(n, 0), output_field=FloatField()
        ),
        agreement=ExpressionWrapper(
            Cast(pairs_same, FloatField()) / NullIf(n * (n - 1), 0), output_field=FloatField()
        ),
        mode_grade=mode_grade,
    )


def clip_list_queryset(query: ClipListQuery) -> QuerySet[Clip]:
    """The clips `query` selects, in its order, with the distribution columns and the patient
    and video joined (one query for a page, one for the count)."""
    clips = clips_with_distribution_columns().select_related("video__patient")
    if query.q:
        clips = clips.filter(
            Q(external_id__icontains=query.q) | Q(video__patient__code__icontains=query.q)
        )
    if query.status:
        clips = clips.filter(video__status=query.status)
    if query.retired is not None:
        clips = clips.filter(retired_at__isnull=not query.retired)
    if query.votes_min is not None:
        clips = clips.filter(votes_total__gte=query.votes_min)
    if query.votes_max is not None:
        clips = clips.filter(votes_total__lte=query.votes_max)
    # Lookups on the annotations go through Q: the type checker knows only the model's fields.
    if query.mode:
        if query.mode == "none":
            clips = clips.filter(Q(mode_grade__isnull=True))
        else:
            clips = clips.filter(Q(mode_grade=query.mode))
    if query.agreement_min is not None:
        clips = clips.filter(Q(agreement__gte=query.agreement_min))
    if query.agreement_max is not None:
        clips = clips.filter(Q(agreement__lte=query.agreement_max))
    if query.patient:
        clips = clips.filter(video__patient__code=query.patient)
    column = F(SORT_KEYS[query.sort_key])
    # Clips without a value (no votes, not retired) go last either way.
    order = column.desc(nulls_last=True) if query.descending else column.asc(nulls_last=True)
    return clips.order_by(order, "external_id")
