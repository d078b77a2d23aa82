from django.contrib import admin

from .models import Function, FunctionVersion


class FunctionVersionInline(admin.TabularInline):
    model = FunctionVersion
    extra = 0
    can_delete = False
    fields = ["number", "runtime", "status", "error_message", "start_ms", "created_by", "created_at", "finished_at"]
    readonly_fields = fields


@admin.register(Function)
class FunctionAdmin(admin.ModelAdmin):
    """Read-only for support staff: changes go through the API's audited services. Never the
    env vars (encrypted or not) nor the API key's hash."""

    list_display = ["slug", "function_id", "tenant", "runtime", "auth_mode", "current_version", "invocations", "created_at"]
    list_filter = ["runtime", "auth_mode"]
    search_fields = ["slug", "function_id", "tenant__id"]
    fields = [
        "function_id",
        "tenant",
        "slug",
        "runtime",
        "auth_mode",
        "api_key_prefix",
        "idle_timeout_seconds",
        "current_version",
        "invocations",
        "errors",
        "cold_starts",
        "last_invoked_at",
        "created_by",
        "created_at",
        "updated_at",
    ]
    readonly_fields = fields
    inlines = [FunctionVersionInline]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
