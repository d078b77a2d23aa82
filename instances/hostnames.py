"""The instance id rule, in one place: an instance id is the hostname label of its access URL
(`<instance_id>.<BASE_DOMAIN>`), so it is what a DNS label may be (RFC 1123: lowercase letters,
digits and hyphens, not starting or ending with a hyphen; we also ask for at least 3), and not one
of the names the API's paths or the installation's own hosts use. The API and the console check
it in `instance_create`; the router reads a Host header with it; a deployment's name, from which
its instance id is made, is checked with it too."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError

MESSAGE = "use 3–63 lowercase letters, digits and hyphens, starting and ending with a letter or digit"
_LABEL = re.compile(r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")
MIN_LENGTH, MAX_LENGTH = 3, 63
# Path segments of the instances API that cannot double as instance ids, and the installation's
# own host names.
RESERVED = frozenset({"cleanup", "by-idempotency-key", "new", "live", "www", "api", "admin"})  # `new`, `live`: console URLs


def is_label(value: object, *, max_length: int = MAX_LENGTH) -> bool:
    """A hostname label of MIN_LENGTH to `max_length` characters."""
    return isinstance(value, str) and MIN_LENGTH <= len(value) <= max_length and _LABEL.match(value) is not None


def instance_id_problem(value: object) -> str | None:
    """Why `value` cannot be an instance id (None: it can)."""
    if not is_label(value):
        return MESSAGE
    if value in RESERVED:
        return f"{value!r} is reserved; choose another instance_id"
    return None


def is_instance_label(label: str) -> bool:
    """Whether a Host header's first label could name an instance."""
    return instance_id_problem(label) is None


def validate_instance_id(value: str) -> None:
    """The model field's validator (admin forms, full_clean)."""
    problem = instance_id_problem(value)
    if problem is not None:
        raise ValidationError(problem, code="invalid")
