"""Endpoints for the edge proxy (not for customers)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from .services import tls_allowed


@require_GET
def tls_ask(request):
    """Caddy's on-demand TLS `ask`: 200 lets it obtain a certificate for `domain`, anything else
    refuses. Only the configured addresses (the edge) may ask; the answer comes from indexes."""
    if request.META.get("REMOTE_ADDR") not in settings.TLS_ASK_ALLOWED_IPS:
        return JsonResponse({"detail": "this endpoint is for the edge proxy only"}, status=403)
    if tls_allowed(request.GET.get("domain", "")):
        return HttpResponse("ok", content_type="text/plain")
    return HttpResponse("unknown domain", status=404, content_type="text/plain")
