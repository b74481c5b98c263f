"""Every account's own pages: its API tokens and its password.

The tokens page lists the account's live tokens (name, created, expiry, last use) with a
button to revoke each or all, and makes a new named one, shown once on the page that answers
the form (never stored in clear, never put in a message or the session). The password page is
Django's PasswordChangeView: the old password goes through the login throttle, the change is
audited, and it ends the account's API tokens (`annotation.access.tokens`) and its other
sessions (Django checks each session against the password's hash; this one is kept).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import authenticate
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.contrib.auth.views import PasswordChangeView
from django.forms import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.views.decorators.http import require_http_methods

from annotation.access import tokens
from annotation.access.audit import audit_record
from annotation.access.login_throttle import locked_message
from annotation.access.roles import signed_in
from frontend.refusals import refusal_shown


@require_http_methods(["GET", "POST"])
@login_required
def account_tokens(request: HttpRequest) -> HttpResponse:
    """POST action: "create" (name), "revoke" (id) or "revoke-all"."""
    user = signed_in(request)
    new_token = ""
    if request.method == "POST":
        action = request.POST.get("action", "")
        with refusal_shown(request, also=(ValueError,)) as refused:
            if action == "create":
                _device, new_token = tokens.token_create(
                    user=user, name=request.POST.get("name", ""), request=request,
                    granted_for="session",
                )  # fmt: skip
            elif action == "revoke":
                tokens.token_revoke(
                    user=user, token_id=int(request.POST.get("id", "")), request=request
                )
                messages.success(request, "The token is revoked.")
            elif action == "revoke-all":
                n = tokens.tokens_revoke_all(user=user, request=request, reason="owner")
                messages.success(request, f"{n} token(s) revoked.")
            else:
                messages.error(request, f"unknown action {action!r}")
        if not new_token and not refused:
            return redirect("account-tokens")
    context = {
        "devices": tokens.token_list(user=user),
        "new_token": new_token,
        "ttl_hours": settings.TOKEN_TTL_HOURS,
    }
    return render(request, "frontend/account_tokens.html", context)


class ThrottledPasswordChangeForm(PasswordChangeForm):
    """The old password is checked through the login throttle, like a login."""

    def __init__(self, user: Any, *args: Any, request: HttpRequest, **kwargs: Any) -> None:
        self.request = request
        super().__init__(user, *args, **kwargs)

    def clean_old_password(self) -> str:
        old = str(self.cleaned_data.get("old_password", ""))
        checked = authenticate(self.request, username=self.user.get_username(), password=old)
        if checked is None:
            locked_s = getattr(self.request, "mersv_login_locked_s", None)
            if locked_s:
                raise ValidationError(locked_message(locked_s), code="locked")
            raise ValidationError(
                self.error_messages["password_incorrect"], code="password_incorrect"
            )
        return old


class AccountPasswordChange(PasswordChangeView):
    form_class = ThrottledPasswordChangeForm
    template_name = "frontend/password_change.html"
    success_url = reverse_lazy("account-tokens")

    def get_form_kwargs(self) -> dict[str, Any]:
        return {**super().get_form_kwargs(), "request": self.request}

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)  # saves; the token receivers revoke the tokens
        audit_record(action="password_change", user=form.user, request=self.request)
        messages.success(
            self.request,
            "Your password is changed. Your API tokens are revoked and your other sessions "
            "are logged out.",
        )
        return response


password_change = AccountPasswordChange.as_view()
