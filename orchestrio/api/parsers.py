"""The API's JSON parser."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from rest_framework import parsers

from orchestrio.errors import ValidationFailed


def _nul_locations(value: Any, loc: list) -> Iterator[list]:
    if isinstance(value, str):
        if "\x00" in value:
            yield loc
    elif isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                yield [*loc, key]
            else:
                yield from _nul_locations(item, [*loc, key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nul_locations(item, [*loc, index])


class JSONParser(parsers.JSONParser):
    """JSON, without NUL characters: PostgreSQL stores none (in text or in jsonb), so a `\\u0000`
    anywhere in a body is refused here (422 at its loc) instead of failing at the database (500)."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        errors = [
            {"loc": loc, "msg": "Null characters are not allowed.", "type": "null_characters_not_allowed"}
            for loc in _nul_locations(data, ["body"])
        ]
        if errors:
            raise ValidationFailed(errors)
        return data
