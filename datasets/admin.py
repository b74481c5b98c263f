"""Dataset versions in the admin: viewable, never editable once frozen."""

from __future__ import annotations

from django.contrib import admin

from datasets.models import DatasetClip, DatasetVersion


class DatasetClipInline(admin.TabularInline):
    model = DatasetClip
    extra = 0
    can_delete = False
    fields = ("clip_external_id", "fold", "n", "mode", "mean", "std")
    readonly_fields = fields
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(DatasetVersion)
class DatasetVersionAdmin(admin.ModelAdmin):
    list_display = ("name", "status", "n_clips", "n_ratings", "content_hash", "created_at")
    list_filter = ("status",)
    readonly_fields = [f.name for f in DatasetVersion._meta.fields]
    inlines = [DatasetClipInline]
    actions = None  # no bulk delete of versions

    def has_add_permission(self, request) -> bool:
        return False  # versions are built by curators through the page, API or command

    def has_change_permission(self, request, obj=None) -> bool:
        return obj is None or not obj.frozen

    def has_delete_permission(self, request, obj=None) -> bool:
        return obj is not None and not obj.frozen
