"""The console's account pages (server-rendered), and JSON fallbacks for unknown API routes."""

from __future__ import annotations

import sys
from functools import wraps

from django.contrib import messages
from django.conf import settings
from django.contrib.auth import get_user_model, login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, HttpResponsePermanentRedirect, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.templatetags.static import static
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import roles, selectors, services
from .api import ratelimit
from .api.ratelimit import Counter, Usage
from .auth import SESSION_TENANT_KEY, membership_for_session
from .api.exceptions import domain_error_response
from .errors import DomainError, Forbidden, NotFound, PlanLimitReached
from .forms import errors_to_form
from .forms import ApiTokenForm, InvitationForm, InvitationSignupForm, LoginForm, MemberRoleForm, SignupForm
from .http import carries_secret
from .middleware import is_api_path, unavailable_response
from .choices import Role
from .filtersets import ActivityEventFilterSet
from .models import Membership
from .tenancy import Actor, Principal, client_ip


def console_view(view=None, *, capabilities: roles.Declaration = None, objects=None, section: str | None = None):
    """Login required; sets `request.principal` for the user's current tenant; and the role
    check of orchestrio/roles.py, as the API's: `capabilities` is the one a page needs (or, by
    HTTP method, `{"POST": "destroy"}`), by default `read` for GET and `operate` for POST.

    `objects(request, **url_kwargs)` looks up what the URL names (Http404 when it is not the
    tenant's): a refusal calls it first, so another tenant's object is 404, never 403. A view
    whose capability depends on its input calls `roles.require` itself, after its lookup; a
    Forbidden that leaves the view is answered like the decorator's own refusal.

    `section` is the sidebar item the page belongs to (a URL name of `context_processors.NAV`)
    when its address is under none of them (a task's page is an instance's: "instances:list").
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
            if section is not None:
                request.console_section = section
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
    """A service's refusal as the next page's error message; a plan limit's carries the tag that
    makes base.html add the upgrade link (templates/console/_plan_limit.html)."""
    detail = exc.detail if isinstance(exc.detail, str) else str(exc)
    messages.error(request, detail, extra_tags=PLAN_LIMIT_TAG if isinstance(exc, PlanLimitReached) else "")


PLAN_LIMIT_TAG = "plan-limit"


@console_view
def home(request):
    return render(request, "console/home.html", _overview(request))


def _overview(request) -> dict:
    tenant = request.principal.tenant
    return {
        "usage": selectors.tenant_usage(tenant=tenant),
        "limits": tenant.plan.limits,
        "recent_activity": selectors.activity_with_links(principal=request.principal, events=selectors.activity_list(tenant=tenant)[:10]),
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
    # A scoped token's instance, linked while it is live.
    page.object_list = selectors.object_refs_with_links(principal=principal, items=page.object_list, refs=lambda token: [("instance", token.instance_id)])
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


ACTIVITY_HIDDEN_FILTERS = ("object_type", "object_id", "actor_type")


@console_view
def activity(request):
    """The audit log, searched and filtered by the API's filters (orchestrio/filtersets.py) as GET
    parameters that the pagination links keep; a bad value is the form's error, and no entries."""
    principal = request.principal
    filterset = ActivityEventFilterSet(request.GET or None, queryset=selectors.activity_list(tenant=principal.tenant))
    valid = filterset.is_valid() if filterset.is_bound else True
    queryset = filterset.qs if valid else filterset.queryset.none()
    page = Paginator(queryset, 50).get_page(request.GET.get("page"))
    page.object_list = selectors.activity_with_links(principal=principal, events=page.object_list)
    filtered = filterset.is_bound and any(request.GET.get(name) for name in filterset.filters)
    form = filterset.form
    # The API's filters that the form does not show (a link from elsewhere may carry them).
    hidden = [{"name": name, "value": request.GET[name]} for name in ACTIVITY_HIDDEN_FILTERS if request.GET.get(name)]
    hidden_errors = [(form.fields[name].label or name, form.errors[name]) for name in ACTIVITY_HIDDEN_FILTERS if name in form.errors] if not valid else []
    context = {
        "page": page,
        "filter_form": form,
        "filtered": filtered,
        "hidden": hidden,
        "hidden_errors": hidden_errors,
        "actions": selectors.activity_actions(tenant=principal.tenant),
    }
    return render(request, "console/activity.html", context, status=200 if valid else 400)


def _member(request, member_pk: int):
    return get_object_or_404(selectors.member_list(tenant=request.principal.tenant), pk=member_pk)


def _invitation(request, invitation_pk: int):
    return get_object_or_404(selectors.invitation_list(tenant=request.principal.tenant), pk=invitation_pk)


@require_http_methods(["GET", "POST"])
@console_view(capabilities={"POST": "members"})
def team(request):
    """Members with their roles; for admins and owners the invite form and pending invitations."""
    principal = request.principal
    can_grant_owner = roles.allows(principal.role, roles.OWNERS)
    form = InvitationForm(request.POST or None, can_grant_owner=can_grant_owner)
    created = None
    if request.method == "POST" and form.is_valid():
        try:
            invitation, url = services.invitation_create(principal=principal, **form.cleaned_data)
        except DomainError as exc:
            errors_to_form(form, exc)
        else:
            created = {"invitation": invitation, "url": url}
            form = InvitationForm(can_grant_owner=can_grant_owner)
    context = {
        "members": selectors.member_list(tenant=principal.tenant),
        "invitations": selectors.invitation_pending_list(tenant=principal.tenant) if roles.allows(principal.role, roles.MEMBERS) else [],
        "form": form,
        "created": created,
        "roles": Role.choices,
        "dev_mail": settings.EMAIL_BACKEND.endswith(("console.EmailBackend", "locmem.EmailBackend")),
    }
    response = render(request, "console/team.html", context, status=422 if request.method == "POST" and created is None else 200)
    return carries_secret(response) if created else response


@require_POST
@console_view(capabilities="members", objects=_member)
def team_member_role(request, member_pk: int):
    membership = _member(request, member_pk)
    form = MemberRoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose owner, admin or member.")
        return redirect("console:team")
    try:
        services.member_role_change(membership=membership, role=form.cleaned_data["role"], principal=request.principal)
    except DomainError as exc:
        domain_error_message(request, exc)
    else:
        messages.success(request, f"{membership.user.get_username()} is now {form.cleaned_data['role']}.")
    return redirect("console:team")


@require_POST
@console_view(capabilities="members", objects=_member)
def team_member_remove(request, member_pk: int):
    membership = _member(request, member_pk)
    try:
        services.member_remove(membership=membership, principal=request.principal)
    except DomainError as exc:
        domain_error_message(request, exc)
        return redirect("console:team")
    messages.success(request, f"{membership.user.get_username()} was removed from the team; their API tokens here are revoked.")
    if membership.user_id == request.user.pk:
        request.session.pop(SESSION_TENANT_KEY, None)
        return redirect("console:account")
    return redirect("console:team")


@require_POST
@console_view(capabilities="members", objects=_invitation)
def team_invitation_revoke(request, invitation_pk: int):
    invitation = _invitation(request, invitation_pk)
    try:
        services.invitation_revoke(invitation=invitation, principal=request.principal)
    except DomainError as exc:
        domain_error_message(request, exc)
    else:
        messages.success(request, f"The invitation for {invitation.email} is revoked; its link no longer works.")
    return redirect("console:team")


INVITATION_SESSION_KEY = "invitation_token"


@require_http_methods(["GET"])
def invitation_link(request, token: str):
    """The link of the mail: the token moves into the session and the browser on to /invitation,
    so that the secret is not in the URL of the page that answers 4xx (Django logs those paths),
    nor in its Referer, nor in what the page links to. An unknown token is 404 here."""
    if selectors.invitation_by_token(token=token) is None:
        raise Http404("no such invitation")
    request.session[INVITATION_SESSION_KEY] = token
    return redirect("console:invitation")


@require_http_methods(["GET", "POST"])
def invitation(request):
    """The invitation the session's link opened. Accepting needs the invited email's account:
    logged in as it (Join), or, when no account has that email yet, signing up with it here. A
    login keeps the session's data, so "log in to join" comes back here with the invitation."""
    token = request.session.get(INVITATION_SESSION_KEY, "")
    found = selectors.invitation_by_token(token=token)
    if found is None:
        return render(request, "console/invitation.html", {"invitation": None}, status=404)
    user = request.user if request.user.is_authenticated else None
    has_account = get_user_model().objects.filter(username__iexact=found.email).exists()
    form = InvitationSignupForm(request.POST or None, email=found.email) if user is None and not has_account else None
    error, error_status = None, 400
    if request.method == "POST" and found.status == "pending":
        if user is None and (usage := _console_auth_limited(request, per_username=False)):
            return _too_many_attempts(request, "console/invitation.html", form, usage)
        try:
            if user is not None:
                membership = services.invitation_accept(token=token, user=user, ip=client_ip(request))
            elif form is not None and form.is_valid():
                membership = services.invitation_accept_signup(token=token, password=form.cleaned_data["password"], ip=client_ip(request))
                login(request, membership.user, backend="orchestrio.backends.EmailBackend")
            else:
                membership = None
        except DomainError as exc:
            error, error_status = (exc.detail if isinstance(exc.detail, str) else str(exc)), exc.status_code
        else:
            if membership is not None:
                request.session.pop(INVITATION_SESSION_KEY, None)
                request.session[SESSION_TENANT_KEY] = membership.tenant_id
                messages.success(request, f"Welcome to {membership.tenant.name}: you are a {membership.role} here.")
                return redirect("console:home")
    context = {
        "invitation": found,
        "invited_user": user,
        "email_matches": user is not None and user.get_username().lower() == found.email,
        "has_account": has_account,
        "form": form,
        "error": error,
    }
    status = 200 if found.status == "pending" else 410
    if request.method == "POST" and status == 200:
        status = 422 if error is None else error_status
    return render(request, "console/invitation.html", context, status=status)


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


# --- notifications (docs/notifications.md) ---------------------------------------------------------

NOTIFICATIONS_PER_PAGE = 50


@require_GET
@console_view
def notifications(request):
    """The reader's notifications, newest first, 50 a page, each linking to its object while that
    still exists; `?unread=1` shows only the unread. Mark one, or all, read (POST forms)."""
    return render(request, "console/notifications.html", _notifications_context(request))


def _notifications_context(request) -> dict:
    principal = request.principal
    feed = selectors.notification_list(principal=principal)
    unread_only = request.GET.get("unread") == "1"
    page = Paginator(feed.filter(read_at__isnull=True) if unread_only else feed, NOTIFICATIONS_PER_PAGE).get_page(request.GET.get("page"))
    page.object_list = selectors.notification_with_links(principal=principal, notifications=page.object_list)
    query = request.GET.urlencode()
    # Where the page's forms send the reader back: the page itself, also from its live fragment.
    next_url = reverse("console:notifications") + (f"?{query}" if query else "")
    return {"page": page, "unread_only": unread_only, "next_url": next_url}


@require_GET
@console_view
def notifications_live(request):
    """The list alone, for static/console/live.js (the same template the page includes)."""
    return render(request, "console/_notifications_table.html", _notifications_context(request))


@require_GET
@console_view
def notifications_bell(request):
    """The top bar's bell, for static/console/live.js: one COUNT beyond the session's own reads."""
    return render(request, "console/_bell.html", {"unread": selectors.notification_unread_count(principal=request.principal)})


def _back_to_notifications(request) -> HttpResponseRedirect:
    """Back where the form was (its page of the list), never off the site."""
    target = request.POST.get("next") or ""
    if not (target.startswith(reverse("console:notifications")) and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()})):
        target = reverse("console:notifications")
    return HttpResponseRedirect(target)


@require_POST
@console_view(capabilities={"POST": "read"})
def notification_read(request, notification_pk: int):
    notification = get_object_or_404(selectors.notification_list(principal=request.principal), pk=notification_pk)
    services.notification_mark_read(notification=notification)
    return _back_to_notifications(request)


@require_POST
@console_view(capabilities={"POST": "read"})
def notifications_read_all(request):
    marked = services.notification_mark_all_read(principal=request.principal)
    messages.success(request, f"Marked {marked} notification{'' if marked == 1 else 's'} read." if marked else "Nothing was unread.")
    return _back_to_notifications(request)
