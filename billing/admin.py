from django.contrib import admin

from orchestrio.admin import AuditedModelAdmin

from .models import SubscriptionPlan


@admin.register(SubscriptionPlan)
class SubscriptionPlanAdmin(AuditedModelAdmin):
    list_display = [
        "id", "name", "price_cents_per_month", "max_instances", "max_running_instances",
        "executions_per_month", "api_requests_per_minute", "max_tokens", "is_public",
    ]
    list_filter = ["is_public", "feature_custom_domains", "feature_oidc_gateway"]
    search_fields = ["id", "name", "stripe_price_id"]
