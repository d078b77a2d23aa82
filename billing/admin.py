from django.contrib import admin, messages

from orchestrio.admin import AuditedModelAdmin, staff_actor
from orchestrio.errors import DomainError

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
