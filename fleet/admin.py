from django.contrib import admin

from .models import FleetBatch, FleetRequest, FleetRequestItem


class FleetBatchInline(admin.StackedInline):
    """The request's one fleet call, when its blueprint is EC2Fleet/SpotFleet (never its key)."""

    model = FleetBatch
    fields = [
        "provider_api", "status", "fleet_id", "launched", "extra_machine_ids", "reasons", "attempts", "rq_job_id",
        "created_at", "assigned_at", "key_erased_at",
    ]  # fmt: skip
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class FleetRequestItemInline(admin.TabularInline):
    model = FleetRequestItem
    fields = ["position", "instance", "operation", "note", "machine_id", "adopted_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(FleetRequest)
class FleetRequestAdmin(admin.ModelAdmin):
    """Read-only: a request is a record of what was asked; its instances are acted on from theirs."""

    list_display = ["request_id", "tenant", "kind", "count", "blueprint_name", "requested_by", "created_at"]
    list_filter = ["kind"]
    search_fields = ["request_id", "tenant__id", "requested_by"]
    list_select_related = ["tenant"]
    date_hierarchy = "created_at"
    inlines = [FleetBatchInline, FleetRequestItemInline]
    readonly_fields = [
        "request_id", "tenant", "kind", "blueprint_name", "plan_id", "region", "instance_id_prefix", "labels", "count", "returns",
        "requested_by", "requested_by_type", "created_at",
    ]  # fmt: skip

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
