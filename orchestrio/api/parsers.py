"""The API's JSON parser."""

from __future__ import annotations

from django.conf import settings
from rest_framework import parsers

from orchestrio import jsoninput
from orchestrio.errors import ValidationFailed


class JSONParser(parsers.JSONParser):
    """JSON the database, the renderer and the jobs can all take (orchestrio.jsoninput): no lone
    surrogates or NUL in any string or key, finite numbers, nesting within API_MAX_JSON_DEPTH.
    Anything else is refused here, once, with a 422 at its loc — never stored to fail later. The
    body's size was checked before (RequestLimitsMiddleware: 413)."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        raw = stream.read()
        if encoding.lower().replace("-", "") != "utf8":
            try:
                raw = raw.decode(encoding)
            except (LookupError, UnicodeDecodeError) as exc:
                raise ValidationFailed([{"loc": ["body"], "msg": f"JSON parse error - {exc}", "type": "json_invalid"}]) from None
        return jsoninput.loads(raw)
