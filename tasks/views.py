"""Console pages for tasks: the Tasks tab of an instance, and a task's live detail."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from instances.selectors import live_instances
from orchestrio.forms import errors_to_form
from orchestrio.errors import DomainError
from orchestrio.views import console_view, domain_error_message

from . import services
from .forms import TaskDispatchForm
from .models import Task

SAMPLE_SCRIPTS = ["/opt/orchestrio/scripts/backup.sh", "/opt/orchestrio/scripts/echo-args.sh", "/opt/orchestrio/scripts/sleep.sh", "/opt/orchestrio/scripts/fail.sh"]


@require_http_methods(["GET", "POST"])
@console_view
def instance_tasks(request, instance_id: str):
    instance = live_instances(tenant=request.principal.tenant).filter(instance_id=instance_id).select_related("blueprint").first()
    if instance is None:
        raise Http404(f"no instance {instance_id}")
    form = TaskDispatchForm(request.POST or None, task_roots=instance.blueprint.task_roots)
    if request.method == "POST" and form.is_valid():
        try:
            task, created = services.task_dispatch(instance=instance, actor=request.principal.actor, **form.cleaned_data)
        except DomainError as exc:
            errors_to_form(form, exc)
        else:
            if not created:
                messages.info(request, "That idempotency key was used before: this is the task it started.")
            return redirect("tasks:detail", task_id=task.task_id)
    return render(request, "tasks/instance_tasks.html", {"instance": instance, "form": form, "page": _task_page(request, instance), "samples": SAMPLE_SCRIPTS})


def _task_page(request, instance):
    return Paginator(Task.objects.filter(instance=instance), 25).get_page(request.GET.get("page"))


@require_GET
@console_view
def instance_tasks_live(request, instance_id: str):
    """The Tasks tab's table alone, for static/console/live.js (the template the tab includes)."""
    instance = live_instances(tenant=request.principal.tenant).filter(instance_id=instance_id).first()
    if instance is None:
        raise Http404(f"no instance {instance_id}")
    return render(request, "tasks/_task_table.html", {"instance": instance, "page": _task_page(request, instance)})


def _task(request, task_id: str) -> Task:
    task = Task.objects.filter(tenant=request.principal.tenant, task_id=task_id).select_related("instance").first()
    if task is None:
        raise Http404(f"no task {task_id}")
    return task


@require_GET
@console_view
def task_detail_live(request, task_id: str):
    """The task page's status, record and output, for static/console/live.js."""
    return render(request, "tasks/_detail_live.html", {"task": _task(request, task_id)})


@console_view(section="instances:list")  # a task is an instance's: its page is under Instances
def task_detail(request, task_id: str):
    return render(request, "tasks/detail.html", {"task": _task(request, task_id)})


@require_POST
@console_view
def task_cancel(request, task_id: str):
    task = _task(request, task_id)
    try:
        services.task_cancel(task=task, actor=request.principal.actor)
        messages.success(request, f"Cancelling {task.task_id}.")
    except DomainError as exc:
        domain_error_message(request, exc)
    return redirect("tasks:detail", task_id=task.task_id)
