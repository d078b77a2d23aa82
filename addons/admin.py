from django.contrib import admin

from orchestrio.admin import ViewOnlyAdmin

from .models import AddOn, AddOnBackup, AddOnOperation


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
    fields = ["addon_id", "tenant", "instance", "engine", "version", "plan", "status", "provider", "host", "port", "username", "database", "provider_data", "error_message", "credentials_rotated_at", "auto_backup_since", "created_at", "updated_at", "deleted_at"]
    readonly_fields = fields
    inlines = [AddOnOperationInline]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AddOnBackup)
class AddOnBackupAdmin(ViewOnlyAdmin):
    """Read-only for support staff: where a tenant's backup is, its size and checksum, why it
    failed. Its bytes are a tenant's data: the admin offers no download (the tenant's audited
    API does)."""

    list_display = ["backup_id", "addon", "tenant", "kind", "status", "storage", "size_bytes", "created_at", "expires_at", "deleted_at"]
    list_filter = ["status", "kind", "storage"]
    search_fields = ["backup_id", "addon__addon_id", "tenant__id", "addon__instance__instance_id"]
    list_select_related = ["addon", "tenant"]
    fields = ["backup_id", "addon", "tenant", "kind", "status", "storage", "location", "stored", "size_bytes", "sha256", "error_message", "requested_by", "created_at", "completed_at", "expires_at", "deleted_at"]
    readonly_fields = fields
