"""Admin for support staff: instances with their operations and log, and actions that go through
the same services as the API (each audited as a staff action)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils.html import format_html_join

from orchestrio.admin import AuditedModelAdmin, OwnerEmailSearchMixin, staff_actor
from orchestrio.errors import DomainError

from . import services
from .choices import OperationKind
from .models import Blueprint, Instance, InstancePlan, LogLine, Operation, Region
from .providers.sandbox import sandbox_report


@admin.register(InstancePlan)
class InstancePlanAdmin(AuditedModelAdmin):
    list_display = ["id", "name", "instance_type", "vcpus", "memory_mib", "price_per_hour", "supports_hibernation", "available"]
    list_filter = ["available", "supports_hibernation"]
    search_fields = ["id", "name", "instance_type"]


@admin.register(Region)
class RegionAdmin(AuditedModelAdmin):
    list_display = ["id", "name", "provider", "provider_region", "enabled"]
    list_filter = ["provider", "enabled"]
    search_fields = ["id", "name", "provider_region"]


@admin.register(Blueprint)
class BlueprintAdmin(AuditedModelAdmin):
    list_display = ["name", "tenant", "provider_api", "image_id", "instance_type", "health_path", "deleted_at"]
    list_filter = ["provider_api", ("tenant", admin.EmptyFieldListFilter), ("deleted_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "tenant__id", "image_id"]


class OperationInline(admin.TabularInline):
    model = Operation
    extra = 0
    can_delete = False
    fields = ["id", "kind", "reason", "status", "attempts", "requested_by", "created_at", "started_at", "finished_at", "error_code", "error_message"]
    readonly_fields = fields
    ordering = ["-created_at"]
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Instance)
class InstanceAdmin(OwnerEmailSearchMixin, AuditedModelAdmin):
    list_display = ["instance_id", "tenant", "state", "health_status", "provider", "region", "plan", "ip_address", "created_at"]
    list_filter = ["state", "provider", "region", "health_status", "managed_by", "tenant", ("destroyed_at", admin.EmptyFieldListFilter)]
    search_fields = ["instance_id", "tenant__id", "ip_address", "provider_instance_id"]
    list_select_related = ["tenant", "region", "plan"]
    date_hierarchy = "created_at"
    inlines = [OperationInline]
    actions = ["run_health_check", "retry_failed_operation", "suspend", "force_destroy"]
    readonly_fields = [
        "instance_id", "tenant", "managed_by", "blueprint", "plan", "region", "provider", "instance_type", "provider_instance_id",
        "ip_address", "port", "socket_path", "state", "state_changed_at", "health_status", "health_failures", "last_health_check",
        "error_message", "sandbox", "provider_data", "idempotency_key", "created_at", "updated_at", "destroyed_at", "recent_log",
    ]  # fmt: skip
    fields = [*readonly_fields[:-1], "labels", "config", "recent_log"]

    def has_add_permission(self, request):
        return False  # instances are created through the API or the console (the service enforces limits)

    def changelist_view(self, request, extra_context=None):
        report = sandbox_report()
        if report is not None and not report["enabled"]:
            messages.warning(request, f"The local provider's sandbox is OFF: {report['reason']}. Local instances run only the bundled agent; tenant commands are refused.")
        return super().changelist_view(request, extra_context)

    @admin.display(description="Sandbox")
    def sandbox(self, obj):
        if obj.provider != "local":
            return "— (a machine of its own)"
        data = obj.provider_data or {}
        mode = data.get("sandbox") or "unknown"
        if mode == "off":
            return f"off: bundled agent only (uid {data.get('uid') or 'of the control plane'})"
        return f"bubblewrap ({mode}), uid/gid {data.get('uid')}"

    @admin.display(description="Recent lifecycle log (last 50 lines)")
    def recent_log(self, obj):
        lines = list(LogLine.objects.filter(instance=obj).order_by("-seq")[:50])[::-1]
        if not lines:
            return "—"
        return format_html_join(
            "\n", "<div><code>#{} {} [{}] {}</code> {}</div>",
            ((line.seq, line.created_at.strftime("%H:%M:%S"), line.stage, line.level, line.message) for line in lines),
        )  # fmt: skip

    def _each(self, request, queryset, label, fn):
        done = 0
        for instance in queryset:
            try:
                fn(instance)
                done += 1
            except DomainError as exc:
                self.message_user(request, f"Instance {instance.instance_id}: {exc.detail}", messages.ERROR)  # "Instance": the admin capitalises the first letter
        if done:
            self.message_user(request, f"{label}: {done} instance(s).", messages.SUCCESS)

    @admin.action(description="Run a health check now")
    def run_health_check(self, request, queryset):
        def check(instance):
            result = services.instance_health_check(instance=instance, audit_actor=staff_actor(request))
            self.message_user(request, f"Instance {instance.instance_id}: {'healthy' if result['healthy'] else 'unhealthy: ' + (result['error'] or '')}")

        self._each(request, queryset, "Checked", check)

    @admin.action(description="Retry the last failed operation")
    def retry_failed_operation(self, request, queryset):
        def retry(instance):
            failed = instance.operations.filter(status="failed").order_by("-created_at").first()
            if failed is None:
                raise DomainError("has no failed operation")
            services.instance_retry_operation(operation=failed, actor=staff_actor(request))

        self._each(request, queryset, "Retried", retry)

    @admin.action(description="Suspend (running instances)")
    def suspend(self, request, queryset):
        self._each(request, queryset, "Suspending", lambda i: services.operation_accept(instance=i, kind=OperationKind.SUSPEND, actor=staff_actor(request)))

    @admin.action(description="Force destroy (supersedes a running operation)")
    def force_destroy(self, request, queryset):
        self._each(request, queryset, "Destroying", lambda i: services.operation_accept(instance=i, kind=OperationKind.DESTROY, actor=staff_actor(request), force=True))


@admin.register(Operation)
class OperationAdmin(OwnerEmailSearchMixin, admin.ModelAdmin):
    list_display = ["id", "instance", "tenant", "kind", "status", "attempts", "requested_by", "created_at", "finished_at", "error_code"]
    list_filter = ["kind", "status", "error_code"]
    search_fields = ["instance__instance_id", "tenant__id", "requested_by", "rq_job_id"]
    readonly_fields = [f.name for f in Operation._meta.fields]
    list_select_related = ["instance", "tenant"]
    actions = ["retry", "requeue"]

    def _each(self, request, queryset, label, fn):
        done = 0
        for operation in queryset.select_related("instance"):
            try:
                fn(operation)
                done += 1
            except DomainError as exc:
                self.message_user(request, f"Operation {operation.pk} ({operation.kind} of {operation.instance.instance_id}): {exc.detail}", messages.ERROR)
        if done:
            self.message_user(request, f"{label}: {done} operation(s).", messages.SUCCESS)

    @admin.action(description="Retry (failed operations, with their parameters)")
    def retry(self, request, queryset):
        self._each(request, queryset, "Retried", lambda op: services.instance_retry_operation(operation=op, actor=staff_actor(request)))

    @admin.action(description="Queue again (an unfinished operation whose job was lost)")
    def requeue(self, request, queryset):
        def requeue(operation):
            if operation.is_finished:
                raise DomainError(f"it has already {operation.status}; only a queued or running operation can be queued again")
            services.operation_requeue(operation=operation, actor=staff_actor(request), reason=f"queued again by support ({request.user.get_username()})")

        self._each(request, queryset, "Queued again", requeue)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
