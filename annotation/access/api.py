"""REST API of access: the API token for scripts, throttled like the login page."""

from __future__ import annotations

from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import Throttled, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from annotation.access.login_throttle import locked_message


class TokenObtainApi(ObtainAuthToken):
    """POST username + password, get the API token for scripts (Authorization: Token ...).
    Failed attempts are throttled like the login page's; a locked account gets 429."""

    def post(self, request: Request, *args: object, **kwargs: object) -> Response:
        try:
            return super().post(request, *args, **kwargs)
        except ValidationError:
            locked_s = getattr(request, "mersv_login_locked_s", None)
            if locked_s:
                raise Throttled(wait=locked_s, detail=locked_message(locked_s)) from None
            raise


token_obtain = TokenObtainApi.as_view()
