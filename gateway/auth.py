"""Who is calling through the gateway: decided by the instance's policies.

A bearer `ork_` token is checked against `api-key` policies (it must belong to the instance's
tenant and, if scoped, to this instance); a JWT against the OIDC policies; with neither accepted,
an `anonymous` policy lets the call through as subject `anon`. Each policy's allow rules must
then match the caller's claims.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rest_framework.exceptions import AuthenticationFailed

from orchestrio.auth import resolve_token
from orchestrio.services import api_token_touch
from orchestrio.tenancy import client_ip

from . import oidc
from .choices import OIDC_PROVIDERS, GatewayProvider
from .models import GatewayPolicy
from .rules import allowed


@dataclass
class Caller:
    provider: str
    subject: str
    ratelimit_key: str
    claims: dict = field(default_factory=dict)
    policy_id: str | None = None


class GatewayUnauthorized(Exception):
    def __init__(self, reasons: list[str], *, presented: bool) -> None:
        self.reasons = reasons
        # Credentials were sent and refused (a failed attempt, throttled per source), rather
        # than missing.
        self.presented = presented
        super().__init__("; ".join(reasons))


class GatewayNotFound(Exception):
    pass


def _bearer(request) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and not token.startswith("ork_")


def _api_key_caller(token_value: str, instance, policy: GatewayPolicy | None) -> Caller:
    try:
        token = resolve_token(token_value, with_tenant=False)
    except AuthenticationFailed as exc:
        raise GatewayUnauthorized([f"API key rejected: {exc.detail}"], presented=True) from None
    if token.tenant_id != instance.tenant_id or (token.instance_id and token.instance_id != instance.instance_id):
        # Another tenant's (or another instance's) token: the instance does not exist for it.
        raise GatewayNotFound()
    api_token_touch(token=token)
    claims = {"sub": token.prefix, "org_id": token.tenant_id, "token_id": token.pk}
    return Caller(provider=GatewayProvider.API_KEY, subject=token.prefix, ratelimit_key=f"token:{token.pk}", claims=claims, policy_id=policy.pk if policy else None)


def authenticate(request, instance, policies: list[GatewayPolicy], *, implicit_api_key: bool = False) -> Caller:
    """The caller, or GatewayUnauthorized (with reasons) / GatewayNotFound."""
    token = _bearer(request)
    reasons: list[str] = []
    if implicit_api_key:
        # The tunnel of an instance without catch-all policies: the tenant's API tokens, no rules.
        if token is None:
            raise GatewayUnauthorized(["this instance's tunnel needs an API token of its tenant (Authorization: Bearer ork_…)"], presented=False)
        if not token.startswith("ork_"):
            raise GatewayUnauthorized(["this instance has no catch-all gateway policy: only its tenant's API tokens are accepted"], presented=True)
        return _api_key_caller(token, instance, None)

    if token is not None and token.startswith("ork_"):
        for policy in (p for p in policies if p.provider == GatewayProvider.API_KEY):
            caller = _api_key_caller(token, instance, policy)
            if allowed(policy.allow, caller.claims):
                return caller
            reasons.append(f"API key {caller.subject}… is not allowed by policy {policy.pk}'s rules")
        if not any(p.provider == GatewayProvider.API_KEY for p in policies):
            reasons.append("no api-key policy accepts Orchestrio API keys here")
    elif token is not None and _looks_like_jwt(token):
        oidc_policies = [p for p in policies if p.provider in OIDC_PROVIDERS]
        for policy in oidc_policies:
            try:
                issuer = oidc.expected_issuer(policy.provider, policy.issuer, policy.config)
                claims = oidc.verify(token, issuer=issuer, audience=policy.audience)
            except oidc.OIDCError as exc:
                reasons.append(f"OIDC token rejected by policy {policy.pk} ({policy.provider}): {exc}")
                continue
            if allowed(policy.allow, claims):
                subject = str(claims.get("sub", ""))
                return Caller(provider=policy.provider, subject=subject, ratelimit_key=f"oidc:{issuer}:{subject}", claims=claims, policy_id=policy.pk)
            reasons.append(f"OIDC token of {claims.get('sub')!r} is not allowed by policy {policy.pk}'s rules")
        if not oidc_policies:
            reasons.append("no OIDC policy accepts tokens here")
    elif token is not None:
        reasons.append("the bearer token is neither an Orchestrio API key nor a JWT")

    anonymous = next((p for p in policies if p.provider == GatewayProvider.ANONYMOUS), None)
    if anonymous is not None:
        return Caller(provider=GatewayProvider.ANONYMOUS, subject="anon", ratelimit_key=f"ip:{client_ip(request)}", policy_id=anonymous.pk)
    if token is None:
        providers = ", ".join(sorted({p.provider for p in policies}))
        reasons.append(f"missing credentials: send Authorization: Bearer <token> accepted by {providers}")
    raise GatewayUnauthorized(reasons, presented=token is not None)
