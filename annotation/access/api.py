"""REST API of access: API tokens for scripts (`annotation.access.tokens`).

`POST /api/token/` trades a username and password for a token, throttled like the login page
(an attempt made too early gets 429 with Retry-After). A logged-in browser session may also
make one (`POST /api/tokens/`); a token may list and revoke tokens but never make one, so a
stolen token cannot outlive its expiry. Sent as `Authorization: Token <token>`.
"""

from __future__ import annotations

from django.contrib.auth import authenticate
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import PermissionDenied, Throttled, ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access import tokens
from annotation.access.login_throttle import locked_message
from annotation.models import ApiTokenDevice

UNNAMED = "unnamed"


class TokenOutputSerializer(serializers.ModelSerializer):
    """A token as its owner sees it: never the token itself, which is shown once."""

    created = serializers.DateTimeField(source="token.created")
    expiry = serializers.DateTimeField(source="token.expiry")

    class Meta:
        model = ApiTokenDevice
        fields = ["id", "name", "created", "expiry", "last_used_at"]
        read_only_fields = fields


class TokenGrantOutputSerializer(TokenOutputSerializer):
    token = serializers.SerializerMethodField()

    class Meta(TokenOutputSerializer.Meta):
        fields = [*TokenOutputSerializer.Meta.fields, "token"]
        read_only_fields = fields

    def get_token(self, device: ApiTokenDevice) -> str:
        return str(self.context["token"])


def _grant(device: ApiTokenDevice, token: str) -> dict[str, object]:
    return dict(TokenGrantOutputSerializer(device, context={"token": token}).data)


class TokenObtainInputSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False)
    name = serializers.CharField(
        max_length=tokens.NAME_MAX, required=False,
        help_text="The device or script the token is for; a new token under a name you use "
        "already replaces the old one.",
    )  # fmt: skip


class TokenObtainApi(APIView):
    """Username + password in, a token out; throttled like the login page."""

    # The credentials are in the body; the default authentication stays so that a request
    # carrying a browser session needs its CSRF token here as everywhere.
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="token_obtain",
        summary="A new API token for a username and password (shown once; it expires)",
        request=TokenObtainInputSerializer,
        responses={200: TokenGrantOutputSerializer, 400: None, 429: None},
    )
    def post(self, request: Request) -> Response:
        data = TokenObtainInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = authenticate(
            request=request,
            username=data.validated_data["username"],
            password=data.validated_data["password"],
        )
        if user is None:
            locked_s = getattr(request, "mersv_login_locked_s", None)
            if locked_s:
                raise Throttled(wait=locked_s, detail=locked_message(locked_s))
            raise ValidationError({"non_field_errors": ["wrong username or password"]})
        name = data.validated_data.get("name")
        device, token = tokens.token_create(
            user=user,
            name=name or UNNAMED,
            request=request,
            granted_for="password",
            replace=name is not None,
        )
        return Response(_grant(device, token))


token_obtain = TokenObtainApi.as_view()


class TokenCreateInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=tokens.NAME_MAX)


class TokenListCreateApi(APIView):
    """The caller's own live tokens; a new one for a browser session."""

    @extend_schema(
        operation_id="tokens_list",
        summary="Your live API tokens: name, created, expiry, last use",
        responses=TokenOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        devices = tokens.token_list(user=request.user)  # type: ignore[arg-type]
        return Response(TokenOutputSerializer(devices, many=True).data)

    @extend_schema(
        operation_id="tokens_create",
        summary="A new named API token, for a logged-in browser session (not for a token)",
        request=TokenCreateInputSerializer,
        responses={201: TokenGrantOutputSerializer},
    )
    def post(self, request: Request) -> Response:
        if not isinstance(request.successful_authenticator, SessionAuthentication):
            raise PermissionDenied(
                "a new token needs a password (POST /api/token/) or a logged-in browser "
                "session; a token cannot make another"
            )
        data = TokenCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        device, token = tokens.token_create(
            user=request.user,  # type: ignore[arg-type]
            name=data.validated_data["name"],
            request=request,
            granted_for="session",
        )
        return Response(_grant(device, token), status=status.HTTP_201_CREATED)


class TokenRevokeApi(APIView):
    @extend_schema(
        operation_id="token_revoke",
        summary="Revoke one of your API tokens",
        responses={204: None, 404: OpenApiResponse(description="not one of your tokens")},
    )
    def delete(self, request: Request, pk: int) -> Response:
        tokens.token_revoke(user=request.user, token_id=pk, request=request)  # type: ignore[arg-type]
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenRevokeAllApi(APIView):
    @extend_schema(
        operation_id="tokens_revoke_all",
        summary="Revoke every API token of your account",
        request=None,
        responses={200: OpenApiResponse(description='{"revoked": n}')},
    )
    def post(self, request: Request) -> Response:
        revoked = tokens.tokens_revoke_all(
            user=request.user,  # type: ignore[arg-type]
            request=request,
            reason="owner",
        )
        return Response({"revoked": revoked})
