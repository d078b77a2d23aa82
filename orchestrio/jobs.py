"""Housekeeping jobs of the project package."""

from __future__ import annotations

import logging

from . import notifications
from .api.idempotency import purge_expired

logger = logging.getLogger(__name__)


def purge_idempotency_keys() -> int:
    deleted = purge_expired()
    if deleted:
        logger.info("purged %d expired idempotency keys", deleted)
    return deleted


def trim_notifications() -> int:
    """Keep each person's notification feed bounded (orchestrio/notifications.py `trim`)."""
    deleted = notifications.trim()
    if deleted:
        logger.info("trimmed %d notifications", deleted)
    return deleted
