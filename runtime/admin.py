"""Support staff's side: the model catalogue (plan data, editable), and each instance's consent
with its conversations, readable here only while the tenant's consent is on; every read is
audited and shown to the tenant in its activity (docs/agent.md)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from orchestrio.admin import AuditedModelAdmin, staff_actor
from orchestrio.errors import DomainError

from . import services
from .models import AgentUsage, InstanceRuntime, LanguageModel


@admin.register(LanguageModel)
class LanguageModelAdmin(AuditedModelAdmin):
    """Plan data: staff edit prices and availability here (audited, as plans are)."""

    list_display = ["id", "name", "price_in_per_1k", "price_out_per_1k", "available", "sort_order"]
    list_editable = ["price_in_per_1k", "price_out_per_1k", "available", "sort_order"]


@admin.register(AgentUsage)
class AgentUsageAdmin(admin.ModelAdmin):
    list_display = ["instance", "tenant", "day", "model", "requests", "tokens_in", "tokens_out", "end_users"]
    list_select_related = ["instance"]
    list_filter = ["day", "model"]
    search_fields = ["instance__instance_id", "tenant__id"]
    fields = list_display
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(InstanceRuntime)
class InstanceRuntimeAdmin(admin.ModelAdmin):
    """Read-only: the consent is the tenant's to give (API, console)."""

    list_display = ["instance", "tenant", "debug_access", "debug_access_changed_at", "debug_access_changed_by", "conversations_link"]
    list_select_related = ["instance"]
    list_filter = ["debug_access"]
    search_fields = ["instance__instance_id", "instance__tenant__id"]
    fields = ["instance", "debug_access", "debug_access_changed_at", "debug_access_changed_by"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="tenant")
    def tenant(self, obj):
        return obj.instance.tenant_id

    @admin.display(description="conversations")
    def conversations_link(self, obj):
        if not obj.debug_access:
            return "consent off"
        return format_html('<a href="{}">read (audited)</a>', reverse("admin:runtime_conversations", args=[obj.pk]))

    def get_urls(self):
        return [
            path("<int:pk>/conversations/", self.admin_site.admin_view(self.conversations_view), name="runtime_conversations"),
            path("<int:pk>/conversations/<str:cid>/", self.admin_site.admin_view(self.conversations_view), name="runtime_conversation"),
            *super().get_urls(),
        ]

    def conversations_view(self, request, pk: int, cid: str | None = None):
        row = get_object_or_404(InstanceRuntime.objects.select_related("instance"), pk=pk)
        if not self.has_view_permission(request, row):
            return redirect("admin:index")
        try:
            body = services.conversations_read(instance=row.instance, conversation_id=cid, limit=100, staff=staff_actor(request))
        except DomainError as exc:
            messages.error(request, exc.detail)
            return redirect("admin:runtime_instanceruntime_changelist")
        context = {
            **self.admin_site.each_context(request), "title": f"Conversations of {row.instance.instance_id}", "row": row,
            "conversation": body if cid else None, "conversations": None if cid else body["results"], "opts": self.model._meta,
        }  # fmt: skip
        return TemplateResponse(request, "admin/runtime/conversations.html", context)
