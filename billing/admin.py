from django.contrib import admin, messages
from django.db.models import Count, IntegerField, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from instances.models import Instance
from instances.services import tenant_instances_suspend
from orchestrio.admin import AuditedModelAdmin, TenantAdmin, staff_actor
from orchestrio.choices import Role
from orchestrio.errors import DomainError
from orchestrio.models import Membership, Tenant

from . import alerts
from .models import AlertAttempt, AlertConfig, AlertDelivery, StripeEvent, Subscription, UsageCounter


@admin.register(Subscription)
class SubscriptionAdmin(AuditedModelAdmin):
    audit_exclude = ("stripe_customer_id", "stripe_subscription_id")  # billing is for owners and admins
    list_display = ["tenant", "status", "stripe_customer_id", "stripe_subscription_id", "current_period_end", "last_payment_failed_at"]
    list_filter = ["status", "cancel_at_period_end"]
    search_fields = ["tenant__id", "stripe_customer_id", "stripe_subscription_id"]


@admin.register(StripeEvent)
class StripeEventAdmin(admin.ModelAdmin):
    list_display = ["id", "type", "tenant", "received_at", "outcome"]
    list_filter = ["type"]
    search_fields = ["id", "tenant__id", "outcome"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(UsageCounter)
class UsageCounterAdmin(admin.ModelAdmin):
    list_display = ["tenant", "instance", "day", "kind", "count"]
    list_filter = ["kind", "day"]
    search_fields = ["tenant__id", "instance__instance_id"]
    date_hierarchy = "day"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(AlertConfig)
class AlertConfigAdmin(AuditedModelAdmin):
    list_display = ["tenant", "webhook_url", "enabled", "signing_secret_prefix", "updated_at"]
    list_filter = ["enabled"]
    search_fields = ["tenant__id", "webhook_url"]
    fields = ["tenant", "webhook_url", "enabled", "signing_secret_prefix"]  # never the secret
    audit_exclude = ("webhook_url", "signing_secret_prefix")  # alerts are for owners and admins
    readonly_fields = ["tenant", "signing_secret_prefix"]


class AttemptInline(admin.TabularInline):
    model = AlertAttempt
    extra = 0
    can_delete = False
    readonly_fields = ["number", "at", "response_code", "error", "duration_ms"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "tenant", "event", "status", "attempts", "last_response_code", "created_at", "delivered_at"]
    list_filter = ["status", "event"]
    search_fields = ["id", "tenant__id", "url"]
    readonly_fields = [f.name for f in AlertDelivery._meta.fields]
    inlines = [AttemptInline]
    actions = ["redeliver"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Redeliver")
    def redeliver(self, request, queryset):
        for delivery in queryset:
            try:
                copy = alerts.redeliver(delivery=delivery, actor=staff_actor(request))
                self.message_user(request, f"{delivery.pk} → {copy.pk}")
            except DomainError as exc:
                self.message_user(request, f"{delivery.pk}: {exc.detail}", messages.ERROR)


def _count(queryset, field: str = "pk"):
    """One correlated subquery per row's figure (not a JOIN: two JOINed counts multiply each other)."""
    return Coalesce(Subquery(queryset.order_by().values("tenant_id").annotate(n=Count(field)).values("n")[:1], output_field=IntegerField()), 0)


class SupportTenantAdmin(TenantAdmin):
    """What support needs on one line per tenant: who owns it, what it pays for, what it runs and
    uses. Every figure is annotated on the list's queryset (a constant number of queries for any
    page size); it lives here because billing is the layer that may read every app."""

    list_display = ["id", "name", "owner_email", "plan", "subscription_status", "instance_count", "executions_this_month", "created_at"]
    list_filter = ["plan", "subscription__status"]
    search_fields = ["id", "name", "memberships__user__username", "memberships__user__email"]
    actions = ["suspend_instances"]

    def get_queryset(self, request):
        month_start = timezone.now().date().replace(day=1)
        owners = Membership.objects.filter(tenant=OuterRef("pk"), role=Role.OWNER).order_by("created_at", "pk")
        usage = UsageCounter.objects.filter(tenant=OuterRef("pk"), kind="executions", day__gte=month_start).order_by()
        return super().get_queryset(request).annotate(
            owner_email_value=Subquery(owners.values("user__email")[:1]),
            subscription_status_value=Subquery(Subscription.objects.filter(tenant=OuterRef("pk")).values("status")[:1]),
            instance_count_value=_count(Instance.objects.filter(tenant=OuterRef("pk"), destroyed_at__isnull=True)),
            executions_value=Coalesce(Subquery(usage.values("tenant_id").annotate(n=Sum("count")).values("n")[:1]), 0),
        )

    @admin.display(description="Owner", ordering="owner_email_value")
    def owner_email(self, obj):
        return obj.owner_email_value or "—"

    @admin.display(description="Subscription", ordering="subscription_status_value")
    def subscription_status(self, obj):
        return obj.subscription_status_value or "none"

    @admin.display(description="Instances", ordering="instance_count_value")
    def instance_count(self, obj):
        return obj.instance_count_value

    @admin.display(description="Executions this month", ordering="executions_value")
    def executions_this_month(self, obj):
        return obj.executions_value

    @admin.action(description="Suspend the running instances of the selected tenants")
    def suspend_instances(self, request, queryset):
        for tenant in queryset:
            result = tenant_instances_suspend(tenant=tenant, actor=staff_actor(request))
            summary = f"Tenant {tenant.pk}: suspended {len(result['suspended'])} instance(s)"
            if result["skipped"]:
                summary += "; left as they are: " + ", ".join(result["skipped"])
            self.message_user(request, summary + ".", messages.SUCCESS if result["suspended"] else messages.WARNING)


admin.site.unregister(Tenant)
admin.site.register(Tenant, SupportTenantAdmin)
