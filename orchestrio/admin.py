"""The Django admin for support staff. Every change a staff user makes here is audited."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.forms.models import model_to_dict

from . import services
from .choices import Role
from .errors import DomainError
from .models import ActivityEvent, ApiToken, Invitation, Membership, SubscriptionPlan, Tenant
from .tenancy import Actor, client_ip

# The browser tab reads "<page> | Orchestrio admin"; the index is where support staff start
# ("Operations" read as the Operation model's list).
admin.site.site_header = "Orchestrio support"
admin.site.site_title = "Orchestrio admin"
admin.site.index_title = "Support dashboard"


def staff_actor(request) -> Actor:
    return Actor.for_staff(request.user, ip=client_ip(request))


def _tenant_of(obj):
    if isinstance(obj, Tenant):
        return obj.pk
    return getattr(obj, "tenant_id", None)


class ViewOnlyAdmin(admin.ModelAdmin):
    """A record support staff read and never add, change or delete here (an audit trail, a
    history): its state changes only through the services."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class AuditedModelAdmin(admin.ModelAdmin):
    """Writes an ActivityEvent (actor type `staff`) for every add, change and delete."""

    # Fields whose values the audit never records, only that they changed: every member of the
    # tenant reads the audit log, so a value only owners and admins may see (or a secret) stays out.
    audit_exclude: tuple[str, ...] = ()

    def _audit(self, request, obj, action: str, data: dict | None = None) -> None:
        services.activity_record(
            actor=staff_actor(request),
            action=f"admin.{obj._meta.model_name}.{action}",
            tenant=_tenant_of(obj),
            object_type=obj._meta.model_name,
            object_id=obj.pk,
            data=data or {},
        )

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        changed = model_to_dict(obj, fields=form.changed_data)
        values = {name: value for name, value in changed.items() if name not in self.audit_exclude}
        self._audit(request, obj, "change" if change else "add", {"fields": sorted(changed), "values": _jsonable(values)})

    def delete_model(self, request, obj):
        self._audit(request, obj, "delete", {"repr": str(obj)})
        super().delete_model(request, obj)

    def save_formset(self, request, form, formset, change):
        super().save_formset(request, form, formset, change)
        for obj in formset.new_objects:
            self._audit(request, obj, "add", {"repr": str(obj)})
        for obj, fields in formset.changed_objects:
            self._audit(request, obj, "change", {"fields": sorted(fields), "repr": str(obj)})
        for obj in formset.deleted_objects:
            self._audit(request, obj, "delete", {"repr": str(obj)})

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self._audit(request, obj, "delete", {"repr": str(obj)})
        super().delete_queryset(request, queryset)


class OwnerEmailSearchMixin:
    """Search also finds the objects of tenants whose owner's email contains the term (support
    is asked "my instance is down" by an email address, not by a tenant id). `owner_tenant_field`
    is the path from the model to its tenant's id."""

    owner_tenant_field = "tenant_id"

    def get_search_results(self, request, queryset, search_term):
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if not term:
            return found, may_have_duplicates
        owned = Membership.objects.filter(role=Role.OWNER, user__email__icontains=term).values("tenant_id")
        return found | queryset.filter(**{f"{self.owner_tenant_field}__in": owned}), may_have_duplicates


def _jsonable(values: dict) -> dict:
    out = {}
    for key, value in values.items():
        if isinstance(value, (str, int, float, bool, type(None), list, dict)):
            out[key] = value
        else:
            out[key] = str(value)
    return out


@admin.register(SubscriptionPlan)
class SubscriptionPlanAdmin(AuditedModelAdmin):
    list_display = [
        "id", "name", "price_cents_per_month", "stripe_price_id", "max_instances", "max_running_instances",
        "executions_per_month", "api_requests_per_minute", "max_tokens", "is_public",
    ]  # fmt: skip
    list_filter = ["is_public", "feature_custom_domains", "feature_oidc_gateway"]
    search_fields = ["id", "name", "stripe_price_id"]


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Tenant)
class TenantAdmin(OwnerEmailSearchMixin, AuditedModelAdmin):
    """The core's tenant admin. billing/admin.py extends it with the columns and actions that need
    the apps above the core (instance count, subscription, usage, suspending instances)."""

    owner_tenant_field = "pk"
    list_display = ["id", "name", "plan", "created_at"]
    list_filter = ["plan"]
    list_select_related = ["plan"]
    search_fields = ["id", "name", "memberships__user__username"]
    readonly_fields = ["created_at", "updated_at"]
    inlines = [MembershipInline]

    def get_readonly_fields(self, request, obj=None):
        # The tenant id is every object's scope and part of URLs: it never changes. The plan of an
        # existing tenant changes through the "Change plan to …" actions (the service audits it).
        return [*self.readonly_fields, "id", "plan"] if obj else self.readonly_fields

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not self.has_change_permission(request):
            return actions
        for plan in SubscriptionPlan.objects.order_by("price_cents_per_month", "id").only("id", "name"):
            name = f"change_plan_to_{plan.pk}"
            actions[name] = (_change_plan_action(plan.pk), name, f"Change plan to {plan.name}")
        return actions


def _change_plan_action(plan_id: str):
    def change_plan(modeladmin, request, queryset):
        changed = 0
        for tenant in queryset:
            if tenant.plan_id == plan_id:
                continue
            try:
                services.tenant_plan_change(tenant=tenant, plan_id=plan_id, actor=staff_actor(request), reason="changed by support")
                changed += 1
            except DomainError as exc:
                modeladmin.message_user(request, f"Tenant {tenant.pk}: {exc.detail}", messages.ERROR)
        modeladmin.message_user(request, f"Moved {changed} tenant(s) to the {plan_id} plan.", messages.SUCCESS)

    return change_plan


@admin.register(Membership)
class MembershipAdmin(AuditedModelAdmin):
    list_display = ["user", "tenant", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__username", "tenant__id"]
    autocomplete_fields = ["user", "tenant"]


@admin.register(Invitation)
class InvitationAdmin(ViewOnlyAdmin):
    """Read-only: support sees who was invited where; the team manages its invitations itself
    (the console's Team page, /api/v1/invitations). Never the token's hash."""

    list_display = ["email", "tenant", "role", "status", "invited_by", "created_at", "expires_at", "accepted_at", "revoked_at"]
    list_filter = ["role", ("accepted_at", admin.EmptyFieldListFilter), ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["email", "tenant__id", "invited_by__username"]
    fields = ["tenant", "email", "role", "invited_by", "created_at", "expires_at", "accepted_at", "accepted_by", "revoked_at"]
    readonly_fields = fields


@admin.register(ApiToken)
class ApiTokenAdmin(AuditedModelAdmin):
    list_display = ["prefix", "name", "tenant", "mode", "role", "instance_id", "created_at", "last_used_at", "expires_at", "revoked_at"]
    list_filter = ["mode", "role", ("revoked_at", admin.EmptyFieldListFilter), "created_at"]
    search_fields = ["prefix", "name", "tenant__id", "instance_id"]
    # Never the hash: tokens are issued through the API, the console or `createtenant --token`.
    fields = ["tenant", "name", "prefix", "mode", "role", "instance_id", "created_by", "created_at", "expires_at", "last_used_at", "revoked_at"]
    readonly_fields = [f for f in fields if f != "name"]
    actions = ["revoke_tokens"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Revoke selected tokens")
    def revoke_tokens(self, request, queryset):
        count = 0
        for token in queryset.filter(revoked_at__isnull=True):
            services.api_token_revoke(token=token, actor=staff_actor(request))
            count += 1
        self.message_user(request, f"Revoked {count} token(s).", messages.SUCCESS)


@admin.register(ActivityEvent)
class ActivityEventAdmin(ViewOnlyAdmin):
    list_display = ["created_at", "tenant", "actor_type", "actor_label", "action", "object_type", "object_id", "ip_address"]
    list_filter = ["actor_type", "object_type", "created_at"]
    search_fields = ["tenant__id", "actor_label", "action", "object_id", "ip_address"]
    date_hierarchy = "created_at"


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class AuditedUserAdmin(AuditedModelAdmin, UserAdmin):
    audit_exclude = ("password",)
    inlines = [type("UserMembershipInline", (MembershipInline,), {"autocomplete_fields": ["tenant"]})]
