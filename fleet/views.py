"""Console pages for fleet requests: the list (with a form to request instances), a request's
page (its instances, live), and returning them."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from instances.models import InstancePlan
from instances.selectors import blueprint_visible, instance_counts
from orchestrio.errors import DomainError
from orchestrio.forms import errors_to_form
from orchestrio.views import console_view, domain_error_message

from . import selectors, services
from .choices import RequestKind, RequestStatus
from .models import FleetRequest


class AcquireForm(forms.Form):
    blueprint_name = forms.ChoiceField(label="Blueprint")
    count = forms.IntegerField(min_value=1, label="How many", help_text="Created in one go, or none at all if your plan has no room for them all.")
    plan_id = forms.ChoiceField(label="Plan")
    instance_id_prefix = forms.CharField(
        required=False, max_length=59, label="Instance id prefix",
        help_text="The instances are <prefix>-1, <prefix>-2, …; left empty, the request's id.",
    )  # fmt: skip

    def __init__(self, *args, tenant, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["count"].widget.attrs["max"] = settings.FLEET_REQUEST_MAX_COUNT
        self.fields["blueprint_name"].choices = [(b.name, b.name) for b in blueprint_visible(tenant=tenant)]
        self.fields["blueprint_name"].initial = "OpenClaw"
        self.fields["plan_id"].choices = [(p.pk, p.name) for p in InstancePlan.objects.filter(available=True)]

    def clean_count(self):
        count = self.cleaned_data["count"]
        if count > settings.FLEET_REQUEST_MAX_COUNT:
            raise forms.ValidationError(f"At most {settings.FLEET_REQUEST_MAX_COUNT} instances in one request.")
        return count


class FilterForm(forms.Form):
    status = forms.ChoiceField(required=False, choices=[("", "any"), *RequestStatus.choices])
    kind = forms.ChoiceField(required=False, choices=[("", "any"), *RequestKind.choices])


def _fleet_request(request, request_id: str, **_) -> FleetRequest:
    found = selectors.with_items(FleetRequest.objects.filter(tenant=request.principal.tenant, request_id=request_id)).first()
    if found is None:
        raise Http404("no such fleet request")
    return found


def _page(request):
    requests = selectors.with_status(FleetRequest.objects.filter(tenant=request.principal.tenant).select_related("returns"))
    filters = FilterForm(request.GET or None)
    if filters.is_valid():
        if filters.cleaned_data["status"]:
            requests = requests.filter(status=filters.cleaned_data["status"])
        if filters.cleaned_data["kind"]:
            requests = requests.filter(kind=filters.cleaned_data["kind"])
    return filters, Paginator(requests, 50).get_page(request.GET.get("page"))


def _room(tenant) -> dict:
    """How many more instances a request can ask for now: the smaller of the plan's room for live
    instances and for running ones (a new instance counts as both; fleet/services.py)."""
    limits, counts = tenant.plan.limits, instance_counts(tenant=tenant)
    rooms = [limits[name] - counts[name] for name in ("instances", "running_instances") if limits.get(name) is not None]
    return {"plan": tenant.plan.name, "left": max(min(rooms), 0) if rooms else None, "instances": limits.get("instances"), "running": limits.get("running_instances")}


@require_http_methods(["GET", "POST"])
@console_view
def request_list(request):
    form = AcquireForm(request.POST or None, tenant=request.principal.tenant)
    if request.method == "POST" and form.is_valid():
        data = {key: value for key, value in form.cleaned_data.items() if value not in ("", None)}
        try:
            created = services.fleet_request_acquire(principal=request.principal, **data)
        except DomainError as exc:
            errors_to_form(form, exc)
        else:
            messages.success(request, f"Requested {created.count} instance{'s' if created.count != 1 else ''}: they are being created.")
            return redirect("fleet:detail", request_id=created.request_id)
    filters, page = _page(request)
    return render(request, "fleet/list.html", {"form": form, "filters": filters, "page": page, "room": _room(request.principal.tenant)})


@require_GET
@console_view
def request_list_live(request):
    """The list's table alone, for static/console/live.js (the same template the page includes)."""
    return render(request, "fleet/_list_table.html", {"page": _page(request)[1]})


@require_GET
@console_view
def request_detail(request, request_id: str):
    return render(request, "fleet/detail.html", {"fleet_request": _fleet_request(request, request_id)})


@require_GET
@console_view
def request_detail_live(request, request_id: str):
    """The request's status and instances, for static/console/live.js; final once it has finished."""
    return render(request, "fleet/_detail_live.html", {"fleet_request": _fleet_request(request, request_id)})


@require_POST
@console_view(capabilities="destroy", objects=_fleet_request)
def request_return(request, request_id: str):
    acquired = _fleet_request(request, request_id)
    live = [item.instance for item in acquired.ordered_items if item.instance.destroyed_at is None]
    if acquired.kind != RequestKind.ACQUIRE or not live:
        messages.error(request, "There is nothing left to return: this request's instances are destroyed." if live == [] else "Only a request that created instances can be returned.")
        return redirect("fleet:detail", request_id=acquired.request_id)
    try:
        returned = services.fleet_request_return(principal=request.principal, instances=live, returns=acquired)
    except DomainError as exc:
        domain_error_message(request, exc)
        return redirect("fleet:detail", request_id=acquired.request_id)
    messages.success(request, f"Returning {returned.count} instance{'s' if returned.count != 1 else ''}: they are being destroyed.")
    return redirect("fleet:detail", request_id=returned.request_id)

