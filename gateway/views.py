"""The proxies: `ANY /tunnel/{instance_id}/{path}` and `ANY /gateway/{instance_id}/{slug}`, plus
the console's gateway-policy pages."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Exists, F, OuterRef
from django.http import HttpResponseRedirect
from django.views.decorators.csrf import csrf_exempt

from instances.choices import InstanceState
from instances.models import Instance, gateway_url
from orchestrio.api.ratelimit import AUTH_FAILURE_DETAIL, Counter, attach, auth_failure, count
from orchestrio.api.exceptions import json_errors
from orchestrio.errors import Conflict, NotFound, TooManyRequests, Unauthorized
from orchestrio.longpoll import proxy_slot
from orchestrio.quotas import execution_quota_check_proxied

from . import grants, hooks, paths, proxy, wake
from .auth import GatewayNotFound, GatewayUnauthorized, authenticate
from .models import GatewayPolicy

logger = logging.getLogger(__name__)


def _refuse_if_rate_limited(request, caller) -> None:
    usage = count([Counter(group="gateway", key=caller.ratelimit_key, rate=settings.RATE_LIMITS["gateway"])])[0]
    attach(request, usage)
    if usage is not None and usage.limited:
        raise TooManyRequests(f"rate limit exceeded for this caller; retry after {usage.reset} seconds", retry_after=usage.reset)


@dataclass(frozen=True)
class Route:
    """What a proxied request reads of its live instance, its tenant's plan, and whether an enabled
    policy applies: one query (`_route`). The policies themselves are
    only read when one applies (a tunnel without catch-all policies takes API tokens)."""

    pk: int
    instance_id: str
    tenant_id: str
    state: str
    ip_address: str | None
    port: int | None
    socket_path: str
    agent_port: int  # the blueprint's, when the instance has no recorded port
    agent_key_encrypted: str
    tenant_plan_id: str
    tenant_plan_name: str
    executions_per_month: int | None
    has_policies: bool


def _route(instance_id: str, slug: str | None) -> Route | None:
    rows = Instance.objects.filter(instance_id=instance_id, destroyed_at__isnull=True).values(
        "pk", "instance_id", "tenant_id", "state", "ip_address", "port", "socket_path", "agent_key_encrypted",
        agent_port=F("blueprint__agent_port"), tenant_plan_id=F("tenant__plan_id"), tenant_plan_name=F("tenant__plan__name"),
        executions_per_month=F("tenant__plan__executions_per_month"),
        has_policies=Exists(GatewayPolicy.objects.filter(instance=OuterRef("pk"), slug=slug, enabled=True)),
    )[:1]  # fmt: skip
    return next((Route(**row) for row in rows), None)


def _serve(request, instance_id: str, *, slug: str | None, upstream_path: str, own_host: bool = False):
    instance = _route(instance_id, slug)
    if instance is None:
        raise NotFound(f"no instance {instance_id!r}")
    if own_host and request.path_info == grants.OPEN_PATH:
        return _open_with_grant(request, instance)
    policies = list(GatewayPolicy.objects.filter(instance_id=instance.pk, slug=slug, enabled=True).order_by()) if instance.has_policies else []
    if slug is not None and not policies:
        raise NotFound(f"no enabled gateway policy for {slug!r} on {instance_id}")
    try:
        # On the instance's own host, a console user who opened it with a grant (gateway/grants.py).
        caller = own_host and grants.session_caller(request, instance_id=instance.instance_id, tenant_id=instance.tenant_id)
        if not caller:
            caller = authenticate(request, instance, policies, implicit_api_key=slug is None and not policies)
    except GatewayNotFound as exc:
        raise NotFound(f"no instance {instance_id!r}") from exc
    except GatewayUnauthorized as exc:
        throttled = auth_failure(request) if exc.presented else None
        if throttled is not None:
            raise TooManyRequests(f"{AUTH_FAILURE_DETAIL}; retry after {throttled.reset} seconds", retry_after=throttled.reset) from exc
        raise Unauthorized("; ".join(exc.reasons), challenge='Bearer realm="gateway", error="invalid_token"') from exc
    _refuse_if_rate_limited(request, caller)
    execution_quota_check_proxied(
        tenant_id=instance.tenant_id, plan_id=instance.tenant_plan_id, plan_name=instance.tenant_plan_name, quota=instance.executions_per_month
    )
    if instance.state in wake.ASLEEP_OR_ON_THE_WAY:
        # Scale to zero: this request wakes it (or joins the wake under way) and is held until it
        # runs; its address may have changed (an EC2 machine started again), so it is read again.
        wake.wake_for_request(instance, caller)
        instance = _route(instance_id, slug)
        if instance is None:
            raise NotFound(f"no instance {instance_id!r}")
    if instance.state != InstanceState.RUNNING:
        raise Conflict(wake.not_running_detail(instance_id, instance.state))
    release = proxy_slot(tenant_id=instance.tenant_id)
    hooks.request_proxied(instance.tenant_id, instance.pk)
    return proxy.forward(request, instance, upstream_path, caller, on_close=release)


def _open_with_grant(request, instance: Route):
    """`/.orchestrio/open?grant=…` on the instance's own host: the console's grant exchanged for
    a pass cookie of this host only, then on to the instance's front page."""
    if request.method != "GET":
        raise NotFound("not found")
    value = grants.grant_redeem(value=request.GET.get("grant", ""), instance_id=instance.instance_id, tenant_id=instance.tenant_id)
    response = HttpResponseRedirect("/")
    response.set_cookie(grants.OPEN_COOKIE, value, max_age=grants.SESSION_SECONDS, secure=request.is_secure(), httponly=True, samesite="Lax")
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response


@json_errors
def _proxied(request, instance_id: str, *, slug: str | None, prefix: tuple[str, ...], base: str = "", own_host: bool = False):
    """Refuses dot-segments (gateway/paths.py) before anything is looked up or forwarded."""
    try:
        target = paths.upstream_target(request, prefix, base)
    except paths.Refused as exc:
        raise NotFound(exc.detail) from exc
    return _serve(request, instance_id, slug=slug, upstream_path=target, own_host=own_host)


def serve_host(request, instance_id: str):
    """A request to the instance's own hostname or custom domain: the tunnel, path as sent."""
    return _proxied(request, instance_id, slug=None, prefix=(), own_host=True)


@csrf_exempt
def tunnel(request, instance_id: str, path: str = ""):
    return _proxied(request, instance_id, slug=None, prefix=("tunnel", instance_id))


@csrf_exempt
def gateway(request, instance_id: str, slug: str, rest: str = ""):
    """Forwards to `/webhooks/{slug}` and below, never elsewhere."""
    return _proxied(request, instance_id, slug=slug, prefix=("gateway", instance_id, slug), base=f"/webhooks/{slug}")


# --- console ------------------------------------------------------------------------------------

from django.contrib import messages  # noqa: E402
from django.http import Http404  # noqa: E402
from django.shortcuts import redirect, render  # noqa: E402
from django.views.decorators.http import require_http_methods, require_POST  # noqa: E402

from instances.selectors import live_instances  # noqa: E402
from orchestrio.forms import errors_to_form  # noqa: E402
from orchestrio.errors import DomainError  # noqa: E402
from orchestrio.views import console_view, domain_error_message  # noqa: E402

from . import services  # noqa: E402
from .forms import PolicyForm  # noqa: E402
from .services import policy_issuer, policy_warnings  # noqa: E402


@require_http_methods(["GET", "POST"])
@console_view
def instance_gateway(request, instance_id: str):
    instance = live_instances(tenant=request.principal.tenant).filter(instance_id=instance_id).select_related("tenant__plan").first()
    if instance is None:
        raise Http404(f"no instance {instance_id}")
    form = PolicyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            created = services.policy_create(instance=instance, principal=request.principal, data=form.cleaned_data)
        except DomainError as exc:
            errors_to_form(form, exc)
        else:
            messages.success(request, f"Policy {created.pk} created.")
            return redirect("instances:gateway", instance_id=instance_id)
    policies = [
        {"policy": p, "warnings": policy_warnings(policy=p), "issuer": policy_issuer(policy=p)}
        for p in GatewayPolicy.objects.filter(instance=instance).order_by("slug", "provider")
    ]
    return render(request, "gateway/instance_gateway.html", {"instance": instance, "form": form, "policies": policies, "public_url": gateway_url()})


def _policy(request, policy_id: str, **_) -> GatewayPolicy:
    policy = GatewayPolicy.objects.filter(tenant=request.principal.tenant, pk=policy_id, instance__destroyed_at__isnull=True).select_related("instance").first()
    if policy is None:
        raise Http404(f"no policy {policy_id}")
    return policy


@require_POST
@console_view
def policy_toggle(request, policy_id: str):
    policy = _policy(request, policy_id)
    try:
        services.policy_update(policy=policy, principal=request.principal, data={"enabled": not policy.enabled})
        messages.success(request, f"Policy {policy.pk} {'disabled' if policy.enabled else 'enabled'}.")
    except DomainError as exc:
        domain_error_message(request, exc)
    return redirect("instances:gateway", instance_id=policy.instance.instance_id)


@require_POST
@console_view(capabilities="destroy", objects=_policy)
def policy_delete(request, policy_id: str):
    policy = _policy(request, policy_id)
    services.policy_delete(policy=policy, actor=request.principal.actor)
    messages.success(request, f"Policy {policy.pk} deleted.")
    return redirect("instances:gateway", instance_id=policy.instance.instance_id)


@require_POST
@console_view
def instance_open(request, instance_id: str):
    """The console's Open button: a one-minute, single-use grant for this instance's own host
    (gateway/grants.py); the console's session never goes there."""
    instance = live_instances(tenant=request.principal.tenant).filter(instance_id=instance_id).first()
    if instance is None:
        raise Http404(f"no instance {instance_id}")
    grant = services.open_grant_mint(instance=instance, actor=request.principal.actor)
    # A page that moves on by itself, not a redirect: the console's CSP keeps form-action to its
    # own origin (and Stripe's), and instance hosts are not to be added there.
    response = render(request, "gateway/open.html", {"instance": instance, "open_url": grants.open_url(instance=instance, grant=grant)})
    response["Cache-Control"] = "no-store"
    return response


# --- the Traffic tab ------------------------------------------------------------------------------

from django.utils import timezone  # noqa: E402
from django.views.decorators.http import require_GET  # noqa: E402

from .choices import RequestMetricsWindow  # noqa: E402
from .selectors import WINDOWS, request_metrics  # noqa: E402


def _traffic_context(request, instance_id: str) -> dict:
    instance = live_instances(tenant=request.principal.tenant).filter(instance_id=instance_id).first()
    if instance is None:
        raise Http404(f"no instance {instance_id}")
    window = request.GET.get("window", "1h")
    if window not in WINDOWS:
        window = "1h"
    now = timezone.now()
    metrics = request_metrics(instance, window=window, now=now)
    return {
        "instance": instance, "window": window, "windows": RequestMetricsWindow.values, "metrics": metrics, "chart": _chart(metrics, now=now),
        "percent": {"recent": round(metrics["recent_error_rate"] * 100, 1), "total": round(metrics["totals"]["error_rate"] * 100, 1)},
        "flush_seconds": settings.REQUEST_METRICS_FLUSH_SECONDS,
    }  # fmt: skip


def _chart(metrics: dict, *, now) -> dict:
    """Every minute (hour) of the window, 0 requests where there were none: uPlot's columns."""
    step = metrics["resolution_seconds"]
    span = WINDOWS[metrics["window"]][0]
    last = int(now.timestamp()) // step * step
    first = int((now - span).timestamp()) // step * step + step
    by_start = {int(p["start"].timestamp()): p for p in metrics["points"]}
    times = list(range(first, last + step, step))
    return {
        "t": times, "step": step,
        "requests": [by_start[t]["count"] if t in by_start else 0 for t in times],
        "errors": [by_start[t]["errors"] if t in by_start else 0 for t in times],
        "p95": [by_start[t]["p95_ms"] if t in by_start else None for t in times],
    }  # fmt: skip


@require_GET
@console_view
def instance_traffic(request, instance_id: str):
    """The instance's Traffic tab: requests through the gateway and tunnel, errors, latency."""
    return render(request, "gateway/instance_traffic.html", _traffic_context(request, instance_id))


@require_GET
@console_view
def instance_traffic_live(request, instance_id: str):
    """The Traffic tab's figures alone, for static/console/live.js (the template the tab includes)."""
    return render(request, "gateway/_traffic_live.html", _traffic_context(request, instance_id))

