"""Bounds on what a request may carry, checked before a view or a query sees it.

PostgreSQL refuses a NUL character in any text value and a whole number beyond its column's
range; Python's JSON parser recurses once per nesting level. Left to the database or the
parser, each of these ends as a 500 (or as unbounded work) far from the input that caused
it. Here they are refused at the door with a 400 that names the problem:

- `InputBoundsMiddleware`: NUL in the path, the query string, a cookie or a form field
  (url-encoded bodies; multipart fields reach Django's and DRF's form fields, which refuse
  NUL themselves, and the middleware does not parse uploads before the login check);
- `BoundedJSONParser` (the API's JSON parser): nesting deeper than `settings.MAX_JSON_DEPTH`,
  NUL in a key or a string, a whole number beyond the database's 64-bit range, a number
  that is not finite (``1e400``; NaN and Infinity are refused by DRF's strict parsing);
- `BoundedLimitOffsetPagination` (every list API): ``?limit=`` from 1 to
  `settings.API_MAX_PAGE_SIZE`, ``?offset=`` at least 0; anything else is a 400 naming the
  bounds (never silently replaced by the default, so a client learns its page is smaller).

Narrower bounds of one field (a seed stored in a 32-bit column) stay with that field's
serializer or form.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import JSONParser
from rest_framework.request import Request

# The largest whole numbers a database column holds (bigint); ids and counts fit in it.
DB_INT_MIN = -(2**63)
DB_INT_MAX = 2**63 - 1


def _has_nul(text: str) -> bool:
    return "\x00" in text


def text_problem(where: str, values: Iterable[str]) -> str | None:
    """Why these request texts (names and values of one part of a request) are refused."""
    for value in values:
        if _has_nul(value):
            return f"the {where} contains a NUL character (\\x00), which no field accepts"
    return None


def request_problem(request: HttpRequest) -> str | None:
    """Why the path, query string, cookies or url-encoded form of `request` are refused."""
    parts: list[tuple[str, Callable[[], Iterable[str]]]] = [
        ("path", lambda: [request.path_info]),
        ("query string", lambda: _items(request.GET.lists())),
        ("cookies", lambda: _flat(request.COOKIES.items())),
    ]
    if request.content_type == "application/x-www-form-urlencoded":
        parts.append(("form", lambda: _items(request.POST.lists())))
    for where, values in parts:
        problem = text_problem(where, values())
        if problem:
            return problem
    return None


def _items(lists: Iterable[tuple[str, list[str]]]) -> Iterable[str]:
    for key, values in lists:
        yield key
        yield from values


def _flat(pairs: Iterable[tuple[str, str]]) -> Iterable[str]:
    for key, value in pairs:
        yield key
        yield value


def json_problem(value: Any, *, max_depth: int) -> str | None:
    """Why a parsed JSON value is refused: too deep, NUL in a text, a number out of range.

    Walks the value with an explicit stack (no recursion, one visit per item)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                return f"the JSON body is nested deeper than {max_depth} levels"
            if isinstance(item, dict):
                for key, child in item.items():
                    if _has_nul(key):
                        return "a JSON key contains a NUL character (\\u0000); no field takes one"
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            if _has_nul(item):
                return "a JSON string contains a NUL character (\\u0000); no field takes one"
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int):
            if not DB_INT_MIN <= item <= DB_INT_MAX:
                return (
                    f"the JSON number {_short(item)} is out of range: whole numbers must lie "
                    f"between {DB_INT_MIN} and {DB_INT_MAX}"
                )
        elif isinstance(item, float) and not math.isfinite(item):
            return "a JSON number is too large to be finite"
    return None


def _short(number: int) -> str:
    text = str(number)
    return text if len(text) <= 24 else f"{text[:10]}...({len(text)} digits)"


class BoundedJSONParser(JSONParser):
    """DRF's strict JSON parser, refusing what `json_problem` finds (a 400 with the reason)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        max_depth = settings.MAX_JSON_DEPTH
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:  # the C parser's own guard, far beyond max_depth
            raise ParseError(f"the JSON body is nested deeper than {max_depth} levels") from None
        problem = json_problem(data, max_depth=max_depth)
        if problem:
            raise ParseError(problem)
        return data


class InputBoundsMiddleware:
    """Refuses a NUL in the path, the query string, a cookie or a url-encoded form (400).

    Goes after RequestSizeLimitMiddleware (the form it reads is small by then) and before
    sessions, whose lookup would send a cookie's NUL to the database."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        problem = request_problem(request)
        if problem is None:
            return self.get_response(request)
        if request.path_info.startswith("/api/"):
            return JsonResponse({"detail": problem}, status=400)
        return HttpResponse(problem + "\n", status=400, content_type="text/plain")


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """Limit/offset pages of at most `settings.API_MAX_PAGE_SIZE` items; a limit or offset
    out of bounds (or not a whole number) is a 400 that says the bounds."""

    def get_limit(self, request: Request) -> int | None:
        most = settings.API_MAX_PAGE_SIZE
        self.max_limit = most
        raw = request.query_params.get(self.limit_query_param)
        if raw is None or raw == "":
            return self.default_limit
        value = _whole(raw)
        if value is None or not 1 <= value <= most:
            raise ValidationError(
                {self.limit_query_param: [f"limit must be a whole number from 1 to {most}"]}
            )
        return value

    def get_offset(self, request: Request) -> int:
        raw = request.query_params.get(self.offset_query_param)
        if raw is None or raw == "":
            return 0
        value = _whole(raw)
        if value is None or not 0 <= value <= DB_INT_MAX:
            raise ValidationError(
                {self.offset_query_param: [f"offset must be a whole number from 0 to {DB_INT_MAX}"]}
            )
        return value


def _whole(text: str) -> int | None:
    """A short decimal whole number, else None (``int`` would take "1_000" and 4000 digits)."""
    stripped = text.strip()
    digits = stripped.removeprefix("-")
    if not digits.isascii() or not digits.isdigit() or len(digits) > 19:
        return None
    return int(stripped)


__all__ = [
    "DB_INT_MAX",
    "DB_INT_MIN",
    "BoundedJSONParser",
    "BoundedLimitOffsetPagination",
    "InputBoundsMiddleware",
    "json_problem",
    "request_problem",
    "text_problem",
]
