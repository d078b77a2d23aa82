from __future__ import annotations

from rest_framework.permissions import BasePermission

from orchestrio.tenancy import Principal


class IsTenantMember(BasePermission):
    """Authenticated in a tenant, with the role the action needs, within a token's instance scope.

    Views declare `action_roles = {"cleanup": ("owner", "admin")}` for role-restricted actions, and
    `allows_scoped_tokens` (True, or a set of action names) where they confine themselves to
    `principal.instance_scope`.
    """

    message = "You are not allowed to do this."

    def has_permission(self, request, view) -> bool:
        principal = request.auth
        if not isinstance(principal, Principal):
            return False
        action = getattr(view, "action", None) or request.method.lower()
        roles = getattr(view, "action_roles", {}).get(action)
        if roles and principal.role not in roles:
            self.message = f"this needs the {' or '.join(roles)} role; you are {principal.role}"
            return False
        allowed = getattr(view, "allows_scoped_tokens", False)
        if principal.instance_scope is not None and not (allowed is True or (allowed and action in allowed)):
            self.message = f"this token is scoped to instance {principal.instance_scope!r} and cannot use this endpoint"
            return False
        return True
