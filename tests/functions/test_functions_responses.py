"""What a function's answer may carry to the caller (functions/public.py), checked for real."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.test.utils import override_settings

from .conftest import create, deploy

pytestmark = [pytest.mark.sandbox, pytest.mark.django_db]

HEADERS = """
def handler(request):
    kind = request["path"]
    if kind == "/cookies":
        return {"status": 200, "headers": {"set-cookie": "sessionid=evil; Domain=example.com; Path=/", "strict-transport-security": "max-age=0", "x-ok": "yes"}, "body": "c"}
    if kind == "/host-cookie":
        return {"status": 200, "headers": {"set-cookie": "pref=1; Path=/"}, "body": "c"}
    if kind == "/newline":
        return {"status": 200, "headers": {"x-bad": "a\\r\\nSet-Cookie: x=1"}, "body": "n"}
    if kind == "/status":
        return {"status": 1000, "body": "s"}
    if kind == "/raise":
        raise RuntimeError("boom")
    if kind == "/bytes":
        return b"\\x00\\xff"
    if kind == "/big":
        return "x" * 3000
    return {"status": 200, "headers": {"connection": "close", "transfer-encoding": "chunked"}, "body": "h"}
"""


def test_responses_are_checked_and_filtered(api):
    function = create(api, code=HEADERS)
    deploy(api, function["function_id"])
    shared = Client().get("/fn/hello/cookies")
    assert shared.status_code == 200 and shared["x-ok"] == "yes"
    assert "Set-Cookie" not in shared and not shared.cookies and "Strict-Transport-Security" not in shared
    assert shared["Content-Security-Policy"] == "sandbox"
    hop = Client().get("/fn/hello/")
    assert hop.status_code == 200 and "Transfer-Encoding" not in hop and hop.get("Connection") is None
    for path in ("/newline", "/status", "/raise"):
        response = Client().get("/fn/hello" + path)
        assert response.status_code == 502, (path, response.content)
        assert "detail" in json.loads(response.content)
    assert Client().get("/fn/hello/bytes").content == b"\x00\xff"
    with override_settings(FUNCTIONS_MAX_RESPONSE_BYTES=1000):
        assert Client().get("/fn/hello/big").status_code == 502
    logs = api.get(f"functions/{function['function_id']}/logs").json()["lines"]
    assert any("RuntimeError: boom" in line for line in logs)


def test_the_functions_own_host_keeps_only_host_only_cookies(api):
    function = create(api, code=HEADERS)
    deploy(api, function["function_id"])
    with override_settings(FUNCTIONS_DOMAIN="fn.example.net"):
        own = Client().get("/host-cookie", HTTP_HOST="hello.fn.example.net")
        assert own.status_code == 200 and "pref=1" in own["Set-Cookie"]
        assert "Content-Security-Policy" not in own
        parent = Client().get("/cookies", HTTP_HOST="hello.fn.example.net")
        assert "Set-Cookie" not in parent, "a cookie for a parent domain could reach the console"
        assert Client().get("/", HTTP_HOST="no_such.fn.example.net").status_code == 404
        assert api.get(f"functions/{function['function_id']}").json()["host_url"] == "http://hello.fn.example.net"


def test_a_body_over_the_limit_is_413(api):
    function = create(api, code=HEADERS)
    deploy(api, function["function_id"])
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=100):
        response = Client().post("/fn/hello/", data="y" * 200, content_type="text/plain")
    assert response.status_code == 413
