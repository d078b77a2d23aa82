"""State changes for gateway policies, with their validation rules in one place."""

from __future__ import annotations

import re
from typing import Any

from django.db import IntegrityError, transaction

from instances.models import Instance
from orchestrio import roles
from orchestrio.errors import Conflict, Unauthorized, ValidationFailed
from orchestrio.limits import limit_check
from orchestrio.services import activity_record
from orchestrio.tenancy import Actor, Principal

from . import grants
from .choices import OIDC_PROVIDERS, GatewayProvider
from .models import GatewayPolicy
from .oidc import OIDCError, check_issuer_url, expected_issuer
from .rules import pinning_warnings, validate_allow

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$", re.IGNORECASE)
CONFIG_RULES: dict[str, dict[str, tuple[re.Pattern, bool, str]]] = {
    # provider: {key: (pattern, required, description)}
    GatewayProvider.AZURE: {"tenant": (re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,253}$"), True, "the Azure AD tenant id or domain")},
    GatewayProvider.CIRCLECI: {"org_id": (re.compile(r"^[0-9a-fA-F-]{36}$"), True, "the CircleCI organization id (a UUID)")},
    GatewayProvider.TERRAFORM: {"hostname": (HOSTNAME_RE, False, "the Terraform Enterprise hostname (default app.terraform.io)")},
    GatewayProvider.BITBUCKET: {"workspace": (re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"), True, "the Bitbucket workspace slug")},
}
FIELDS = ("slug", "provider", "audience", "issuer", "allow", "config", "enabled")


def _issue(field: str, message: str, kind: str = "value_error", *extra) -> dict:
    return {"loc": ["body", field, *extra], "msg": message, "type": kind}


def validate_policy(*, data: dict[str, Any]) -> list[dict]:
    """Every problem with a policy's fields, as 422 issues (empty when valid)."""
    issues = []
    provider = data.get("provider")
    if provider not in GatewayProvider.values:
        return [_issue("provider", f"provider must be one of {', '.join(GatewayProvider.values)}")]
    slug = data.get("slug")
    if slug is not None and (not isinstance(slug, str) or not SLUG_RE.match(slug)):
        issues.append(_issue("slug", "slug is 1–63 lowercase letters, digits and '-' (starting with a letter or digit), or null for the catch-all"))
    config = data.get("config") or {}
    if not isinstance(config, dict):
        issues.append(_issue("config", "the config must be a JSON object"))
        config = {}
    rules = CONFIG_RULES.get(provider, {})
    for key in config:
        if key not in rules:
            allowed = ", ".join(rules) or "none"
            issues.append(_issue("config", f"{_a_policy(provider)} has no config key {key!r} (it takes: {allowed})", "value_error", key))
    for key, (pattern, required, description) in rules.items():
        value = config.get(key)
        if value in (None, ""):
            if required:
                issues.append(_issue("config", f"{_a_policy(provider)} needs config.{key}: {description}", "missing", key))
        elif not isinstance(value, str) or not pattern.match(value):
            issues.append(_issue("config", f"config.{key} must be {description}", "value_error", key))
    audience = data.get("audience") or ""
    issuer = data.get("issuer") or ""
    if provider in OIDC_PROVIDERS:
        if not audience:
            issues.append(_issue("audience", f"{_a_policy(provider)} needs an audience: the `aud` its tokens are issued for", "missing"))
        if provider == GatewayProvider.OIDC and not issuer:
            issues.append(_issue("issuer", "a Generic OIDC policy needs an issuer: the URL its tokens name in `iss`", "missing"))
        if issuer:
            problem = check_issuer_url(issuer)
            if problem:
                issues.append(_issue("issuer", problem))
        elif provider == GatewayProvider.TERRAFORM and isinstance(config.get("hostname"), str) and HOSTNAME_RE.match(config["hostname"]):
            # The tenant names the issuer's host here: the same rules as an issuer URL.
            problem = check_issuer_url(expected_issuer(provider, "", config))
            if problem:
                issues.append(_issue("config", problem, "value_error", "hostname"))
    else:
        if audience:
            issues.append(_issue("audience", f"{_a_policy(provider)} takes no audience (only OIDC policies do): leave it empty"))
        if issuer:
            issues.append(_issue("issuer", f"{_a_policy(provider)} takes no issuer (only OIDC policies do): leave it empty"))
    for problem in validate_allow(data.get("allow", [])):
        issues.append(_issue("allow", problem))
    if provider == GatewayProvider.ANONYMOUS and data.get("allow"):
        issues.append(_issue("allow", "anonymous callers have no claims: allow rules would refuse everyone"))
    return issues


def policy_warnings(*, policy: GatewayPolicy) -> list[str]:
    warnings = pinning_warnings(policy.provider, policy.allow)
    if policy.provider == GatewayProvider.ANONYMOUS:
        target = f"/gateway/{policy.instance.instance_id}/{policy.slug}" if policy.slug else f"the whole tunnel of {policy.instance.instance_id}"
        warnings.append(f"anyone on the internet can call {target}; the instance must check what it receives (e.g. a webhook signature)")
    return warnings


def policy_is_public(*, policy: dict[str, Any]) -> bool:
    """Whether an (enabled) policy lets anyone on the internet through: `anonymous`, or an OIDC
    policy whose rules pin no caller (anyone who can get a token from that issuer passes)."""
    if not policy.get("enabled", True):
        return False
    return policy["provider"] == GatewayProvider.ANONYMOUS or bool(pinning_warnings(policy["provider"], policy.get("allow") or []))


def _a_policy(provider: str) -> str:
    """'an anonymous policy', 'a GitHub Actions OIDC policy': the provider as a person reads it."""
    if provider == GatewayProvider.ANONYMOUS:
        label = "anonymous"
    else:
        label = GatewayProvider(provider).label if provider in GatewayProvider.values else provider
    return f"{'an' if label[:1].lower() in 'aeiou' else 'a'} {label} policy"


def _clash(instance_id: str, provider: str, slug: str | None) -> Conflict:
    where = f"the endpoint {slug!r}" if slug else "the catch-all"
    return Conflict(f"{instance_id} already has {_a_policy(provider)} for {where}; edit that one instead")


def _check_exposure(principal: Principal, policy: dict[str, Any]) -> None:
    """Making an instance public is the `expose` capability; any other policy is `operate`
    (checked by the API and console declarations)."""
    if policy_is_public(policy=policy):
        roles.require(principal, roles.EXPOSE)


def _check_plan(instance: Instance, provider: str) -> None:
    if provider in OIDC_PROVIDERS:
        limit_check(tenant=instance.tenant, limit="oidc_gateway")


def _normalise(data: dict) -> dict:
    data = {key: data[key] for key in FIELDS if key in data}
    if data.get("slug") == "":
        data["slug"] = None
    if "issuer" in data and data["issuer"]:
        data["issuer"] = data["issuer"].rstrip("/")
    return data


@transaction.atomic
def policy_create(*, instance: Instance, principal: Principal, data: dict) -> GatewayPolicy:
    actor = principal.actor
    data = {"slug": None, "audience": "", "issuer": "", "allow": [], "config": {}, "enabled": True, **_normalise(data)}
    issues = validate_policy(data=data)
    if issues:
        raise ValidationFailed(issues)
    _check_exposure(principal, data)
    _check_plan(instance, data["provider"])
    if GatewayPolicy.objects.filter(instance=instance, slug=data["slug"], provider=data["provider"]).exists():
        raise _clash(instance.instance_id, data["provider"], data["slug"])
    policy = GatewayPolicy(instance=instance, tenant_id=instance.tenant_id, **data)
    try:
        with transaction.atomic():
            policy.save(force_insert=True)
    except IntegrityError as exc:
        raise _clash(instance.instance_id, data["provider"], data["slug"]) from exc
    activity_record(
        actor=actor, action="gateway_policy.create", tenant=instance.tenant_id, object_type="gateway_policy", object_id=policy.pk,
        data={"instance_id": instance.instance_id, "slug": policy.slug, "provider": policy.provider, "enabled": policy.enabled},
    )  # fmt: skip
    return policy


@transaction.atomic
def policy_update(*, policy: GatewayPolicy, principal: Principal, data: dict) -> GatewayPolicy:
    actor = principal.actor
    locked = GatewayPolicy.objects.select_for_update(of=("self",)).select_related("instance__tenant__plan").get(pk=policy.pk)
    changes = _normalise(data)
    merged = {field: getattr(locked, field) for field in FIELDS}
    merged.update(changes)
    issues = validate_policy(data=merged)
    if issues:
        raise ValidationFailed(issues)
    _check_exposure(principal, merged)  # a change that leaves (or makes) the policy public
    if "provider" in changes:
        _check_plan(locked.instance, merged["provider"])
    clash = GatewayPolicy.objects.filter(instance=locked.instance, slug=merged["slug"], provider=merged["provider"]).exclude(pk=locked.pk)
    if clash.exists():
        raise _clash(locked.instance.instance_id, merged["provider"], merged["slug"])
    changed = [field for field in FIELDS if getattr(locked, field) != merged[field]]
    for field in changed:
        setattr(locked, field, merged[field])
    if changed:
        locked.save(update_fields=[*changed, "updated_at"])
        activity_record(actor=actor, action="gateway_policy.update", tenant=locked.tenant_id, object_type="gateway_policy", object_id=locked.pk, data={"fields": changed})
    return locked


@transaction.atomic
def policy_delete(*, policy: GatewayPolicy, actor: Actor) -> None:
    activity_record(actor=actor, action="gateway_policy.delete", tenant=policy.tenant_id, object_type="gateway_policy", object_id=policy.pk, data={"slug": policy.slug, "provider": policy.provider})
    policy.delete()


def policy_issuer(*, policy: GatewayPolicy) -> str | None:
    if policy.provider not in OIDC_PROVIDERS:
        return None
    try:
        return expected_issuer(policy.provider, policy.issuer, policy.config)
    except OIDCError:
        return None


def open_grant_mint(*, instance: Instance, actor: Actor) -> str:
    """A single-use grant, valid a minute, for `actor`'s user to open `instance`'s own host from
    the console (gateway/grants.py); audited as `instance.open`."""
    if actor.user is None:
        raise Unauthorized("only a person logged in to the console can open an instance in the browser", challenge=grants.CHALLENGE)
    value = grants.grant_value(instance=instance, user_id=actor.user.pk)
    activity_record(actor=actor, action="instance.open", tenant=instance.tenant_id, object_type="instance", object_id=instance.instance_id)
    return value
