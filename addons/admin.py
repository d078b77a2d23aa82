from django.contrib import admin

from .models import AddOn, AddOnOperation


class AddOnOperationInline(admin.TabularInline):
    model = AddOnOperation
    extra = 0
    can_delete = False
    fields = ["kind", "status", "requested_by", "error_message", "created_at", "started_at", "next_poll_at", "finished_at"]
    readonly_fields = fields


@admin.register(AddOn)
class AddOnAdmin(admin.ModelAdmin):
    """Read-only for support staff: changes go through the API's audited services."""

    list_display = ["addon_id", "tenant", "instance", "engine", "version", "plan", "status", "port", "created_at", "deleted_at"]
    list_filter = ["engine", "status", "provider"]
    search_fields = ["addon_id", "tenant__id", "instance__instance_id"]
    # Never the encrypted passwords either: nothing of a secret is on the page.
    fields = ["addon_id", "tenant", "instance", "engine", "version", "plan", "status", "provider", "host", "port", "username", "database", "provider_data", "error_message", "credentials_rotated_at", "created_at", "updated_at", "deleted_at"]
    readonly_fields = fields
    inlines = [AddOnOperationInline]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
