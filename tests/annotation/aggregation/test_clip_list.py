"""The curators' clip list: distribution columns computed in SQL equal the numpy definitions,
sort/filter/search in the database with a bounded number of queries, bad parameters answered
400 with a message, and no expert ever reaching it."""

from __future__ import annotations

import re

import numpy as np
import pytest
from django.urls import reverse

from annotation.aggregation.agreement import fleiss_kappa
from annotation.aggregation.clip_list import (
    ClipListQuery,
    ClipListQueryError,
    clip_list_query_parse,
    clip_list_queryset,
    clips_with_distribution_columns,
)
from annotation.aggregation.distributions import distribution_stats
from annotation.grades import VOTE_FIELDS
from annotation.models import Clip
from tests.clip_list_support import panel_clips_bulk

pytestmark = pytest.mark.django_db


def _pairwise_agreement(counts: np.ndarray) -> float:
    """P_i of one clip, as agreement.fleiss_kappa's docstring defines it."""
    n = counts.sum()
    return float((counts * (counts - 1)).sum() / (n * (n - 1)))


def test_the_sql_mean_mode_and_agreement_equal_the_numpy_definitions_ties_included() -> None:
    clips = panel_clips_bulk(n_clips=60, n_experts=6, n_patients=3, unrated_every=0)
    # Every tie shape the mode rule knows: two-way ties around the mean, a mean halfway
    # between two tied grades (the better grade wins), a three-way tie, and single votes.
    shapes = [
        (2, 0, 0, 0, 2),
        (1, 1, 0, 0, 0),
        (0, 3, 0, 3, 0),
        (1, 0, 1, 0, 1),
        (0, 2, 2, 0, 1),
        (1, 0, 0, 0, 0),
        (0, 0, 0, 0, 1),
        (3, 3, 0, 0, 1),
        (0, 0, 0, 0, 0),
    ]
    rng = np.random.default_rng(5)
    tables = [*shapes, *(tuple(int(v) for v in rng.integers(0, 4, 5)) for _ in range(51))]
    for clip, counts in zip(clips, tables, strict=True):
        values = dict(zip(VOTE_FIELDS, counts, strict=True))
        Clip.objects.filter(pk=clip.pk).update(**values, votes_total=sum(counts))
    rows = {c.pk: c for c in clips_with_distribution_columns().filter(pk__in=[c.pk for c in clips])}
    stats = distribution_stats(np.array(tables))
    for i, clip in enumerate(clips):
        row, counts = rows[clip.pk], np.array(tables[i])
        if counts.sum() == 0:
            assert (row.mean_grade, row.mode_grade, row.agreement) == (None, None, None)
            continue
        assert row.mean_grade == pytest.approx(stats.mean[i]), tables[i]
        assert row.mode_grade == stats.mode[i], tables[i]
        if counts.sum() < 2:
            assert row.agreement is None
        else:
            assert row.agreement == pytest.approx(_pairwise_agreement(counts)), tables[i]
    # The mean of the per-clip agreements is fleiss_kappa's P_bar: kappa rebuilt from them.
    table = np.array([t for t in tables if sum(t) >= 2])
    p_bar = np.mean(
        [rows[c.pk].agreement for c, t in zip(clips, tables, strict=True) if sum(t) >= 2]
    )
    shares = table.sum(axis=0) / table.sum()
    chance = float((shares**2).sum())
    assert (p_bar - chance) / (1 - chance) == pytest.approx(fleiss_kappa(table))


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"sort": "colour"}, "sort must be one of"),
        ({"sort": "--votes"}, "sort must be one of"),
        ({"votes_min": "-1"}, "votes_min must be a whole number"),
        ({"votes_max": "²"}, "votes_max must be a whole number"),
        ({"votes_min": "9", "votes_max": "3"}, "votes_min (9) must not exceed votes_max (3)"),
        ({"agreement_min": "1.5"}, "agreement_min must be a number from 0 to 1"),
        ({"agreement_max": "nan"}, "agreement_max must be a number from 0 to 1"),
        ({"mode": "F"}, "mode must be one of A, B, C, D, E, none"),
        ({"status": "lost"}, "status must be one of needs_targets, pending"),
        ({"retired": "maybe"}, "retired must be one of yes, no"),
        ({"page": "0"}, "page must be a whole number of 1 or more"),
        ({"page": "99999999999"}, "page must be a whole number"),
        ({"colour": "red"}, "unknown parameter(s) colour"),
        ({"q": "x" * 101}, "q (the search) must be at most 100 characters"),
    ],
)
def test_a_bad_parameter_is_named_in_the_error(params: dict[str, str], named: str) -> None:
    with pytest.raises(ClipListQueryError) as refused:
        clip_list_query_parse(params)
    assert named in str(refused.value)


def test_every_wrong_parameter_is_named_at_once() -> None:
    with pytest.raises(ClipListQueryError) as refused:
        clip_list_query_parse({"mode": "Z", "votes_min": "x", "sort": "y"})
    message = str(refused.value)
    assert "mode" in message and "votes_min" in message and "sort" in message


def test_the_state_round_trips_through_the_query_string() -> None:
    query = clip_list_query_parse(
        {"q": " L00 ", "retired": "no", "votes_min": "10", "mode": "B", "sort": "-agreement",
         "agreement_max": "0.5", "page": "2", "status": ""}
    )  # fmt: skip
    assert query == ClipListQuery(
        q="L00", retired=False, votes_min=10, mode="B", agreement_max=0.5, sort="-agreement", page=2
    )
    again = clip_list_query_parse(dict(re.findall(r"([^&=]+)=([^&]*)", query.url_query())))
    assert again == query
    assert query.url_query(page=1, sort="clip") == (
        "q=L00&retired=no&votes_min=10&mode=B&agreement_max=0.5"
    )


def _ids(query: ClipListQuery) -> list[str]:
    return list(clip_list_queryset(query).values_list("external_id", flat=True))


def test_sorts_and_filters_at_the_papers_scale_agree_with_python_on_the_same_rows() -> None:
    panel_clips_bulk()
    rows = list(clips_with_distribution_columns().select_related("video__patient"))
    assert len(rows) == 615
    by_id = {c.external_id: c for c in rows}

    def last(value: float | None) -> tuple[bool, float]:
        return (value is None, value or 0.0)

    # Descending mean, clips without votes last, ties by clip id.
    got = _ids(ClipListQuery(sort="-mean"))
    want = sorted(
        by_id, key=lambda i: (by_id[i].mean_grade is None, -(by_id[i].mean_grade or 0), i)
    )
    assert got == want
    got = _ids(ClipListQuery(sort="agreement"))
    assert got == sorted(by_id, key=lambda i: (*last(by_id[i].agreement), i))
    got = _ids(ClipListQuery(sort="-votes"))
    assert got == sorted(by_id, key=lambda i: (-by_id[i].votes_total, i))
    # Filters, alone and together.
    got = set(_ids(ClipListQuery(mode="C", retired=False, votes_min=20, agreement_min=0.3)))
    want_set = {
        i
        for i, c in by_id.items()
        if c.mode_grade == "C" and c.retired_at is None and c.votes_total >= 20
        and c.agreement is not None and c.agreement >= 0.3
    }  # fmt: skip
    assert got == want_set and got
    assert set(_ids(ClipListQuery(mode="none"))) == {
        i for i, c in by_id.items() if not c.votes_total
    }
    assert set(_ids(ClipListQuery(status="failed"))) == {
        i for i, c in by_id.items() if c.video.status == "failed"
    }
    assert set(_ids(ClipListQuery(patient="LP007"))) == {
        i for i, c in by_id.items() if c.video.patient.code == "LP007"
    }
    assert _ids(ClipListQuery(q="l0123")) == ["L0123"]  # case-insensitive search
    assert len(_ids(ClipListQuery(q="LP040"))) == 15  # a patient's clips by its code


def test_the_page_costs_the_same_queries_at_615_clips_as_at_60(
    make_user, client_for, django_assert_max_num_queries
) -> None:
    curator = client_for(make_user("curator"))
    url = reverse("clip-list")
    params = {"sort": "-agreement", "retired": "no", "votes_min": "5", "page": "2"}
    panel_clips_bulk(n_clips=60, n_experts=6, prefix="S", unrated_every=0)
    curator.get(url)  # the first request of a session writes to the session
    # session, user, role groups, then the count and the page.
    with django_assert_max_num_queries(5) as small:
        assert curator.get(url, params).status_code == 200
    panel_clips_bulk()
    with django_assert_max_num_queries(5) as large:
        page = curator.get(url, params)
    assert page.status_code == 200
    assert len(large.captured_queries) == len(small.captured_queries)
    html = page.content.decode()
    assert html.count('<tr data-clip="') == 50
    assert "page 2 of" in html
    # The pager keeps the filters and the sort.
    assert "?retired=no&amp;votes_min=5&amp;sort=-agreement&amp;page=3" in html


def test_a_bad_parameter_gets_a_400_page_that_says_what_was_wrong(make_user, client_for) -> None:
    curator = client_for(make_user("curator"))
    answer = curator.get(reverse("clip-list"), {"agreement_min": "lots", "sort": "size"})
    assert answer.status_code == 400
    html = answer.content.decode()
    assert "agreement_min must be a number from 0 to 1" in html
    assert "sort must be one of clip, patient" in html
    beyond = curator.get(reverse("clip-list"), {"page": "7"})
    assert beyond.status_code == 400
    assert "page 7 does not exist: this list has 1 page(s)." in beyond.content.decode()


def test_blank_form_fields_redirect_to_the_short_bookmarkable_address(
    make_user, client_for
) -> None:
    curator = client_for(make_user("curator"))
    answer = curator.get(
        reverse("clip-list"), {"q": "", "mode": "B", "status": "", "sort": "", "votes_min": ""}
    )
    assert answer.status_code == 302
    assert answer.url == reverse("clip-list") + "?mode=B"
    assert curator.get(reverse("clip-list"), {"q": ""}).url == reverse("clip-list")


def test_the_distribution_api_sorts_and_filters_with_the_same_parameters(
    make_user, client_for
) -> None:
    panel_clips_bulk(n_clips=30, n_experts=8, n_patients=3, unrated_every=10)
    api = client_for(make_user("curator"))
    answer = api.get(reverse("api-distributions"), {"sort": "-mean", "votes_min": "1"})
    assert answer.status_code == 200
    means = [row["mean"] for row in answer.json()["results"]]
    assert len(means) == 27 and means == sorted(means, reverse=True)
    refused = api.get(reverse("api-distributions"), {"mode": "G"})
    assert refused.status_code == 400
    assert "mode must be one of A, B, C, D, E, none" in refused.json()["detail"]


@pytest.mark.parametrize("role", ["expert", "trainee"])
def test_only_curators_and_admins_open_the_clip_list(role, make_user, client_for) -> None:
    panel_clips_bulk(n_clips=5, n_experts=3, n_patients=1)
    answer = client_for(make_user(role)).get(reverse("clip-list"), {"sort": "-mean"})
    assert answer.status_code == 403
    assert "L0001" not in answer.content.decode()
    assert client_for(make_user("admin")).get(reverse("clip-list")).status_code == 200
