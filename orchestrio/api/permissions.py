from __future__ import annotations

from rest_framework.permissions import BasePermission

from orchestrio import roles
from orchestrio.tenancy import Principal


class IsTenantMember(BasePermission):
    """Authenticated in a tenant, with a role that holds the capability the action needs
    (`capabilities` on the view, see orchestrio/roles.py), within a token's instance scope.

    Views declare `allows_scoped_tokens` (True, or a set of action names) where they confine
    themselves to `principal.instance_scope`.
    """

    message = "You are not allowed to do this."

    def has_permission(self, request, view) -> bool:
        principal = request.auth
        if not isinstance(principal, Principal):
            return False
        action = getattr(view, "action", None)
        capability = roles.needed_by_view(view, action, request.method)
        if not roles.allows(principal.role, capability):
            # Another tenant's (or no) object is 404 before it is 403: the refusal must not be
            # the first thing a caller learns about an id that is not theirs.
            lookup = getattr(view, "check_route_objects", None)  # (ApiViewMixin's; every API view has it)
            if lookup is not None:
                lookup()
            roles.require(principal, capability)
        allowed = getattr(view, "allows_scoped_tokens", False)
        action = action or request.method.lower()
        if principal.instance_scope is not None and not (allowed is True or (allowed and action in allowed)):
            self.message = f"this token is scoped to instance {principal.instance_scope!r} and cannot use this endpoint"
            return False
        return True
