"""`POST /billing/stripe/webhook`: Stripe's events, signature verified with the SDK."""

from __future__ import annotations

import logging

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from orchestrio.errors import ServiceUnavailable

from . import services

logger = logging.getLogger(__name__)


@csrf_exempt
@require_POST
def stripe_webhook(request):
    try:
        event = services.construct_event(request.body, request.META.get("HTTP_STRIPE_SIGNATURE"))
    except ServiceUnavailable as exc:
        return JsonResponse({"detail": exc.detail}, status=503)
    except services.WebhookError as exc:
        logger.warning("refused a Stripe webhook: %s", exc)
        return JsonResponse({"detail": str(exc)}, status=400)
    outcome = services.stripe_event_handle(event)
    return JsonResponse({"received": True, "outcome": outcome})
