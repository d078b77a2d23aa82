"""Endpoints for the edge proxy (not for customers)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse
from django.views.decorators.http import require_GET

from orchestrio.api.exceptions import json_errors
from orchestrio.errors import Forbidden, NotFound

from .services import tls_allowed


@require_GET
@json_errors
def tls_ask(request):
    """Caddy's on-demand TLS `ask`: 200 lets it obtain a certificate for `domain`, anything else
    refuses. Only the configured addresses (the edge) may ask; the answer comes from indexes."""
    if request.META.get("REMOTE_ADDR") not in settings.TLS_ASK_ALLOWED_IPS:
        raise Forbidden("this endpoint is for the edge proxy only")
    if tls_allowed(name=request.GET.get("domain", "")):
        return HttpResponse("ok", content_type="text/plain")
    raise NotFound("unknown domain")
