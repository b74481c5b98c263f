"""The aggregation API: distributions (JSON and CSV) and panel statistics, for curators."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotation.aggregation import agreement
from annotation.aggregation.distributions import grade_counts
from annotation.aggregation.rater_model_service import rater_model_refit
from annotation.grades import GRADE_INDEX


@pytest.fixture
def curator(make_user):
    return make_user("curator", "cura-01")


def test_the_distributions_api_equals_counts_computed_by_hand(
    make_clips, make_experts, add_votes, client_for, curator
) -> None:
    first, second, empty = make_clips(3)
    raters = make_experts(4)
    add_votes(first, "AABC", raters)
    add_votes(second, "EEE", raters)

    body = client_for(curator).get("/api/distributions/").json()

    assert body["count"] == 3
    rows = {row["clip_id"]: row for row in body["results"]}
    one = rows[first.external_id]
    assert one["counts"] == {"A": 2, "B": 1, "C": 1, "D": 0, "E": 0}
    assert one["n"] == 4
    assert one["p"] == {"A": 0.5, "B": 0.25, "C": 0.25, "D": 0.0, "E": 0.0}
    assert one["mean"] == pytest.approx((1 + 1 + 2 + 3) / 4)
    assert one["std"] == pytest.approx(np.std([1, 1, 2, 3]))
    assert one["mode"] == "A"
    assert one["entropy"] == pytest.approx(1.5)  # -(.5 log2 .5 + 2 * .25 log2 .25)
    assert rows[second.external_id]["p"]["E"] == 1.0
    assert rows[second.external_id]["entropy"] == 0.0
    assert rows[second.external_id]["std"] == 0.0
    # A clip without votes is listed, with no distribution rather than NaNs.
    none = rows[empty.external_id]
    assert none["n"] == 0 and none["p"] is None and none["mean"] is None and none["mode"] == ""
    assert none["corrected"] is None


def test_the_detail_api_gives_the_raw_and_the_severity_corrected_distribution(
    make_clips, make_experts, add_votes, client_for, curator
) -> None:
    clips = make_clips(4)
    raters = make_experts(5)
    for clip, grades in zip(clips, ["AABBC", "BBCCD", "CCDDE", "ABBCC"], strict=True):
        add_votes(clip, grades, raters)
    rater_model_refit()  # the worker's task (reads never fit)

    body = client_for(curator).get(f"/api/distributions/{clips[0].external_id}/").json()

    assert body["counts"] == {"A": 2, "B": 2, "C": 1, "D": 0, "E": 0}
    corrected = body["corrected"]
    assert set(corrected) == set("ABCDE")
    assert sum(corrected.values()) == pytest.approx(1.0, abs=1e-5)
    # The model spreads mass over neighbouring grades instead of copying the votes.
    assert corrected != body["p"] and corrected["D"] > 0
    assert client_for(curator).get("/api/distributions/no-such-clip/").status_code == 404


def test_the_csv_download_has_the_contract_columns_and_one_row_per_voted_clip(
    make_clips, make_experts, add_votes, client_for, curator
) -> None:
    first, _empty, second = make_clips(3)
    raters = make_experts(4)
    add_votes(first, "ABBB", raters)
    add_votes(second, "CD", raters)

    response = client_for(curator).get("/api/distributions.csv")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response.streaming
    text = b"".join(response.streaming_content).decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["clip_id", "p_A", "p_B", "p_C", "p_D", "p_E", "n", "mean", "std", "mode"]
    # Clips without votes are left out; rows are ordered by clip id.
    assert [r[0] for r in rows[1:]] == [first.external_id, second.external_id]
    assert rows[1][1:] == [
        "0.250000", "0.750000", "0.000000", "0.000000", "0.000000", "4", "1.750000",
        f"{np.std([1, 2, 2, 2]):.6f}", "B",
    ]  # fmt: skip
    # A tie between C and D: the mean (3.5) lies halfway, the better grade wins.
    assert rows[2][6:] == ["2", "3.500000", "0.500000", "C"]


def test_a_client_that_asks_for_text_csv_gets_the_table_or_a_plain_refusal(
    make_clips, make_experts, add_votes, make_user, client_for, curator
) -> None:
    clip = make_clips(1)[0]
    add_votes(clip, "AB", make_experts(2))

    ok = client_for(curator).get("/api/distributions.csv", HTTP_ACCEPT="text/csv")
    refused = client_for(make_user("expert")).get("/api/distributions.csv", HTTP_ACCEPT="text/csv")

    assert ok.status_code == 200
    assert b"".join(ok.streaming_content).decode().splitlines()[1].startswith(clip.external_id)
    assert refused.status_code == 403
    assert refused.content.decode().strip() == "only curators and admins may do this"


def test_the_statistics_agreement_equals_direct_calls_of_annotation_agreement(
    make_clips, make_experts, add_votes, client_for, curator
) -> None:
    clips = make_clips(8)
    raters = make_experts(5)
    votes = ["AABBB", "BBBCC", "CCCDD", "DDEEE", "ABBBC", "BCCCD", "AAAAB", "C DDE"]
    for clip, grades in zip(clips, votes, strict=True):
        add_votes(clip, grades, raters)
    rater_model_refit()  # the worker's task (reads never fit)

    body = client_for(curator).get("/api/statistics/?bootstrap=300").json()

    # The same ratings as index arrays, clips and raters in id order (as the selector has them).
    clip_idx, rater_idx, grade_idx = [], [], []
    for c, grades in enumerate(votes):
        for r, grade in enumerate(grades):
            if grade != " ":
                clip_idx.append(c), rater_idx.append(r), grade_idx.append(GRADE_INDEX[grade])
    arrays = (np.array(clip_idx), np.array(rater_idx), np.array(grade_idx))
    alpha = agreement.krippendorff_alpha(*arrays, n_clips=8, n_raters=5, n_resamples=300)
    counts = grade_counts(arrays[0], arrays[2], 8)
    per_expert = agreement.expert_agreement(*arrays, n_clips=8, n_raters=5)

    got = body["agreement"]
    assert got["alpha"] == pytest.approx(alpha.alpha)
    assert got["alpha_ci_low"] == pytest.approx(alpha.ci_low)
    assert got["alpha_ci_high"] == pytest.approx(alpha.ci_high)
    assert got["n_resamples"] == 300 and got["n_clips_pairable"] == 8
    assert got["fleiss_kappa"] == pytest.approx(agreement.fleiss_kappa(counts))
    kappa = agreement.fleiss_kappa_interval(counts, n_resamples=300)
    assert (got["fleiss_kappa_ci_low"], got["fleiss_kappa_ci_high"]) == pytest.approx(
        (kappa.ci_low, kappa.ci_high)
    )
    assert got["fleiss_kappa_ci_low"] < got["fleiss_kappa"] < got["fleiss_kappa_ci_high"]
    assert [e["rater"] for e in body["experts"]] == [r.username for r in raters]
    for row, (_, expected) in zip(body["experts"], per_expert.iterrows(), strict=True):
        assert row["n_votes"] == expected["n_votes"]
        assert row["severity"] == pytest.approx(expected["severity"])
        assert row["kappa_quadratic"] == pytest.approx(expected["kappa_quadratic"])
        assert row["mean_emd"] == pytest.approx(expected["mean_emd"])
        assert row["model_severity"] is not None
    assert body["figure3"]["ratings_per_expert"] == [8, 7, 8, 8, 8]
    assert body["figure3"]["mode_hist"] == {"A": 1, "B": 3, "C": 2, "D": 1, "E": 1}
    assert body["n_ratings"] == 39 and body["n_rated_clips"] == 8


def test_the_bootstrap_parameter_is_bounded_and_zero_gives_no_interval(
    make_clips, make_experts, add_votes, client_for, curator
) -> None:
    clip, other = make_clips(2)
    raters = make_experts(3)
    add_votes(clip, "ABB", raters)
    add_votes(other, "CCD", raters)
    client = client_for(curator)

    for bad in ("5001", "-1", "many"):
        response = client.get(f"/api/statistics/?bootstrap={bad}")
        assert response.status_code == 400, bad
        assert "bootstrap" in response.json()
    none = client.get("/api/statistics/?bootstrap=0").json()["agreement"]
    assert none["alpha"] is not None
    assert none["alpha_ci_low"] is None and none["n_resamples"] == 0


def test_the_statistics_of_a_platform_without_ratings_are_empty_not_an_error(
    make_clips, client_for, curator
) -> None:
    make_clips(2)

    body = client_for(curator).get("/api/statistics/").json()

    assert body["n_ratings"] == 0 and body["experts"] == [] and body["rater_model"] is None
    assert body["agreement"]["alpha"] is None and body["agreement"]["fleiss_kappa"] is None
    assert body["figure3"]["ratings_per_clip"] == [2]
    assert body["retirement"]["n_open"] == 2


def _queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


@pytest.mark.parametrize("url", ["/api/distributions/", "/api/statistics/", "/dashboard/"])
def test_the_number_of_queries_does_not_grow_with_clips_and_votes(
    url, make_clips, make_experts, add_votes, client_for, curator
) -> None:
    raters = make_experts(4)
    client = client_for(curator)
    for clip in make_clips(2):
        add_votes(clip, "ABCD", raters)
    client.get(url)  # fits and stores the rater model
    few = _queries(client, url)
    for clip in make_clips(6):
        add_votes(clip, "BBCC", raters)
    client.get(url)
    assert _queries(client, url) == few


def test_the_openapi_schema_documents_the_aggregation_endpoints(client_for, curator) -> None:
    schema = client_for(curator).get("/api/schema/").content.decode()
    for path in (
        "/api/distributions/",
        "/api/distributions/{clip_id}/",
        "/api/distributions.csv",
        "/api/statistics/",
    ):
        assert path in schema
    assert "kappa_quadratic" in schema and "bootstrap" in schema


@pytest.mark.parametrize("role", ["expert", "trainee"])
def test_experts_and_trainees_are_refused_every_aggregation_endpoint(
    role, make_clips, make_experts, add_votes, make_user, client_for
) -> None:
    clip = make_clips(1)[0]
    add_votes(clip, "ABC", make_experts(3))
    client = client_for(make_user(role))

    for url in (
        "/api/distributions/",
        f"/api/distributions/{clip.external_id}/",
        "/api/distributions.csv",
        "/api/statistics/",
    ):
        assert client.get(url).status_code == 403, url
