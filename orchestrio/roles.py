"""What each role in a tenant may do: the one home of the role matrix (docs/roles.md).

Every API action and console page declares the *capability* it needs; this module says which
roles hold each capability, and `require` is the one check. Declarations sit beside the code
they guard:

- API views: `capabilities = {"destroy": "destroy", "custom_domain": {"POST": "expose"}}`, keyed
  by the viewset action (or, for a plain APIView, the lower-case method name); a value is a
  capability for every method of the action, or a mapping from the HTTP method to one. What is
  not declared needs `read` for safe methods and `operate` for any other: a new write is never
  open to fewer roles than `operate` by accident, and never needs a declaration to be safe.
- Console views: `@console_view(capabilities=…)`, the same shape keyed by HTTP method.
- Where the body or the object decides (an anonymous gateway policy is `expose`; revoking
  someone else's token is `tokens`), the service calls `require` with the same capabilities.

Roles are ordered member < admin < owner and each holds everything the one below holds. Token
scope (an instance-scoped token) is a separate dimension, checked by the API permission.
"""

from __future__ import annotations

from collections.abc import Mapping

from .choices import Role
from .errors import Forbidden

READ = "read"
OPERATE = "operate"
DESTROY = "destroy"
EXPOSE = "expose"
TOKENS = "tokens"
BILLING = "billing"
ALERTS = "alerts"
DEBUG = "debug"
MEMBERS = "members"
OWNERS = "owners"
TENANT = "tenant"

_EVERYONE = (Role.OWNER, Role.ADMIN, Role.MEMBER)
_ADMINS = (Role.OWNER, Role.ADMIN)
_OWNERS = (Role.OWNER,)

# capability: (the roles that hold it, what it covers — the 403's detail names both)
CAPABILITIES: dict[str, tuple[tuple[str, ...], str]] = {
    READ: (_EVERYONE, "reading the tenant's objects"),
    OPERATE: (_EVERYONE, "operating instances (lifecycle, resize, config, tasks, non-public gateway policies, deployments)"),
    DESTROY: (_ADMINS, "destroying (instances, deployments, blueprints, gateway policies, custom domains, cleanup)"),
    EXPOSE: (_ADMINS, "exposing an instance publicly (anonymous or unpinned OIDC gateway policies, custom domains)"),
    TOKENS: (_ADMINS, "managing credentials (other people's API tokens, an instance's agent key, add-on connection URLs and passwords)"),
    BILLING: (_ADMINS, "billing (Stripe checkout and portal)"),
    ALERTS: (_ADMINS, "alert webhooks (their URL, secret and deliveries)"),
    DEBUG: (_ADMINS, "debug access to an instance's conversations (granting or revoking consent, reading them)"),
    MEMBERS: (_ADMINS, "managing the team (inviting people, changing members' roles, removing members)"),
    OWNERS: (_OWNERS, "granting, changing or removing the owner role"),
    TENANT: (_OWNERS, "managing the tenant itself"),
}

Declaration = str | Mapping[str, str] | None
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def roles_for(capability: str) -> tuple[str, ...]:
    try:
        return CAPABILITIES[capability][0]
    except KeyError:
        raise ValueError(f"unknown capability {capability!r}; known: {', '.join(CAPABILITIES)}") from None


def allows(role: str, capability: str) -> bool:
    return role in roles_for(capability)


def require(principal, capability: str) -> None:
    """Raise Forbidden (403) unless the principal's role holds `capability`."""
    if not allows(principal.role, capability):
        roles, covers = CAPABILITIES[capability]
        raise Forbidden(f"{covers} needs the {' or '.join(roles)} role; you are {principal.role}")


def held_by(role: str | None) -> dict[str, bool]:
    """Every capability → whether `role` holds it (the console's templates show what you may do)."""
    return {name: role in roles for name, (roles, _) in CAPABILITIES.items()}


def needed(declaration: Declaration, method: str) -> str:
    """The capability a request with `method` needs under `declaration` (see the module's doc)."""
    method = method.upper()
    if isinstance(declaration, Mapping):
        # HEAD runs the GET handler (Django, DRF), so it needs what GET needs.
        declaration = declaration.get(method, declaration.get("GET") if method == "HEAD" else None)
    if declaration is None:
        return READ if method in SAFE_METHODS else OPERATE
    roles_for(declaration)  # an unknown name is a bug, found the first time the route is used
    return declaration


def needed_by_view(view, action: str | None, method: str) -> str:
    """The capability an API view (class or instance) declares for `action` with `method`."""
    declarations = getattr(view, "capabilities", {})
    key = action or method.lower()
    if key == "head" and key not in declarations:
        key = "get"  # a plain APIView answers HEAD with its `get`
    return needed(declarations.get(key), method)
