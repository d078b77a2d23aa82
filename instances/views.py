"""Console pages for instances. Thin: forms in, services for changes, templates out."""

from __future__ import annotations

import json
from datetime import datetime

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from orchestrio import roles
from orchestrio.forms import errors_to_form
from orchestrio.errors import DomainError, ValidationFailed
from orchestrio.views import console_view, domain_error_message

from . import pages, services
from .choices import InstanceState, OperationKind
from .filtersets import InstanceFilterSet, TenantOperationFilterSet
from .forms import ConfigForm, IdleTimeoutForm, InstanceCreateForm, MonitoringForm, ResizeForm
from .lifecycle import RULES
from .models import LogLine, Operation
from .selectors import instance_stats, instances_with_record_in_order, listed_instances, live_instance_with_record, live_instances

VERBS = {
    "start": OperationKind.START,
    "stop": OperationKind.STOP,
    "restart": OperationKind.RESTART,
    "suspend": OperationKind.SUSPEND,
    "resume": OperationKind.RESUME,
    "sleep": OperationKind.SLEEP,
    "wake": OperationKind.WAKE,
}
# The capability each action of `instance_action` needs beyond `operate` (orchestrio/roles.py).
ACTION_CAPABILITIES = {"rotate-agent-key": "tokens"}


def _instance(request, instance_id: str, **_):
    instance = live_instance_with_record(tenant=request.principal.tenant, instance_id=instance_id)
    if instance is None:
        raise Http404(f"no instance {instance_id}")
    return instance


def _list_context(request) -> dict:
    tenant = request.principal.tenant
    filterset = InstanceFilterSet(request.GET, queryset=listed_instances(tenant=tenant))
    queryset = filterset.qs if filterset.is_valid() else filterset.queryset.none()
    page = Paginator(queryset.values_list("instance_id", flat=True), 50).get_page(request.GET.get("page"))
    page.object_list = instances_with_record_in_order(tenant=tenant, instance_ids=page.object_list)  # as the API's list reads them
    return {"page": page, "filterset": filterset, "states": InstanceState.choices}


@console_view
def instance_list(request):
    return render(request, "instances/list.html", _list_context(request))


@require_GET
@console_view
def instance_list_live(request):
    """The list's table alone, for static/console/live.js: the same template the page includes."""
    return render(request, "instances/_list_table.html", _list_context(request))


@require_http_methods(["GET", "POST"])
@console_view
def instance_create(request):
    form = InstanceCreateForm(request.POST or None, tenant=request.principal.tenant)
    if request.method == "POST" and form.is_valid():
        try:
            instance = services.instance_create(principal=request.principal, **form.cleaned_data)
        except DomainError as exc:
            errors_to_form(form, exc)
        else:
            # No flash message: the detail page's live header says "provisioning now" for as long
            # as it is true (templates/instances/_detail_header.html).
            return redirect("instances:detail", instance_id=instance.instance_id)
    return render(request, "instances/create.html", {"form": form})


def _actions(instance, *, busy: bool) -> list[dict]:
    """The header's lifecycle buttons: each enabled only in the states its rule accepts
    (instances/lifecycle.py RULES) and while no other operation runs, as the service decides."""
    return [
        {
            "verb": verb,
            "label": verb.capitalize(),
            "confirm": verb not in ("start", "resume", "wake"),
            "show_in": " ".join(sorted(RULES[kind].from_states)),
            "enabled": not busy and instance.state in RULES[kind].from_states,
        }
        for verb, kind in VERBS.items()
    ]


def _live_context(instance) -> dict:
    """What the detail page's live parts show (templates/instances/_detail_live.html)."""
    busy = instance.unfinished_operation_pk is not None
    return {
        "instance": instance,
        "actions": _actions(instance, busy=busy),
        "logs": list(LogLine.objects.filter(instance=instance).order_by("-seq")[:100])[::-1],
        "operations": instance.operations.order_by("-created_at")[:20],
        "operation": instance.unfinished_operation if instance.unfinished_operation_pk is not None else None,
    }


@console_view
def instance_detail(request, instance_id: str):
    instance = _instance(request, instance_id)
    config_form = ConfigForm(initial={"config": json.dumps(instance.config or {}, indent=2, sort_keys=True)})
    return render(
        request,
        "instances/detail.html",
        {
            **_live_context(instance),
            "resize_form": ResizeForm(initial={"plan_id": instance.plan_id}),
            "idle_form": IdleTimeoutForm(initial={"idle_timeout_seconds": instance.idle_timeout_seconds}),
            "related_links": pages.related(instance=instance),  # the deployment that runs on it…
            "config_form": config_form,
        },
    )


@require_GET
@console_view
def instance_detail_live(request, instance_id: str):
    """The detail page's live parts (header state and actions, record, log, operations) in one
    response, for static/console/live.js; another tenant's instance is 404 as on the page."""
    return render(request, "instances/_detail_live.html", _live_context(_instance(request, instance_id)))


@require_GET
@console_view
def instance_header_live(request, instance_id: str):
    """The heading of the instance's tab pages (its state), for static/console/live.js."""
    instance = live_instances(tenant=request.principal.tenant).filter(instance_id=instance_id).first()
    if instance is None:
        raise Http404(f"no instance {instance_id}")
    return render(request, "instances/_tab_header.html", {"instance": instance})


@require_POST
@console_view
def instance_action(request, instance_id: str, verb: str):
    instance = _instance(request, instance_id)
    roles.require(request.principal, ACTION_CAPABILITIES.get(verb, "operate"))
    actor = request.principal.actor
    try:
        if verb in VERBS:
            services.operation_accept(instance=instance, kind=VERBS[verb], actor=actor)
            messages.success(request, f"{verb.capitalize()} requested for {instance_id}.")
        elif verb == "resize":
            form = ResizeForm(request.POST)
            if not form.is_valid():
                raise ValidationFailed("choose a plan")
            services.instance_resize(instance=instance, actor=actor, plan_id=form.cleaned_data["plan_id"])
            messages.success(request, f"Resize to {form.cleaned_data['plan_id']} requested for {instance_id}.")
        elif verb == "idle-timeout":
            form = IdleTimeoutForm(request.POST)
            if not form.is_valid():
                raise ValidationFailed("; ".join(e for errors in form.errors.values() for e in errors))
            value = form.cleaned_data["idle_timeout_seconds"]
            effective = services.instance_update(instance=instance, actor=actor, fields={"idle_timeout_seconds": value}).effective_idle_timeout_seconds
            messages.success(request, f"{instance_id} sleeps after {effective} s without traffic." if effective else f"{instance_id} never sleeps.")
        elif verb == "rotate-agent-key":
            services.instance_rotate_agent_key(instance=instance, actor=actor)
            messages.success(request, "A new agent key is in force.")
        else:
            raise Http404("no such action")
    except DomainError as exc:
        domain_error_message(request, exc)
    return redirect("instances:detail", instance_id=instance_id)


@require_http_methods(["GET", "POST"])
@console_view(capabilities="destroy", objects=_instance)
def instance_destroy(request, instance_id: str):
    instance = _instance(request, instance_id)
    if request.method == "POST":
        if request.POST.get("confirm") != instance.instance_id:
            messages.error(request, f"Type {instance.instance_id} to confirm.")
            return render(request, "instances/destroy.html", {"instance": instance}, status=400)
        try:
            services.operation_accept(instance=instance, kind=OperationKind.DESTROY, actor=request.principal.actor)
        except DomainError as exc:
            domain_error_message(request, exc)
            return redirect("instances:detail", instance_id=instance_id)
        messages.success(request, f"Destroying {instance_id}.")
        return redirect("instances:list")
    return render(request, "instances/destroy.html", {"instance": instance})


@require_POST
@console_view
def instance_config(request, instance_id: str):
    instance = _instance(request, instance_id)
    form = ConfigForm(request.POST)
    if not form.is_valid():
        messages.error(request, "; ".join(e for errors in form.errors.values() for e in errors))
        return redirect("instances:detail", instance_id=instance_id)
    new = form.cleaned_data["config"]
    patch = {key: None for key in (instance.config or {}) if key not in new}
    patch.update(new)
    try:
        instance = services.instance_config_update(instance=instance, patch=patch, actor=request.principal.actor)
        if form.cleaned_data["apply"]:
            services.instance_config_apply(instance=instance, actor=request.principal.actor)
            messages.success(request, "Config saved and applied to the instance.")
        else:
            messages.success(request, "Config saved.")
    except DomainError as exc:
        domain_error_message(request, exc)
    return redirect("instances:detail", instance_id=instance_id)


# --- the Monitoring tab: stats charts and the app log ----------------------------------------

APP_LOG_LINES = 200
STATS_TABLE_ROWS = 30
WINDOW_LABELS = {"1h": "the last hour", "24h": "the last 24 hours", "30d": "the last 30 days"}


def _duration(seconds) -> str:
    if seconds is None:
        return ""
    minutes = int(seconds) // 60
    days, hours, minutes = minutes // 1440, minutes // 60 % 24, minutes % 60
    return " ".join(f"{n} {unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "min")) if n) or "under a minute"


def _log_time(text: str):
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def _monitoring_context(request, instance_id: str) -> tuple[dict, int]:
    """What the Monitoring tab shows (templates/instances/_monitoring_live.html) and its status:
    400 when a GET parameter is wrong (the form says which)."""
    instance = live_instances(tenant=request.principal.tenant).filter(instance_id=instance_id).select_related("blueprint").first()
    if instance is None:
        raise Http404(f"no instance {instance_id}")
    form = MonitoringForm(request.GET)
    context = {"instance": instance, "form": form, "stats": None, "log": None, "log_problem": ""}
    if not form.is_valid():
        return context, 400
    window = form.cleaned_data["window"] or "1h"
    stats = instance_stats(instance=instance, window=window)
    points = stats["points"]
    context.update(stats=stats, window_label=WINDOW_LABELS[window], table=points[::-1][:STATS_TABLE_ROWS])
    context["uptime"] = _duration(stats["current"]["uptime_seconds"]) if stats["current"] else ""
    context["chart"] = {
        "t": [int(point["t"].timestamp()) for point in points],
        "cpu_percent": [point["cpu_percent"] for point in points],
        "rss_mib": [round(point["rss_bytes"] / 2**20, 1) if point["rss_bytes"] is not None else None for point in points],
    }
    if instance.state != InstanceState.RUNNING:
        context["log_problem"] = f"{instance.instance_id} is {instance.state}: its output is kept on the instance and shows here while it runs."
        return context, 200
    try:
        # The agent is asked now, outside any transaction (the tab's view, like "Ask the agent").
        body = services.instance_app_logs(instance=instance, tail=APP_LOG_LINES, stream=form.cleaned_data["stream"], q=form.cleaned_data["q"])
    except DomainError as exc:
        context["log_problem"] = f"The instance's agent did not give its output just now ({exc.detail}). This page tries again by itself."
        return context, 200
    lines = [{**line, "at": _log_time(line.get("ts"))} for line in body["lines"] if isinstance(line, dict)]
    starts = int(body.get("starts") or 0)
    context["log"] = {"lines": lines, "truncated": bool(body.get("truncated")), "restarts": max(starts - 1, 0), "last_exit_code": body.get("last_exit_code")}
    return context, 200


@require_GET
@console_view
def instance_monitoring(request, instance_id: str):
    context, status = _monitoring_context(request, instance_id)
    return render(request, "instances/monitoring.html", context, status=status)


@require_GET
@console_view
def instance_monitoring_live(request, instance_id: str):
    """The Monitoring tab's live parts (figures, chart data, the app log), for static/console/live.js."""
    context, status = _monitoring_context(request, instance_id)
    return render(request, "instances/_monitoring_live.html", context, status=status)


# --- the tenant's operations, across its instances (GET /api/v1/operations in the console) -----


def _operations_context(request) -> dict:
    """The operations page's table: the API's filters (status, kind, instance_id, since, until)
    on the tenant's operations, newest first, a page of 50 in a fixed number of queries."""
    operations = Operation.objects.filter(tenant=request.principal.tenant).select_related("instance").order_by("-created_at", "-id")
    filters = TenantOperationFilterSet(request.GET, queryset=operations)
    valid = filters.is_valid()
    page = Paginator(filters.qs if valid else operations.none(), 50).get_page(request.GET.get("page"))
    return {"filters": filters, "page": page, "filtered": any(request.GET.get(name) for name in filters.form.fields)}


@console_view(section="console:activity")
def operation_list(request):
    return render(request, "instances/operations.html", _operations_context(request))


@require_GET
@console_view(section="console:activity")
def operation_list_live(request):
    """The table alone, for static/console/live.js (the same template the page includes)."""
    return render(request, "instances/_operations_table.html", _operations_context(request))
