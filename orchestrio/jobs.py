"""Housekeeping jobs of the project package."""

from __future__ import annotations

import logging

from .api.idempotency import purge_expired

logger = logging.getLogger(__name__)


def purge_idempotency_keys() -> int:
    deleted = purge_expired()
    if deleted:
        logger.info("purged %d expired idempotency keys", deleted)
    return deleted
