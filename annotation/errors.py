"""The service errors: what a user caused, and what HTTP answer it means.

Every app's user-facing errors subclass `ServiceError`; each class says its status, its body
and whether the request's transaction is rolled back. `annotation.api_errors` turns them into
the API's answers (one handler, no try/except in the views); pages show the message through
`frontend.refusals`. Nothing here imports Django, so any module may raise these.
"""

from __future__ import annotations


class ServiceError(Exception):
    """An error the user caused; the message says what was wrong and how to fix it.

    The API answers 400 {"detail": message}.
    """

    http_status = 400
    # False where the service records the refusal itself (an audit event) and that record must
    # commit: the handler then leaves the request's transaction as it is.
    rolls_back = True

    def response_body(self) -> dict[str, object]:
        return {"detail": str(self)}


class ConflictError(ServiceError):
    """The request clashes with what is stored (an answer given already, a clip that left
    the queue): 409, with the fields of `response_body`."""

    http_status = 409
