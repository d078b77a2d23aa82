"""Secrets at rest: Fernet with key rotation (MultiFernet).

`ENCRYPTION_KEYS` lists Fernet keys, newest first. New values are encrypted with the first; any
listed key decrypts. To rotate: prepend a new key, deploy, run `manage.py rotate_encryption`
(re-encrypts every stored secret with the newest key), then drop the old key.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...], secret_key: str, debug: bool) -> MultiFernet:
    if not keys:
        if not debug:
            raise ImproperlyConfigured("ENCRYPTION_KEYS must be set when DEBUG is off")
        derived = base64.urlsafe_b64encode(hashlib.sha256(("orchestrio-dev:" + secret_key).encode()).digest())
        keys = (derived.decode(),)
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(f"ENCRYPTION_KEYS holds an invalid Fernet key: {exc}") from exc


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.ENCRYPTION_KEYS), settings.SECRET_KEY, settings.DEBUG)


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode("ascii")).decode("utf-8")
    except InvalidToken as exc:
        raise ImproperlyConfigured("a stored secret cannot be decrypted with ENCRYPTION_KEYS (was a key dropped?)") from exc


def rotate(token: str) -> str:
    """Re-encrypt with the newest key."""
    return fernet().rotate(token.encode("ascii")).decode("ascii")
