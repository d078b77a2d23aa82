"""Admin for support staff: custom domains, with a DNS check through the same service as the API."""

from __future__ import annotations

from django.contrib import admin, messages

from orchestrio.admin import AuditedModelAdmin, staff_actor
from orchestrio.errors import DomainError

from .models import CustomDomain
from .services import domain_check


@admin.register(CustomDomain)
class CustomDomainAdmin(AuditedModelAdmin):
    list_display = ["domain", "instance", "tenant", "status", "attempts", "last_checked_at", "activated_at", "removed_at"]
    list_filter = ["status", ("removed_at", admin.EmptyFieldListFilter)]
    search_fields = ["domain", "instance__instance_id", "tenant__id"]
    list_select_related = ["instance", "tenant"]
    # `status` too: a claim becomes active only by proving the name in DNS (domains.domain_check),
    # which also ends the other tenants' claims on it.
    readonly_fields = ["instance", "tenant", "domain", "status", "verification_token", "resolved", "attempts", "last_checked_at", "next_check_at", "activated_at", "created_at", "updated_at", "removed_at"]
    actions = ["check_now"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Check DNS now")
    def check_now(self, request, queryset):
        for domain in queryset.filter(removed_at__isnull=True):
            try:
                checked = domain_check(domain.pk, actor=staff_actor(request))
                self.message_user(request, f"{checked.domain}: {checked.status} {checked.error}")
            except DomainError as exc:
                self.message_user(request, f"{domain.domain}: {exc.detail}", messages.ERROR)
