"""How a page shows a refused service call: the one place pages catch a ServiceError.

    with refusal_shown(request, form=form) as refused:
        version = services.dataset_version_create(...)
    if not refused:
        return redirect(...)

The message goes on the form (a non-field error) when one is given, else into the Django
messages shown on the next page. The API does the same through `annotation.api_errors`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django import forms
from django.contrib import messages
from django.http import HttpRequest

from annotation.errors import ServiceError


@dataclass
class Refusal:
    """What the block was refused with; false while nothing was refused."""

    error: Exception | None = None

    def __bool__(self) -> bool:
        return self.error is not None


@contextmanager
def refusal_shown(
    request: HttpRequest,
    *,
    form: forms.Form | None = None,
    also: tuple[type[Exception], ...] = (),
) -> Iterator[Refusal]:
    """Run the block; a ServiceError (or one of `also`, e.g. the ValueError of a number
    parsed from a POST) is shown to the user instead of raised. The view reads the yielded
    `Refusal` to decide where to go next."""
    refusal = Refusal()
    try:
        yield refusal
    except (ServiceError, *also) as exc:  # type: ignore[misc]  # mypy misreads a starred tuple
        refusal.error = exc
        if form is not None:
            form.add_error(None, str(exc))
        else:
            messages.error(request, str(exc))
