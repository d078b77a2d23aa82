"""The console's Functions page: create with the code editor (and deploy), invoke with a sample
request and see the answer, the logs, versions with rollback, the key shown once."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from functions.models import Function

from ..helpers import CommitClient

pytestmark = [pytest.mark.sandbox, pytest.mark.django_db]

CODE = "def handler(request):\n    print('console hello', request['path'])\n    return {'status': 200, 'body': 'v1 at ' + request['path']}\n"


@pytest.fixture
def console(owner, tenant):
    client = CommitClient()
    client.force_login(owner)
    return client


def test_create_deploy_invoke_logs_and_rollback_from_the_console(console):
    page = console.get(reverse("functions:list"))
    assert page.status_code == 200 and b"data-code-editor" in page.content and b"code-editor.js" in page.content
    assert b'href="/functions/"' in page.content  # the sidebar's item
    created = console.post(reverse("functions:list"), {"slug": "from-console", "runtime": "python3.11", "code": CODE, "auth_mode": "api_key", "idle_timeout_seconds": "60", "env": "A=1"})
    assert created.status_code == 200 and created["Cache-Control"] == "no-store"
    function = Function.objects.get(slug="from-console")
    key = created.context["api_key"]
    assert key.startswith("fnk_") and function.current_version.number == 1
    assert Client().get("/fn/from-console/x", HTTP_X_API_KEY=key).content == b"v1 at /x"

    detail = reverse("functions:detail", args=[function.function_id])
    invoked = console.post(reverse("functions:invoke", args=[function.function_id]), {"method": "GET", "path": "/sample?q=1", "headers": "x-test: yes", "body": ""})
    assert invoked.status_code == 200 and b'data-testid="invoke-result"' in invoked.content and b"v1 at /sample" in invoked.content
    assert b"console hello /sample" in console.get(detail).content  # the log line it printed

    saved = console.post(detail, {"code": CODE.replace("v1", "v2"), "auth_mode": "api_key", "idle_timeout_seconds": "60", "env": ""})
    assert saved.status_code == 302
    console.post(reverse("functions:deploy", args=[function.function_id]))
    assert Client().get("/fn/from-console/y", HTTP_X_API_KEY=key).content == b"v2 at /y"
    page = console.get(detail)
    assert b'data-testid="rollback-1"' in page.content
    console.post(reverse("functions:deploy", args=[function.function_id]), {"version": "1"})
    assert Client().get("/fn/from-console/z", HTTP_X_API_KEY=key).content == b"v1 at /z"
    assert console.get(reverse("functions:detail-live", args=[function.function_id])).status_code == 200

    rotated = console.post(reverse("functions:rotate-key", args=[function.function_id]))
    assert rotated["Cache-Control"] == "no-store" and rotated.context["api_key"] != key
    assert Client().get("/fn/from-console/", HTTP_X_API_KEY=key).status_code == 401

    console.post(reverse("functions:delete", args=[function.function_id]), {"confirm": "from-console"})
    assert not Function.objects.filter(slug="from-console").exists()
    assert Client().get("/fn/from-console/").status_code == 404


def test_a_broken_handler_from_the_console_shows_its_error(console):
    console.post(reverse("functions:list"), {"slug": "broken", "runtime": "python3.11", "code": "def handler(:\n", "auth_mode": "none", "idle_timeout_seconds": "60"})
    function = Function.objects.get(slug="broken")
    assert function.current_version is None
    page = console.get(reverse("functions:detail", args=[function.function_id]))
    assert b"SyntaxError" in page.content and b"failed" in page.content
