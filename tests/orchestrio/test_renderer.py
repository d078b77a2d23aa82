"""The API's renderer writes what DRF's JSONRenderer writes (orchestrio/api/renderers.py)."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import json
import uuid

import pytest
from django.utils.translation import gettext_lazy
from rest_framework import renderers
from rest_framework.utils.serializer_helpers import ReturnDict, ReturnList

from orchestrio.api.renderers import JSONRenderer


@dataclasses.dataclass
class Point:
    x: int


WHEN = datetime.datetime(2026, 11, 30, 14, 1, 2, 345678, tzinfo=datetime.UTC)
SAME_BYTES = [
    {"results": [{"id": 1, "name": "ünïcödé ✓ 🚀", "ok": True, "none": None, "nested": {"a": [1, 2, {"b": "c"}]}}], "count": 1},
    {"separators": "line\u2028paragraph\u2029end", "quote": 'say "hi"\n\t\\', "control": "\x00\x1f"},
    {1: "int key", False: "bool key", None: "none key", 2.5: "float key"},
    {"when": WHEN, "date": WHEN.date(), "time": WHEN.time(), "naive": WHEN.replace(tzinfo=None)},
    {"uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"), "decimal": decimal.Decimal("12.50"), "lazy": gettext_lazy("Not found.")},
    {"bytes": b"raw", "set": {3}, "tuple": (1, "two"), "frozen": frozenset({"x"})},
    ReturnDict({"serializer": ReturnList([{"data": 1}], serializer=None)}, serializer=None),
    [],
    "",
    0,
]


@pytest.mark.parametrize("data", SAME_BYTES, ids=range(len(SAME_BYTES)))
def test_same_bytes_as_drf(data):
    assert JSONRenderer().render(data) == renderers.JSONRenderer().render(data)


def test_what_orjson_cannot_write_is_written_by_drf():
    big = {"big": 2**70, "point": Point(1)}
    with pytest.raises(TypeError):
        renderers.JSONRenderer().render({"point": Point(1)})  # DRF's encoder does not know dataclasses either
    assert JSONRenderer().render({"big": 2**70}) == renderers.JSONRenderer().render({"big": 2**70}) == b'{"big":1180591620717411303424}'
    with pytest.raises(TypeError):
        JSONRenderer().render(big)


def test_floats_are_the_same_numbers_and_nan_is_null_not_an_error():
    floats = {"values": [0.1, 1.5, 1e-7, 1e22, -0.0, 123456789.125, 3.0]}
    assert json.loads(JSONRenderer().render(floats)) == json.loads(renderers.JSONRenderer().render(floats))
    assert JSONRenderer().render({"x": float("nan")}) == b'{"x":null}'


def test_an_indented_response_is_drfs():
    data = {"a": [1, {"b": 2}]}
    rendered = JSONRenderer().render(data, "application/json; indent=2", {})
    assert rendered == renderers.JSONRenderer().render(data, "application/json; indent=2", {}) and b"\n  " in rendered


def test_none_renders_nothing():
    assert JSONRenderer().render(None) == b""
