from django import forms
from django.contrib import admin

from orchestrio.admin import AuditedModelAdmin

from .models import GatewayPolicy
from .services import FIELDS, validate_policy


class GatewayPolicyAdminForm(forms.ModelForm):
    class Meta:
        model = GatewayPolicy
        fields = ["slug", *[f for f in FIELDS if f != "slug"]]

    def clean(self):
        cleaned = super().clean()
        data = {field: cleaned.get(field) for field in FIELDS}
        data["slug"] = data["slug"] or None
        issues = validate_policy(data=data)
        if issues:
            raise forms.ValidationError([f"{'.'.join(str(p) for p in issue['loc'][1:])}: {issue['msg']}" for issue in issues])
        cleaned["slug"] = data["slug"]
        return cleaned


@admin.register(GatewayPolicy)
class GatewayPolicyAdmin(AuditedModelAdmin):
    form = GatewayPolicyAdminForm
    list_display = ["id", "instance", "tenant", "slug", "provider", "audience", "enabled", "created_at"]
    list_filter = ["provider", "enabled", "tenant"]
    search_fields = ["id", "instance__instance_id", "tenant__id", "slug", "audience", "issuer"]
    list_select_related = ["instance", "tenant"]
    readonly_fields = ["id", "instance", "tenant", "created_at", "updated_at"]

    def has_add_permission(self, request):
        return False  # policies belong to an instance: created through the API or the console
