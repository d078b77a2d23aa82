"""JSON that clients send: refused at the door unless the database, the renderer and the jobs can
all take it.

A value stored once is read by every later request and job; one that cannot be written back out
makes lasting 500s and wedged jobs. So a body (or a console form's JSON field, or a document the
control plane fetches) is refused, with a 422 at the offending `loc`, when it has:

- a string or key that is not Unicode text: a lone surrogate (`"\\ud800"`) — it cannot be
  encoded as UTF-8, so neither rendered nor sent to an instance — or a NUL, which PostgreSQL
  stores in neither text nor jsonb;
- a number JSON cannot carry (`1e400` parses as infinity; `NaN`, `Infinity`);
- containers nested deeper than API_MAX_JSON_DEPTH (recursive code downstream — merge patches,
  encoders — would hit Python's recursion limit: a RecursionError is a 500).

The API's parser (orchestrio.api.parsers), the console's JSON fields (orchestrio.forms) and the
OIDC fetches all go through `loads`. Body size is the middleware's (RequestLimitsMiddleware).
"""

from __future__ import annotations

import json
import math
from typing import Any

from django.conf import settings

from .errors import ValidationFailed

# A refused body names at most this many problems.
MAX_ISSUES = 20


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def loads(text: str | bytes, *, loc: tuple = ("body",), max_depth: int | None = None) -> Any:
    """Parse `text` (bytes must be UTF-8) and check it; raises ValidationFailed (422 issues)."""
    limit = settings.API_MAX_JSON_DEPTH if max_depth is None else max_depth
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValidationFailed([_deep(list(loc), limit)]) from None
    except (ValueError, TypeError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ValidationFailed([{"loc": list(loc), "msg": f"JSON parse error - {exc}", "type": "json_invalid"}]) from None
    issues = problems(value, loc, max_depth=limit)
    if issues:
        raise ValidationFailed(issues)
    return value


def problems(value: Any, loc: tuple = ("body",), *, max_depth: int | None = None) -> list[dict]:
    """Every problem with an already parsed value (at most MAX_ISSUES), as 422 issues."""
    limit = settings.API_MAX_JSON_DEPTH if max_depth is None else max_depth
    issues: list[dict] = []
    _walk(value, (None, tuple(loc)), 1, limit, issues)
    return issues


def text_problem(text: str) -> dict | None:
    """Why `text` cannot be stored and served ({"msg", "type"}), or None."""
    if "\x00" in text:
        return {"msg": "Null characters are not allowed.", "type": "null_characters_not_allowed"}
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return {"msg": "Text must be valid Unicode: lone surrogates (\\ud800-\\udfff) are not allowed.", "type": "unicode_invalid"}
    return None


def _path(node) -> list:
    """A loc from the (parent, key) chain _walk builds (lists only when there is an issue)."""
    parts = []
    while node is not None:
        node, key = node
        if isinstance(key, tuple):
            parts.extend(reversed(key))
        else:
            parts.append(key)
    return parts[::-1]


def _printable(key: str) -> str:
    """A refused key as a loc can carry it: its surrogates as U+FFFD (the response must render)."""
    return "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in key)


def _deep(loc: list, limit: int) -> dict:
    return {"loc": loc, "msg": f"JSON is nested deeper than {limit} levels.", "type": "json_too_deep"}


def _walk(value: Any, node, depth: int, limit: int, issues: list[dict]) -> None:
    if len(issues) >= MAX_ISSUES:
        return
    if isinstance(value, str):
        problem = text_problem(value)
        if problem:
            issues.append({"loc": _path(node), **problem})
    elif isinstance(value, dict):
        if depth > limit:
            issues.append(_deep(_path(node), limit))
            return
        for key, item in value.items():
            problem = text_problem(key) if isinstance(key, str) else None
            if problem:
                issues.append({"loc": _path((node, _printable(key))), **problem})
                if len(issues) >= MAX_ISSUES:
                    return
                continue
            _walk(item, (node, key), depth + 1, limit, issues)
    elif isinstance(value, list):
        if depth > limit:
            issues.append(_deep(_path(node), limit))
            return
        for index, item in enumerate(value):
            _walk(item, (node, index), depth + 1, limit, issues)
    elif isinstance(value, float) and not math.isfinite(value):
        issues.append({"loc": _path(node), "msg": "Numbers must be finite (JSON has no infinity or NaN).", "type": "finite_number"})
