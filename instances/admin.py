from django.contrib import admin

from orchestrio.admin import AuditedModelAdmin

from .models import InstancePlan, Region


@admin.register(InstancePlan)
class InstancePlanAdmin(AuditedModelAdmin):
    list_display = ["id", "name", "instance_type", "vcpus", "memory_mib", "price_per_hour", "supports_hibernation", "available"]
    list_filter = ["available", "supports_hibernation"]
    search_fields = ["id", "name", "instance_type"]


@admin.register(Region)
class RegionAdmin(AuditedModelAdmin):
    list_display = ["id", "name", "provider", "provider_region", "enabled"]
    list_filter = ["provider", "enabled"]
    search_fields = ["id", "name", "provider_region"]
