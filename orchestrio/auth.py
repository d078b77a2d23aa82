"""DRF authentication: `Authorization: Bearer ork_…` tokens, and the console's session.

Both resolve exactly one tenant and set `request.auth` to a `Principal`.
"""

from __future__ import annotations

from django.utils import timezone
from django.utils.functional import SimpleLazyObject
from rest_framework import authentication, exceptions

from . import tokens
from .api.ratelimit import AUTH_FAILURE_DETAIL, RateLimited, auth_failure
from .models import ApiToken, Membership
from .services import api_token_touch
from .tenancy import Principal, client_ip

SESSION_TENANT_KEY = "tenant_id"


class TokenUser:
    """`request.user` for token requests: authenticated, not a person, not staff."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    is_active = True
    pk = None
    id = None

    def __init__(self, token: ApiToken) -> None:
        self.token = token
        self.username = token.prefix

    def get_username(self) -> str:
        return self.username

    def __str__(self) -> str:
        return f"token {self.token.prefix}…"


class ApiTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION")
        if not header:
            return None
        scheme, _, credentials = header.strip().partition(" ")
        credentials = credentials.strip()
        try:
            if scheme.lower() != "bearer" or not credentials or " " in credentials:
                raise exceptions.AuthenticationFailed("malformed Authorization header: expected 'Bearer ork_live_…'")
            token = resolve_token(credentials)
        except exceptions.AuthenticationFailed:
            # Bad credentials count against their source; past its limit, 429 instead of 401.
            throttled = auth_failure(request)
            if throttled is not None:
                raise RateLimited(throttled.reset, AUTH_FAILURE_DETAIL) from None
            raise
        # The token's creator is read only where a request uses it (a token creating a token, the
        # revoke-your-own check, billing's customer email): lazily, as Django's own request.user.
        # Joining it to every token lookup cost 0.15 ms of CPU per request (bench/request_cpu.py).
        user = SimpleLazyObject(lambda: token.created_by) if token.created_by_id is not None else None
        principal = Principal(tenant=token.tenant, role=token.role, user=user, token=token, ip=client_ip(request))
        api_token_touch(token=token)
        return TokenUser(token), principal

    def authenticate_header(self, request) -> str:
        return f'{self.keyword} realm="api"'


def resolve_token(credentials: str, *, with_tenant: bool = True) -> ApiToken:
    """The active ApiToken for a plaintext `ork_` token, or AuthenticationFailed with the reason.
    Shape and checksum are checked first, so junk never costs a database query. Never cached: a
    revoked token fails on its next request. With `with_tenant` the token comes with its tenant
    and the tenant's plan, in the same query; without, alone (the gateway has the instance's
    tenant already)."""
    try:
        tokens.validate(credentials)
    except tokens.TokenFormatError as exc:
        raise exceptions.AuthenticationFailed(str(exc)) from exc
    tokens_by_hash = ApiToken.objects.filter(token_hash=tokens.hash_token(credentials))
    if with_tenant:
        tokens_by_hash = tokens_by_hash.select_related("tenant__plan")
    token = next(iter(tokens_by_hash[:1]), None)  # token_hash is unique: no ORDER BY needed
    if token is None:
        raise exceptions.AuthenticationFailed("unknown token")
    if token.revoked_at is not None:
        raise exceptions.AuthenticationFailed("token has been revoked")
    if token.expires_at is not None and token.expires_at <= timezone.now():
        raise exceptions.AuthenticationFailed(f"token expired at {token.expires_at:%Y-%m-%dT%H:%M:%SZ}")
    return token


class ConsoleSessionAuthentication(authentication.SessionAuthentication):
    """The console's session cookie (CSRF enforced), acting in the user's current tenant."""

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is None:
            return None
        user, _ = result
        membership = membership_for_session(request._request, user)
        if membership is None:
            raise exceptions.PermissionDenied("your account is not a member of any tenant")
        principal = Principal(tenant=membership.tenant, role=membership.role, user=user, ip=client_ip(request))
        return user, principal


def membership_for_session(request, user) -> Membership | None:
    """The membership for the tenant chosen in this session, else the user's first one."""
    memberships = Membership.objects.select_related("tenant", "tenant__plan").filter(user=user)
    chosen = request.session.get(SESSION_TENANT_KEY)
    membership = None
    if chosen:
        membership = memberships.filter(tenant_id=chosen).first()
    if membership is None:
        membership = memberships.order_by("created_at", "id").first()
        if membership is not None:
            request.session[SESSION_TENANT_KEY] = membership.tenant_id
    return membership
