"""The functions' rules on input and credentials, in one place: what a slug, a handler's code
and env vars may be, and how an API key is compared. Pure functions (no writes), used by the
services, the public URL and the serializers; and where a function is reached."""

from __future__ import annotations

import hashlib
import hmac
import json
import re

from django.conf import settings

from instances.hostnames import MESSAGE as SLUG_MESSAGE
from instances.hostnames import is_label
from instances.models import gateway_url
from orchestrio import crypto
from orchestrio.errors import ValidationFailed

RESERVED_SLUGS = frozenset({"check-name", "new", "live", "www", "api", "admin"})
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
ENV_RESERVED = ("ORCHESTRIO_",)
ENV_MAX_VARS = 64
ENV_MAX_BYTES = 64 * 1024


def slug_problem(slug: object) -> str | None:
    """Why `slug` cannot name a function (None: it can, if it is free)."""
    if not is_label(slug):
        return SLUG_MESSAGE
    if slug in RESERVED_SLUGS:
        return f"{slug!r} is reserved; choose another slug"
    return None


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def api_key_matches(function, presented: str | None) -> bool:
    """Constant-time comparison of the presented key's hash with the stored one."""
    if not presented or not function.api_key_hash:
        return False
    return hmac.compare_digest(key_hash(presented), function.api_key_hash)


def check_code(code: str) -> None:
    size = len(code.encode("utf-8"))
    if size > settings.FUNCTIONS_MAX_CODE_BYTES:
        raise ValidationFailed(f"the handler's code is {size} bytes; at most {settings.FUNCTIONS_MAX_CODE_BYTES} are allowed", field="code")
    if not code.strip():
        raise ValidationFailed("the handler's code is empty", field="code")


def check_env(env: dict) -> dict:
    if len(env) > ENV_MAX_VARS:
        raise ValidationFailed(f"at most {ENV_MAX_VARS} env vars", field="env")
    for name, value in env.items():
        if not ENV_NAME.match(name) or name.startswith(ENV_RESERVED):
            raise ValidationFailed(f"{name[:80]!r} is not an env var name this allows (letters, digits and _, not ORCHESTRIO_…)", field="env")
        if not isinstance(value, str):
            raise ValidationFailed(f"the value of {name} must be a string", field="env")
    if len(json.dumps(env).encode("utf-8")) > ENV_MAX_BYTES:
        raise ValidationFailed(f"the env vars are over {ENV_MAX_BYTES} bytes in all", field="env")
    return env


def encrypt_env(env: dict) -> str:
    return crypto.encrypt(json.dumps(env, sort_keys=True)) if env else ""


def decrypt_env(encrypted: str) -> dict:
    return json.loads(crypto.decrypt(encrypted)) if encrypted else {}


def public_url(function) -> str:
    return f"{gateway_url().rstrip('/')}/fn/{function.slug}"


def host_url(function) -> str | None:
    if not settings.FUNCTIONS_DOMAIN:
        return None
    scheme = "https" if settings.PUBLIC_URL.startswith("https") else "http"
    return f"{scheme}://{function.slug}.{settings.FUNCTIONS_DOMAIN}"
