"""Bad input answers 400 with the reason, never 500 and never unbounded work (issue 16, item 8):
NUL in a path, query string, cookie or body; JSON nested too deep; numbers beyond what the
database holds; pages larger than the API's maximum (frontend/input_bounds.py)."""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.test import Client

from datasets.models import DatasetVersion

NUL = "%00"


@pytest.fixture
def curator(make_user):
    return make_user("curator", "bounds-curator")


@pytest.fixture
def expert(make_user):
    return make_user("expert", "bounds-expert")


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _detail(response) -> str:
    if response["Content-Type"].startswith("application/json"):
        body = response.json()
        return json.dumps(body)
    return response.content.decode()


@pytest.mark.parametrize(
    "url",
    [
        f"/clips/{NUL}/",  # a page that looks the clip up by its id
        f"/api/distributions/{NUL}/",  # an API route with a text id
        f"/api/clips/ab{NUL}cd/",
    ],
)
@pytest.mark.django_db
def test_a_nul_in_the_path_answers_400_with_the_reason(curator, url) -> None:
    response = _client(curator).get(url)

    assert response.status_code == 400
    assert "NUL character" in _detail(response) and "path" in _detail(response)


@pytest.mark.parametrize(
    "url", [f"/audit/?user=a{NUL}b", f"/api/clips/?limit=5&x{NUL}=1", f"/datasets/?q={NUL}"]
)
@pytest.mark.django_db
def test_a_nul_in_the_query_string_answers_400_with_the_reason(curator, url) -> None:
    response = _client(curator).get(url)

    assert response.status_code == 400
    assert "NUL character" in _detail(response) and "query string" in _detail(response)


@pytest.mark.django_db
def test_a_nul_in_a_form_field_or_a_cookie_answers_400_before_any_view(curator) -> None:
    client = _client(curator)

    form = client.post(
        "/login/",
        "username=bounds%00curator&password=x",
        content_type="application/x-www-form-urlencoded",
    )
    client.cookies["mersv_probe"] = "a\x00b"
    cookie = client.get("/dashboard/")

    assert form.status_code == 400 and "form" in _detail(form)
    assert cookie.status_code == 400 and "cookies" in _detail(cookie)


@pytest.mark.django_db
def test_a_nul_in_a_json_string_or_key_answers_400_with_the_reason(curator) -> None:
    client = _client(curator)

    value = client.post(
        "/api/datasets/", {"name": "nul", "description": "a\x00b"}, content_type="application/json"
    )
    key = client.post(
        "/api/datasets/", {"name": "nul", "x\x00": 1}, content_type="application/json"
    )

    assert value.status_code == 400 and "NUL character" in value.json()["detail"]
    assert key.status_code == 400 and "JSON key" in key.json()["detail"]
    assert not DatasetVersion.objects.exists()


@pytest.mark.parametrize("depth", [33, 100_000])
@pytest.mark.django_db
def test_json_nested_beyond_the_depth_answers_400_with_the_depth(curator, depth) -> None:
    body = '{"name": "deep", "description": ' + "[" * depth + "]" * depth + "}"

    response = _client(curator).post("/api/datasets/", body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["detail"] == (
        f"the JSON body is nested deeper than {settings.MAX_JSON_DEPTH} levels"
    )


@pytest.mark.django_db
def test_json_nested_up_to_the_depth_is_parsed_as_before(curator) -> None:
    depth = settings.MAX_JSON_DEPTH - 1  # the body's object is the first level
    body = '{"name": 5, "description": ' + "[" * depth + "]" * depth + "}"

    response = _client(curator).post("/api/datasets/", body, content_type="application/json")

    assert response.status_code == 400
    assert "nested" not in json.dumps(response.json())  # the serializer's own answer


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("1" * 30, "out of range"),  # beyond 64 bits
        ("-" + "9" * 25, "out of range"),
        ("1e400", "too large to be finite"),
    ],
)
@pytest.mark.django_db
def test_json_numbers_beyond_what_the_database_holds_answer_400(curator, value, reason) -> None:
    body = '{"name": "big", "seed": ' + value + "}"

    response = _client(curator).post("/api/datasets/", body, content_type="application/json")

    assert response.status_code == 400 and reason in response.json()["detail"]
    assert not DatasetVersion.objects.exists()


@pytest.mark.parametrize("seed", [2**31, 2**40, -1])
@pytest.mark.django_db
def test_a_dataset_seed_outside_its_column_answers_400_naming_the_field(curator, seed) -> None:
    response = _client(curator).post(
        "/api/datasets/", {"name": "seedy", "seed": seed}, content_type="application/json"
    )

    assert response.status_code == 400 and "seed" in response.json()
    assert not DatasetVersion.objects.exists()


# Every list API of the URLconf (role that may read it).
LIST_APIS = [
    ("curator", "/api/videos/"),
    ("curator", "/api/clips/"),
    ("curator", "/api/distributions/"),
    ("curator", "/api/datasets/"),
    ("curator", "/api/training-runs/"),
    ("curator", "/api/experiment-grids/"),
    ("expert", "/api/grading/ratings/"),
]


@pytest.mark.parametrize(("role", "url"), LIST_APIS)
@pytest.mark.parametrize("limit", ["1001", "1" * 30, "0", "-5", "many"])
@pytest.mark.django_db
def test_every_list_api_refuses_a_page_beyond_its_maximum_with_the_bounds(
    request, role, url, limit
) -> None:
    user = request.getfixturevalue(role)

    response = _client(user).get(f"{url}?limit={limit}")

    assert response.status_code == 400
    assert response.json() == {
        "limit": [f"limit must be a whole number from 1 to {settings.API_MAX_PAGE_SIZE}"]
    }


@pytest.mark.parametrize(("role", "url"), LIST_APIS)
@pytest.mark.django_db
def test_every_list_api_serves_pages_up_to_the_maximum(request, role, url) -> None:
    user = request.getfixturevalue(role)
    client = _client(user)

    full = client.get(f"{url}?limit={settings.API_MAX_PAGE_SIZE}")
    default = client.get(url)
    offset = client.get(f"{url}?offset={'9' * 30}")

    assert full.status_code == 200 and "results" in full.json()
    assert default.status_code == 200
    assert offset.status_code == 400 and "offset" in offset.json()


def test_the_maximum_page_size_is_a_documented_setting() -> None:
    readme = (settings.BASE_DIR / "README.md").read_text()

    assert settings.API_MAX_PAGE_SIZE == 1000
    assert "MERSV_API_MAX_PAGE_SIZE" in readme
