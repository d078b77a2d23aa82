"""The API's JSON renderer: DRF's output, written by orjson.

DRF's renderer encodes with the standard library's `json` (0.13 ms for a page of 50 instances, a
twentieth of the whole request); orjson writes the same bytes in a tenth of that. Types orjson
would write differently from DRF (datetimes, dataclasses) and those it does not know (Decimal,
lazy translation strings, bytes, sets…) go to DRF's own encoder; anything orjson still refuses
(an integer beyond 64 bits), and an indented response (`Accept: application/json; indent=2`),
is rendered by DRF itself. Line and paragraph separators are escaped as DRF escapes them. Two
differences, both in what JSON allows: floats in their shortest form (`1e-7`, not `1e-07`), and
NaN or infinity as `null` where DRF's strict renderer raises (a 500).
"""

from __future__ import annotations

import orjson
from rest_framework import renderers
from rest_framework.utils.encoders import JSONEncoder

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_default = JSONEncoder().default


class JSONRenderer(renderers.JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None):
        drf_only = data is None or not self.compact or self.ensure_ascii  # settings orjson does not write
        if drf_only or self.get_indent(accepted_media_type, renderer_context or {}) is not None:
            return super().render(data, accepted_media_type, renderer_context)
        try:
            rendered = orjson.dumps(data, default=_default, option=_OPTIONS)
        except orjson.JSONEncodeError:
            return super().render(data, accepted_media_type, renderer_context)
        return rendered.replace("\u2028".encode(), b"\\u2028").replace("\u2029".encode(), b"\\u2029")
