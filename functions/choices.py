"""The functions' enums."""

from __future__ import annotations

from django.db import models


class Runtime(models.TextChoices):
    """What a handler is written for. Offered only where the host has it (functions/runtime.py
    `available_runtimes`)."""

    PYTHON311 = "python3.11", "Python 3.11"
    NODE20 = "node20", "Node.js 20"


class AuthMode(models.TextChoices):
    NONE = "none", "Public (no key)"
    API_KEY = "api_key", "API key"


class VersionStatus(models.TextChoices):
    BUILDING = "building"  # started, not health-checked yet: at most one per function
    BUILT = "built"
    FAILED = "failed"


class RequestMethod(models.TextChoices):
    """The methods a sample request (POST …/invoke) may use."""

    GET = "GET", "GET"
    POST = "POST", "POST"
    PUT = "PUT", "PUT"
    PATCH = "PATCH", "PATCH"
    DELETE = "DELETE", "DELETE"
    HEAD = "HEAD", "HEAD"
    OPTIONS = "OPTIONS", "OPTIONS"


# The file the handler is written to inside the sandbox (`/code/<name>`), per runtime.
HANDLER_FILE = {Runtime.PYTHON311: "handler.py", Runtime.NODE20: "handler.mjs"}

API_KEY_PREFIX = "fnk_"
