"""How errors become API answers, in one place (settings: REST_FRAMEWORK["EXCEPTION_HANDLER"]).

A `ServiceError` (annotation.errors) answers its class's status with its class's body: 400
{"detail": ...}, a `ConflictError` 409 (an answer given already adds `rating_id`). Views call
services and let these errors rise; none catches them itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

from annotation.access.audit import permission_denied_record
from annotation.errors import ServiceError


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """The service-error hierarchy mapped to 400/409; everything else goes to DRF's handler,
    and every 403 the API answers is recorded in the audit log."""
    if isinstance(exc, ServiceError):
        # DRF rolls back an atomic request on every error it maps; a refusal that recorded
        # itself (rolls_back False) keeps its audit event.
        if exc.rolls_back:
            set_rollback()
        return Response(exc.response_body(), status=exc.http_status)
    response = exception_handler(exc, context)
    request = context.get("request")
    if response is not None and response.status_code == 403 and request is not None:
        permission_denied_record(request._request, str(getattr(exc, "detail", exc)))
    return response


def field_validator(check: Callable[[Any], Any]) -> Callable[[Any], None]:
    """A DRF field validator from a service's check (one set of rules): its ServiceError
    becomes the field's error, as a serializer's own validation would."""

    def validate(value: object) -> None:  # DRF ignores what a validator returns
        try:
            check(value)
        except ServiceError as exc:
            raise serializers.ValidationError(str(exc)) from None

    return validate
