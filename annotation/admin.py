from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse

from annotation.access.accounts import username_problem
from annotation.access.audit import audit_actor, role_change_record
from annotation.access.login_throttle import login_unlock
from annotation.models import (
    AuditEvent,
    CannotJudge,
    Clip,
    Patient,
    Rating,
    RatingChange,
    Video,
    VideoAttempt,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows only the platform writes: shown, never added, changed or deleted here."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Patient)
class PatientAdmin(admin.ModelAdmin):
    list_display = ("code", "created_at")
    search_fields = ("code",)


@admin.register(Video)
class VideoAdmin(admin.ModelAdmin):
    list_display = ("id", "patient", "original_name", "status", "width", "height", "created_at")
    list_filter = ("status",)
    search_fields = ("original_name", "patient__code", "sha256")
    readonly_fields = ("sha256", "fps", "width", "height", "frame_count", "error", "preview")


@admin.register(VideoAttempt)
class VideoAttemptAdmin(ReadOnlyAdmin):
    """Read-only: an attempt is the video's ingestion history, written only by the pipeline."""

    list_display = ("video", "number", "status", "requested_by", "requested_at", "finished_at")
    list_filter = ("status",)
    search_fields = ("video__original_name", "video__patient__code")


@admin.register(Clip)
class ClipAdmin(admin.ModelAdmin):
    list_display = ("external_id", "video", "votes_total", "vcl", "vsl", "retired_at")
    search_fields = ("external_id",)
    # Vote counts follow the ratings; editing them by hand would break the distribution.
    readonly_fields = ("votes_a", "votes_b", "votes_c", "votes_d", "votes_e", "votes_total")


class RatingChangeInline(admin.TabularInline):
    model = RatingChange
    extra = 0
    can_delete = False
    readonly_fields = ("grade", "previous_grade", "changed_at")


@admin.register(Rating)
class RatingAdmin(admin.ModelAdmin):
    list_display = ("clip", "rater", "grade", "time_spent_ms", "created_at", "updated_at")
    list_filter = ("grade",)
    search_fields = ("clip__external_id", "rater__username")
    inlines = [RatingChangeInline]
    # Grades change only through the grading service, which keeps the counts and history.
    readonly_fields = ("clip", "rater", "grade", "time_spent_ms", "telemetry")

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(CannotJudge)
class CannotJudgeAdmin(admin.ModelAdmin):
    list_display = ("clip", "rater", "reason", "note", "created_at")
    list_filter = ("reason",)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """Read-only: the log is append-only, nobody adds, changes or deletes an event here."""

    list_display = ("created_at", "username", "action", "object_type", "object_id", "ip")
    list_filter = ("action",)
    search_fields = ("username", "object_id")


User = get_user_model()
admin.site.unregister(User)


def _clean_username(form: AdminUserCreationForm | UserChangeForm) -> str:
    username = str(form.cleaned_data.get("username", ""))
    problem = username_problem(username)
    if problem:
        raise ValidationError(problem)
    return username


class PseudonymousUserCreationForm(AdminUserCreationForm):
    """The admin's "add user" form, with the user-name rule of `annotation.access.accounts`."""

    def clean_username(self) -> str:
        _clean_username(self)
        return str(super().clean_username())


class PseudonymousUserChangeForm(UserChangeForm):
    """The admin's user form: a renamed user follows the same user-name rule."""

    def clean_username(self) -> str:
        return _clean_username(self)


@admin.register(User)
class AuditedUserAdmin(UserAdmin):
    """Django's user admin, with the admin who changes a role named in the audit log, user
    names held to the pseudonymous-id rule, and an action that clears the selected accounts'
    failed-login delays (audited)."""

    add_form = PseudonymousUserCreationForm
    form = PseudonymousUserChangeForm
    actions = ["login_unlock_action"]

    @admin.action(description="Clear failed-login delays (let them log in again at once)")
    def login_unlock_action(self, request: HttpRequest, queryset: Any) -> None:
        for user in queryset:
            login_unlock(
                username=user.get_username(),
                via="admin",
                actor=request.user.get_username(),
                by=request.user,  # type: ignore[arg-type]  # the admin site's user is logged in
                request=request,
            )
        self.message_user(
            request, f"Failed-login delays cleared for {queryset.count()} account(s)."
        )

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # Group changes are saved by the form's save_m2m; the m2m signal reads the actor here.
        with audit_actor(via="admin", user=request.user, request=request):
            return super().changeform_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        # A superuser is an admin whatever its groups: granting or taking it is a role change.
        flags = [f for f in ("is_superuser", "is_staff") if f in form.changed_data]
        if change and flags:
            role_change_record(
                target=obj, detail={"change": "flags", **{f: getattr(obj, f) for f in flags}}
            )
