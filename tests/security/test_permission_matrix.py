"""The permission matrix (permission_matrix.csv): every route x method x object, for each role.

Each row is one request, sent once per role; the cell says what that role must get:
  ok     the permission check passed (2xx, a redirect elsewhere than the login page, or a
         400/409 about the request's content)
  login  not logged in: redirected to the login page (pages) or 401 (API)
  403    refused for the role; 404: the object does not exist for this user (someone else's
         rating, a clip outside the trainee's set); 405: the method is not allowed.
The object column names which object the URL or body points at: own / other (someone else's)
or a named case; "-" for none. A meta-test fails when a route in the URL resolver has no row.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from tests.security.conftest import ROLES, World, client_for, media_path

MATRIX_PATH = Path(__file__).with_name("permission_matrix.csv")
# Routes the matrix leaves out: the Django admin tests its own permissions (is_staff), and
# static files are public by design.
EXEMPT_NAMESPACES = {"admin"}


def matrix_rows() -> list[dict[str, str]]:
    lines = [ln for ln in MATRIX_PATH.read_text().splitlines() if ln and not ln.startswith("#")]
    return list(csv.DictReader(lines))


def resolver_route_names() -> set[str]:
    names: set[str] = set()

    def walk(patterns: list[Any]) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                if pattern.namespace not in EXEMPT_NAMESPACES:
                    walk(pattern.url_patterns)
            elif isinstance(pattern, URLPattern):
                assert pattern.name, f"the route {pattern.pattern} has no name"
                names.add(pattern.name)

    walk(get_resolver().url_patterns)
    return names


# URL arguments by route; `obj` is the row's object column.
def _pk(kind: str) -> Callable[[World, str], dict[str, Any]]:
    def kwargs(w: World, obj: str) -> dict[str, Any]:
        return {"pk": w.objects[f"{kind}_{obj}"].pk} if obj != "missing" else {"pk": 999999}

    return kwargs


def _version_name(w: World, obj: str) -> dict[str, Any]:
    return {"name": w.objects[f"version_{obj}"].name if obj != "missing" else "no-such"}


def _clip_id(w: World, obj: str) -> dict[str, Any]:
    return {"clip_id": w.objects["clip"].external_id}


def _media(w: World, obj: str) -> dict[str, Any]:
    if obj == "clip-file":
        return {"path": media_path(w.objects["clip"])}
    if obj == "source-video":
        return {"path": str(w.objects["video_own"].file.name)}
    if obj == "first-frame":
        return {"path": str(w.objects["video_own"].first_frame.name)}
    return {"path": "clips/none/missing.png"}


URL_KWARGS: dict[str, Callable[[World, str], dict[str, Any]]] = {
    "api-video": _pk("video"),
    "api-video-ingest": _pk("video"),
    "video-detail": _pk("video"),
    "video-ingest": _pk("video"),
    "api-clip": _clip_id,
    "clip-detail": _clip_id,
    "clip-reference": _clip_id,
    "api-reference-clip": lambda w, obj: {"pk": 999999},
    "api-token-revoke": lambda w, obj: {"pk": 999999},
    # Uploads straight to the bucket: another account's or no upload is a 404 for curators.
    "api-upload": lambda w, obj: {"token": "00000000-0000-4000-8000-000000000000"},
    "api-upload-complete": lambda w, obj: {"token": "00000000-0000-4000-8000-000000000000"},
    "api-distribution": _clip_id,
    "api-dataset": _version_name,
    "api-dataset-download": _version_name,
    "dataset-detail": _version_name,
    "dataset-download": _version_name,
    "api-dataset-diff": lambda w, obj: {**_version_name(w, obj), "other": "sec-own"},
    "api-training-run": _pk("run"),
    "api-training-run-cancel": _pk("run"),
    "api-training-run-resume": _pk("run"),
    "api-training-run-predictions-csv": _pk("run"),
    "api-training-run-prediction": lambda w, obj: {
        **_pk("run")(w, obj),
        "clip_id": w.objects["clip"].external_id,
    },
    "training-run-detail": _pk("run"),
    "training-run-cancel": _pk("run"),
    "training-run-live": _pk("run"),
    "training-run-production": _pk("run"),
    "training-run-resume": _pk("run"),
    "training-run-predict-new": _pk("run"),
    "api-experiment-grid": _pk("grid"),
    "api-experiment-grid-cancel": _pk("grid"),
    "experiment-grid-detail": _pk("grid"),
    "experiment-grid-live": _pk("grid"),
    "experiment-grid-cancel": _pk("grid"),
    # The world's grid wrote no report: a curator passes the role check and finds no file.
    "experiment-grid-report-file": lambda w, obj: {
        "pk": w.objects[f"grid_{obj}"].pk,
        "name": "report.html",
    },
    "api-grading-rating": _pk("rating"),
    "media": _media,
    "api-triage": lambda w, obj: {"video_id": w.objects["video_own"].pk},
    "practice-feedback": lambda w, obj: {"pk": 999999},
    "practice-feedback-old": lambda w, obj: {"pk": 999999},
}

# Request bodies by (route, object); JSON for the API, form data for pages.
BODIES: dict[tuple[str, str], Callable[[World], dict[str, Any]]] = {
    ("api-grading-ratings", "-"): lambda w: {
        "clip_id": w.objects["clip_free"].external_id, "grade": "B", "time_spent_ms": 900
    },
    ("api-grading-ratings", "missing"): lambda w: {
        "clip_id": "no-such-clip", "grade": "B", "time_spent_ms": 900
    },
    ("api-grading-rating", "own"): lambda w: {"grade": "A"},
    ("api-grading-rating", "other"): lambda w: {"grade": "A"},
    ("api-grading-cannot-judge", "-"): lambda w: {
        "clip_id": w.objects["clip_free"].external_id, "reason": "other",
        "note": "the head leaves the crop",
    },
    ("api-datasets", "-"): lambda w: {"name": "sec-new"},
    ("api-tokens", "-"): lambda w: {"name": "matrix laptop"},
    ("account-tokens", "-"): lambda w: {"action": "create", "name": "matrix laptop"},
    ("api-reference-clips", "-"): lambda w: {
        "clip_id": w.objects["clip"].external_id, "grade": "A"
    },
    ("clip-reference", "-"): lambda w: {"action": "add", "grade": "A"},
    ("api-practice-ratings", "missing"): lambda w: {
        "practice_set": 999999, "clip_id": w.objects["clip"].external_id, "grade": "B",
        "time_spent_ms": 900,
    },
}  # fmt: skip


def outcome(response: Any, path: str) -> str:
    code = response.status_code
    if code in (301, 302, 303) and urlparse(response["Location"]).path == reverse("login"):
        return "login"
    if code == 401:
        return "login"
    if code in (403, 404, 405):
        return str(code)
    if code < 400 or code in (400, 409):
        return "ok"
    return str(code)


def send(client: Any, method: str, url: str, data: dict[str, Any] | None) -> Any:
    if url.startswith("/api/") and url != reverse("api-videos"):  # uploads are multipart
        return getattr(client, method.lower())(url, data or {}, content_type="application/json")
    if method == "GET":
        return client.get(url)
    return getattr(client, method.lower())(url, data or {})


def row_id(row: dict[str, str]) -> str:
    return f"{row['route']}-{row['method']}-{row['object']}"


def test_every_route_has_rows_in_the_matrix() -> None:
    covered = {row["route"] for row in matrix_rows()}
    missing = sorted(resolver_route_names() - covered)
    assert not missing, f"add rows to {MATRIX_PATH.name} for: {', '.join(missing)}"
    stale = sorted(covered - resolver_route_names())
    assert not stale, f"rows for routes that no longer exist: {', '.join(stale)}"


def test_the_matrix_names_every_role_and_known_outcomes() -> None:
    rows = matrix_rows()
    assert rows and list(rows[0]) == ["route", "method", "object", *ROLES]
    for row in rows:
        for role in ROLES:
            assert row[role] in {"ok", "login", "403", "404", "405"}, (row_id(row), role)


@pytest.mark.parametrize("row", matrix_rows(), ids=row_id)
def test_permission_matrix_row(row: dict[str, str], world: World) -> None:
    route, method, obj = row["route"], row["method"], row["object"]
    kwargs = URL_KWARGS.get(route, lambda w, o: {})(world, obj)
    url = reverse(route, kwargs=kwargs)
    body = BODIES.get((route, obj))
    mismatches = []
    observed = []
    for role in ROLES:
        response = send(client_for(role, world), method, url, body(world) if body else None)
        got = outcome(response, url)
        observed.append(got)
        if got != row[role]:
            mismatches.append(f"{role}: expected {row[role]}, got {response.status_code} ({got})")
    assert not mismatches, (
        f"{method} {url} [{obj}]: " + "; ".join(mismatches)
        + f"\n  observed row: {route},{method},{obj},{','.join(observed)}"
    )  # fmt: skip
