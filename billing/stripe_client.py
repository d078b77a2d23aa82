"""The Stripe client: the official SDK, configured from the environment in one place."""

from __future__ import annotations

import stripe
from django.conf import settings

from orchestrio.errors import ServiceUnavailable, UpstreamError, UpstreamTimeout


def configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


def client() -> stripe.StripeClient:
    if not configured():
        raise ServiceUnavailable("billing is not configured on this installation (STRIPE_SECRET_KEY is unset)")
    base = {"api": settings.STRIPE_API_BASE} if settings.STRIPE_API_BASE else None
    http = stripe.HTTPXClient(timeout=settings.STRIPE_TIMEOUT_SECONDS, allow_sync_methods=True)
    kwargs = {"base_addresses": base} if base else {}
    return stripe.StripeClient(settings.STRIPE_SECRET_KEY, max_network_retries=2, http_client=http, **kwargs)


def call(fn, *args, **kwargs):
    """Run a Stripe call; Stripe failing becomes 502/504 with a message, never a 500."""
    try:
        return fn(*args, **kwargs)
    except stripe.AuthenticationError as exc:
        raise ServiceUnavailable("Stripe refused the configured API key") from exc
    except stripe.APIConnectionError as exc:
        if "timed out" in str(exc).lower() or "timeout" in str(exc).lower():
            raise UpstreamTimeout("Stripe did not answer in time; try again") from exc
        raise UpstreamError("cannot reach Stripe; try again") from exc
    except stripe.StripeError as exc:
        raise UpstreamError(f"Stripe answered with an error: {exc.user_message or type(exc).__name__}") from exc
