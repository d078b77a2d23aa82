"""The API's JSON parser."""

from __future__ import annotations

from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


class JSONParser(parsers.JSONParser):
    """JSON, without NUL characters: PostgreSQL stores none (in text or in jsonb), so a `\\u0000`
    anywhere in a body is refused here (422) instead of failing at the database (500)."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        if _has_nul(data):
            raise ParseError("JSON strings must not contain NUL characters (\\u0000)")
        return data
