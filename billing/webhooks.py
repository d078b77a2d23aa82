"""`POST /billing/stripe/webhook`: Stripe's events, signature verified with the SDK."""

from __future__ import annotations

import logging

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from orchestrio.api.exceptions import json_errors

from . import services

logger = logging.getLogger(__name__)


@csrf_exempt
@require_POST
@json_errors
def stripe_webhook(request):
    """Billing not configured: 503; a signature or payload Stripe's SDK refuses: 400."""
    try:
        event = services.construct_event(payload=request.body, signature=request.META.get("HTTP_STRIPE_SIGNATURE"))
    except services.WebhookError as exc:
        logger.warning("refused a Stripe webhook: %s", exc)
        raise
    outcome = services.stripe_event_handle(event=event)
    return JsonResponse({"received": True, "outcome": outcome})
