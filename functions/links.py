"""The console pages of functions that the audit log names (orchestrio/hooks.py `object_links`)."""

from __future__ import annotations

from django.urls import reverse

from .models import Function


def function_links(*, principal, ids) -> dict[str, str]:
    found = Function.objects.filter(tenant=principal.tenant, function_id__in=ids).values_list("function_id", flat=True)
    return {function_id: reverse("functions:detail", args=[function_id]) for function_id in found}
