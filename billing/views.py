"""Console pages: billing (plan, usage, upgrade, portal) and alerts (webhook, deliveries)."""

from __future__ import annotations

from datetime import datetime, time, timezone as dt_timezone

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from orchestrio.forms import errors_to_form
from orchestrio.errors import DomainError
from orchestrio.http import carries_secret
from orchestrio.models import SubscriptionPlan
from orchestrio.selectors import object_refs_with_links, over_limits, tenant_usage
from orchestrio.views import console_view, domain_error_message

from . import alerts, services
from .models import AlertConfig, AlertDelivery, Subscription
from .selectors import usage_current, usage_daily
from .stripe_client import configured


def _bar(used, allowed):
    if allowed in (None, 0):
        return None
    return min(100, round(used * 100 / allowed))


@console_view
def billing_overview(request):
    tenant = request.principal.tenant
    usage = tenant_usage(tenant=tenant)
    current = usage_current(tenant)
    limits = tenant.plan.limits
    if request.GET.get("checkout") == "success":
        messages.success(request, "Thank you! Your plan changes as soon as Stripe confirms the payment.")
    elif request.GET.get("checkout") == "cancelled":
        messages.info(request, "Checkout cancelled; nothing changed.")
    bars = [
        {"label": "Executions this period", "used": current["executions"], "allowed": current["quota"], "pct": _bar(current["executions"], current["quota"])},
        {"label": "Instances", "used": usage["instances"], "allowed": limits["instances"], "pct": _bar(usage["instances"], limits["instances"])},
        {"label": "Running instances", "used": usage["running_instances"], "allowed": limits["running_instances"], "pct": _bar(usage["running_instances"], limits["running_instances"])},
        {"label": "API tokens", "used": usage["tokens"], "allowed": limits["tokens"], "pct": _bar(usage["tokens"], limits["tokens"])},
    ]
    daily = usage_daily(tenant_id=tenant.pk, days=USAGE_CHART_DAYS)
    context = {
        "plans": SubscriptionPlan.objects.filter(is_public=True),
        "subscription": Subscription.objects.filter(tenant=tenant).first(),
        "current": current,
        "bars": bars,
        "over": over_limits(tenant=tenant, usage=usage),
        "billing_configured": configured(),
        "daily": daily,
        "chart": _chart_data(daily),
    }
    return render(request, "billing/overview.html", context)


USAGE_CHART_DAYS = 30


def _chart_data(daily: list[dict]) -> dict:
    """The usage charts' series (static/console/charts.js, through json_script): UTC midnights
    in Unix seconds, and the numbers the table beside the charts shows."""
    return {
        "t": [int(datetime.combine(d["date"], time.min, tzinfo=dt_timezone.utc).timestamp()) for d in daily],
        "instance_hours": [d["instance_hours"] for d in daily],
        "executions": [d["executions"] for d in daily],
        "tokens": [d["tokens_in"] + d["tokens_out"] for d in daily],
        "cost_usd": [float(d["cost_usd"]) for d in daily],
    }


@require_POST
@console_view(capabilities="billing")
def billing_checkout(request, plan_id: str):
    try:
        return HttpResponseRedirect(services.checkout_session_create(principal=request.principal, plan_id=plan_id))
    except DomainError as exc:
        domain_error_message(request, exc)
    return redirect("billing:overview")


@require_POST
@console_view(capabilities="billing")
def billing_portal(request):
    try:
        return HttpResponseRedirect(services.portal_session_create(principal=request.principal))
    except DomainError as exc:
        domain_error_message(request, exc)
    return redirect("billing:overview")


class AlertForm(forms.Form):
    webhook_url = forms.CharField(max_length=2048, required=False, label="Webhook URL", help_text="https://… on a public address")
    enabled = forms.BooleanField(required=False)


@require_http_methods(["GET", "POST"])
@console_view(capabilities="alerts")
def alerts_page(request):
    tenant = request.principal.tenant
    config = AlertConfig.objects.filter(tenant=tenant).first()
    form = AlertForm(request.POST or None, initial={"webhook_url": config.webhook_url if config else "", "enabled": config.enabled if config else False})
    new_secret = None
    if request.method == "POST" and form.is_valid():
        try:
            config, new_secret = alerts.alert_config_update(tenant=tenant, actor=request.principal.actor, data=form.cleaned_data)
            messages.success(request, "Alert settings saved.")
        except DomainError as exc:
            errors_to_form(form, exc)
    response = render(request, "billing/alerts.html", {"form": form, "config": config, "new_secret": new_secret, "page": _delivery_page(request), "events": alerts.EVENTS})
    return carries_secret(response) if new_secret else response


def _delivery_page(request):
    page = Paginator(AlertDelivery.objects.filter(tenant=request.principal.tenant).prefetch_related("attempt_log"), 25).get_page(request.GET.get("page"))
    # What each alert is about (its instance, its task), linked while it exists.
    page.object_list = object_refs_with_links(principal=request.principal, items=page.object_list, refs=_delivery_refs)
    return page


def _delivery_refs(delivery) -> list[tuple[str, str]]:
    data = (delivery.payload or {}).get("data") or {}
    return [(kind, data.get(f"{kind}_id")) for kind in ("instance", "task") if isinstance(data.get(f"{kind}_id"), str)]


@require_GET
@console_view(capabilities="alerts")
def alert_deliveries_live(request):
    """The deliveries table alone, for static/console/live.js: the template the page includes."""
    return render(request, "billing/_deliveries.html", {"page": _delivery_page(request)})


@require_POST
@console_view(capabilities="alerts")
def alerts_action(request, action: str):
    tenant = request.principal.tenant
    try:
        if action == "test":
            delivery = alerts.send_test(tenant=tenant, actor=request.principal.actor)
            messages.success(request, f"Test alert {delivery.pk} queued.")
        elif action == "rotate":
            secret = alerts.alert_secret_rotate(tenant=tenant, actor=request.principal.actor)
            return carries_secret(render(request, "billing/secret.html", {"secret": secret}))
        elif action.startswith("redeliver-"):
            copy = alerts.redeliver(delivery=alerts.delivery_for(tenant, action[len("redeliver-"):]), actor=request.principal.actor)
            messages.success(request, f"Redelivering as {copy.pk}.")
        else:
            raise Http404("no such action")
    except DomainError as exc:
        domain_error_message(request, exc)
    return redirect("billing:alerts")
