"""Admin for support staff: deployments and their revisions, read-only (never the secrets)."""

from __future__ import annotations

from django.contrib import admin

from .models import Deployment, DeploymentRevision


class RevisionInline(admin.TabularInline):
    model = DeploymentRevision
    extra = 0
    can_delete = False
    # Never the encrypted secrets: their names only.
    fields = ["number", "reason", "status", "healthy", "secret_keys", "config", "created_by", "created_at", "applied_at", "error"]
    readonly_fields = fields
    ordering = ["-number"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ["name", "tenant", "environment", "status", "current_revision", "instance", "updated_at", "deleted_at"]
    list_filter = ["environment", "status", ("deleted_at", admin.EmptyFieldListFilter)]
    search_fields = ["id", "name", "tenant__id", "instance__instance_id"]
    list_select_related = ["tenant", "instance"]
    readonly_fields = [f.name for f in Deployment._meta.fields]
    inlines = [RevisionInline]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
