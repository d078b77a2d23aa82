"""What every response that carries a secret does, in the API and the console alike."""

from __future__ import annotations

NO_STORE = "no-store"


def carries_secret(response):
    """Mark a response that shows a secret once (a new token's plaintext, a signing secret):
    `Cache-Control: no-store`, so that no browser cache, history or shared proxy keeps a copy. An
    idempotent replay of such a response is stored encrypted and marked the same way
    (orchestrio/api/idempotency.py)."""
    response["Cache-Control"] = NO_STORE
    return response


def is_secret(response) -> bool:
    return NO_STORE in response.get("Cache-Control", "")
