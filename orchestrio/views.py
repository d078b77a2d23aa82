"""The console's account pages (server-rendered), and JSON fallbacks for unknown API routes."""

from __future__ import annotations

import sys
from functools import wraps

from django.contrib import messages
from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpResponse, HttpResponsePermanentRedirect, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import roles, selectors, services
from .api import ratelimit
from .api.ratelimit import Counter, Usage
from .auth import SESSION_TENANT_KEY, membership_for_session
from .api.exceptions import domain_error_response
from .errors import DomainError, Forbidden, NotFound
from .forms import ApiTokenForm, LoginForm, SignupForm
from .http import carries_secret
from .middleware import is_api_path, unavailable_response
from .models import ActivityEvent, Membership
from .tenancy import Actor, Principal, client_ip


def console_view(view=None, *, capabilities: roles.Declaration = None, objects=None):
    """Login required; sets `request.principal` for the user's current tenant; and the role
    check of orchestrio/roles.py, as the API's: `capabilities` is the one a page needs (or, by
    HTTP method, `{"POST": "destroy"}`), by default `read` for GET and `operate` for POST.

    `objects(request, **url_kwargs)` looks up what the URL names (Http404 when it is not the
    tenant's): a refusal calls it first, so another tenant's object is 404, never 403. A view
    whose capability depends on its input calls `roles.require` itself, after its lookup; a
    Forbidden that leaves the view is answered like the decorator's own refusal.
    """

    def decorate(view):
        @login_required
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            membership = membership_for_session(request, request.user)
            if membership is None:
                return render(request, "console/no_tenant.html", status=403)
            request.principal = Principal(
                tenant=membership.tenant, role=membership.role, user=request.user, ip=client_ip(request)
            )
            try:
                capability = roles.needed(capabilities, request.method)
                if not roles.allows(request.principal.role, capability):
                    if objects is not None:
                        objects(request, *args, **kwargs)
                    roles.require(request.principal, capability)
                return view(request, *args, **kwargs)
            except Forbidden as exc:
                return render(request, "console/forbidden.html", {"detail": exc.detail}, status=403)

        wrapper.capabilities = capabilities
        return wrapper

    return decorate(view) if view is not None else decorate


def domain_error_message(request, exc: DomainError) -> None:
    detail = exc.detail if isinstance(exc.detail, str) else str(exc)
    messages.error(request, detail)


@console_view
def home(request):
    return render(request, "console/home.html", _overview(request))


def _overview(request) -> dict:
    tenant = request.principal.tenant
    return {
        "usage": selectors.tenant_usage(tenant=tenant),
        "limits": tenant.plan.limits,
        "recent_activity": ActivityEvent.objects.filter(tenant=tenant)[:10],
    }


@require_GET
@console_view
def home_live(request):
    """The overview's usage and recent activity, for static/console/live.js (the partial the page includes)."""
    return render(request, "console/_overview_live.html", _overview(request))


def _console_auth_limited(request, *, per_username: bool) -> Usage | None:
    """Brute-force guard for the console's login and signup, on the API's limiter (one key
    scheme, one Redis round trip): POSTs per client IP, and for the login also per username (a
    distributed guess at one account; hashed into the counter's name like every key). Returns the
    usage that is over its limit, if any. Fails open when Redis is unreachable, like the API's
    limits."""
    rate = settings.RATE_LIMITS["login"]
    counters = [Counter(group="console-auth", key=f"ip:{client_ip(request) or 'unknown'}", rate=rate)]
    if per_username:
        username = request.POST.get("username", "").strip().lower()
        counters.append(Counter(group="console-login", key=f"username:{username}", rate=rate))
    limited = [usage for usage in ratelimit.count(counters) if usage is not None and usage.limited]
    return max(limited, key=lambda usage: usage.reset) if limited else None


def _too_many_attempts(request, template: str, form, usage: Usage) -> HttpResponse:
    context = {"form": form, "rate_limited": "Too many attempts from here; wait a minute and try again."}
    response = render(request, template, context, status=429)
    response["Retry-After"] = str(usage.reset)
    return response


_login_view = auth_views.LoginView.as_view(authentication_form=LoginForm, redirect_authenticated_user=True)


def console_login(request):
    if request.method == "POST" and (usage := _console_auth_limited(request, per_username=True)):
        return _too_many_attempts(request, "registration/login.html", LoginForm(request), usage)
    return _login_view(request)


@require_http_methods(["GET", "POST"])
def signup(request):
    if request.user.is_authenticated:
        return redirect("console:home")
    if request.method == "POST" and (usage := _console_auth_limited(request, per_username=False)):
        return _too_many_attempts(request, "console/signup.html", SignupForm(), usage)
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            tenant = services.tenant_create(
                tenant_id=data["tenant_id"],
                name=data["organization"],
                owner_email=data["email"],
                owner_password=data["password"],
                actor=Actor(type="user", label=data["email"], ip=client_ip(request)),
            )
        except DomainError as exc:
            form.add_error("tenant_id" if exc.status_code == 409 else None, exc.detail if isinstance(exc.detail, str) else str(exc))
        else:
            user = Membership.objects.get(tenant=tenant).user
            login(request, user, backend="orchestrio.backends.EmailBackend")
            request.session[SESSION_TENANT_KEY] = tenant.pk
            messages.success(request, f"Welcome! Your tenant {tenant.pk} is ready.")
            return redirect("console:home")
    return render(request, "console/signup.html", {"form": form})


@console_view
def account(request):
    memberships = Membership.objects.select_related("tenant").filter(user=request.user)
    members = Membership.objects.select_related("user").filter(tenant=request.principal.tenant)
    if request.GET.get("password") == "changed":
        messages.success(request, "Your password was changed.")
    return render(request, "console/account.html", {"memberships": memberships, "members": members})


@require_POST
@console_view(capabilities="read")  # the user's own session, not the tenant
def switch_tenant(request):
    tenant_id = request.POST.get("tenant_id", "")
    if Membership.objects.filter(user=request.user, tenant_id=tenant_id).exists():
        request.session[SESSION_TENANT_KEY] = tenant_id
        messages.success(request, f"Now working in {tenant_id}.")
    else:
        messages.error(request, "You are not a member of that tenant.")
    return redirect("console:account")


@require_http_methods(["GET", "POST"])
@console_view
def tokens(request):
    principal = request.principal
    form = ApiTokenForm(request.POST or None)
    created = None
    if request.method == "POST" and form.is_valid():
        try:
            token, plaintext = services.api_token_create(principal=principal, **form.cleaned_data)
        except DomainError as exc:
            domain_error_message(request, exc)
        else:
            created = {"token": token, "plaintext": plaintext}
            form = ApiTokenForm()
    queryset = selectors.api_token_list(tenant=principal.tenant).select_related("created_by")
    page = Paginator(queryset, 50).get_page(request.GET.get("page"))
    response = render(request, "console/tokens.html", {"form": form, "page": page, "created": created})
    return carries_secret(response) if created else response


@require_http_methods(["GET", "POST"])
@console_view
def token_revoke(request, token_pk: int):
    token = get_object_or_404(selectors.api_token_list(tenant=request.principal.tenant), pk=token_pk)
    if request.method == "POST":
        try:
            services.api_token_revoke(token=token, actor=request.principal.actor, principal=request.principal)
        except DomainError as exc:
            domain_error_message(request, exc)
        else:
            messages.success(request, f"Token {token.prefix}… ({token.name}) is revoked.")
        return HttpResponseRedirect(reverse("console:tokens"))
    return render(request, "console/token_revoke.html", {"token": token})


@console_view
def activity(request):
    events = ActivityEvent.objects.filter(tenant=request.principal.tenant)
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    return render(request, "console/activity.html", {"page": page})


@csrf_exempt  # a JSON 404 for any method: CSRF's HTML 403 page must not answer an unknown API route
def api_not_found(request, *args, **kwargs):
    return domain_error_response(NotFound(f"no such endpoint: {request.method} {request.path}"))


def handler403(request, exception=None):
    """A PermissionDenied raised outside the API's own handling: JSON under the API prefixes, the
    console's page elsewhere (the exception's text is not shown: it is written for developers)."""
    if is_api_path(request.path):
        return domain_error_response(Forbidden("you are not allowed to do this"))
    return render(request, "console/403.html", status=403)


def csrf_failure(request, reason=""):
    """CSRF_FAILURE_VIEW: Django's own page has inline styles the console's CSP refuses, and
    words for developers. Under the API prefixes, the API's JSON 403."""
    if is_api_path(request.path):
        return domain_error_response(Forbidden("CSRF check failed: a console session must send the X-CSRFToken header; or use an API token"))
    return render(request, "console/403.html", {"csrf": True}, status=403)


def handler404(request, exception=None):
    if is_api_path(request.path):
        return api_not_found(request)
    return render(request, "console/404.html", status=404)


def handler500(request):
    """Django calls this inside its `except` block, so the exception is at hand: an unreachable
    database or Redis (raised anywhere, a middleware included) is a 503, not an internal error."""
    unavailable = unavailable_response(request, sys.exc_info()[1])
    if unavailable is not None:
        return unavailable
    if is_api_path(request.path):
        return JsonResponse({"detail": "internal error; it has been logged"}, status=500)
    # Without the request: its context processors read the session, the user and the tenant from
    # the database, which may be what failed. The page extends the console's layout all the same.
    return HttpResponse(render_to_string("console/500.html"), status=500)


def favicon(request):
    """Browsers ask for /favicon.ico on pages that declare no icon (the admin, the API docs)."""
    return HttpResponsePermanentRedirect(static("console/favicon.svg"))
