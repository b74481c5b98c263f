from __future__ import annotations

from django.contrib import admin

from annotation.models import (
    AuditEvent,
    CannotJudge,
    Clip,
    Patient,
    Rating,
    RatingChange,
    Video,
)


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

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False


@admin.register(CannotJudge)
class CannotJudgeAdmin(admin.ModelAdmin):
    list_display = ("clip", "rater", "reason", "created_at")
    list_filter = ("reason",)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the log is append-only, nobody adds, changes or deletes an event here."""

    list_display = ("created_at", "username", "action", "object_type", "object_id", "ip")
    list_filter = ("action",)
    search_fields = ("username", "object_id")

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False
