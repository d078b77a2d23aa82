from django.contrib import admin, messages

from orchestrio.admin import staff_actor
from orchestrio.errors import DomainError

from . import services
from .models import Task


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ["task_id", "instance", "tenant", "operation_code", "status", "exit_code", "requested_by", "created_at", "finished_at"]
    list_filter = ["status", "operation_code", "tenant"]
    search_fields = ["task_id", "instance__instance_id", "tenant__id", "operation_code", "script_path", "provider_command_id"]
    list_select_related = ["instance", "tenant"]
    date_hierarchy = "created_at"
    actions = ["cancel_tasks"]
    # Argument values may be secrets: the admin shows their names only.
    exclude = ["script_args"]
    readonly_fields = [
        "task_id", "instance", "tenant", "operation_code", "script_path", "argument_names", "timeout_seconds",
        "idempotency_key", "status", "exit_code", "stdout", "stderr", "error_message", "provider_command_id",
        "rq_job_id", "attempts", "requested_by", "requested_by_type", "cancel_requested_at", "cancel_sent_at", "next_poll_at", "poll_job_id",
        "poll_errors", "created_at", "started_at", "finished_at",
    ]  # fmt: skip

    @admin.display(description="Arguments")
    def argument_names(self, task):
        return ", ".join(sorted(task.script_args)) or "—"

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Cancel selected tasks")
    def cancel_tasks(self, request, queryset):
        for task in queryset:
            try:
                services.task_cancel(task=task, actor=staff_actor(request))
                self.message_user(request, f"Cancelling {task.task_id}.", messages.SUCCESS)
            except DomainError as exc:
                self.message_user(request, f"{task.task_id}: {exc.detail}", messages.ERROR)
