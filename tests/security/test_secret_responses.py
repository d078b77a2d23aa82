"""Issue 14, finding 15: every response that shows a secret once is `Cache-Control: no-store` (in
the API and the console), an idempotent replay of one too, and the replayable copy is not kept in
plaintext; the admin and the API docs carry a Content-Security-Policy."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from billing.models import AlertConfig
from orchestrio.models import IdempotencyKey

pytestmark = pytest.mark.django_db


def _alert_config(tenant) -> None:
    """A webhook URL without a signing secret yet (as if set before secrets existed): the next
    PATCH issues one. Made directly so that these tests do not depend on URL validation."""
    AlertConfig.objects.create(tenant=tenant, webhook_url="https://hooks.example/alerts")


def test_a_new_api_token_is_no_store_and_so_is_its_replay(api):
    headers = {"Idempotency-Key": "secret-replay"}
    first = api.post("api-tokens", {"name": "ci"}, headers=headers)
    assert first.status_code == 201 and first["Cache-Control"] == "no-store"
    replay = api.post("api-tokens", {"name": "ci"}, headers=headers)
    assert replay["Idempotent-Replayed"] == "true" and replay.json() == first.json()
    assert replay["Cache-Control"] == "no-store"


def test_the_replayable_copy_of_a_new_token_is_not_kept_in_plaintext(api):
    first = api.post("api-tokens", {"name": "ci"}, headers={"Idempotency-Key": "at-rest"})
    plaintext = first.json()["token"]
    row = IdempotencyKey.objects.get(key="at-rest")
    assert row.response_body is None
    assert row.response_body_encrypted and plaintext not in row.response_body_encrypted


def test_responses_without_a_secret_are_stored_and_replayed_as_before(api):
    headers = {"Idempotency-Key": "plain"}
    first = api.post("instances", {"instance_id": "no-secret-1"}, headers=headers)
    assert first.status_code == 201 and "no-store" not in first.get("Cache-Control", "")
    assert IdempotencyKey.objects.get(key="plain").response_body == first.json()
    replay = api.post("instances", {"instance_id": "no-secret-1"}, headers=headers)
    assert replay["Idempotent-Replayed"] == "true" and "no-store" not in replay.get("Cache-Control", "")


def test_the_alert_signing_secret_is_no_store_in_the_api(api, tenant):
    _alert_config(tenant)
    created = api.patch("alerts", {"enabled": True})
    assert created.status_code == 200 and "signing_secret" in created.json()
    assert created["Cache-Control"] == "no-store"
    rotated = api.post("alerts/rotate-secret")
    assert rotated.status_code == 200 and rotated.json()["signing_secret"].startswith("whsec_")
    assert rotated["Cache-Control"] == "no-store"


def test_the_alert_signing_secret_is_no_store_in_the_console(owner, tenant):
    _alert_config(tenant)
    console = Client()
    console.force_login(owner)
    rotated = console.post("/billing/alerts/rotate")
    assert rotated.status_code == 200 and b"whsec_" in rotated.content
    assert rotated["Cache-Control"] == "no-store"


def test_a_new_token_in_the_console_is_no_store(owner, tenant):
    console = Client()
    console.force_login(owner)
    created = console.post("/tokens", {"name": "laptop", "mode": "live", "expires_in_days": "90", "instance_id": ""})
    assert re.search(rb'value="ork_live_', created.content) and created["Cache-Control"] == "no-store"


# --- Content-Security-Policy on the admin and the API docs -----------------------------------------


def _csp(response) -> dict[str, list[str]]:
    assert "Content-Security-Policy" in response, f"no CSP on {response.request['PATH_INFO']}"
    directives = {}
    for part in response["Content-Security-Policy"].split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


@pytest.mark.parametrize("path", ["/admin/login/", "/docs", "/redoc"])
def test_the_admin_and_the_docs_have_a_csp(client, path):
    response = client.get(path)
    assert response.status_code == 200
    csp = _csp(response)
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"][0] == "'self'" and "'unsafe-inline'" not in csp["script-src"] and "'unsafe-eval'" not in csp["script-src"]
    assert csp["frame-ancestors"] == ["'none'"] and csp["object-src"] == ["'none'"] and csp["base-uri"] == ["'self'"]


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_docs_load_every_script_from_this_host(client, path):
    """Swagger UI and ReDoc come from drf-spectacular-sidecar, on this host: no inline script
    (the policy would block it) and no third-party script, style or font."""
    page = client.get(path).content.decode()
    for tag in re.findall(r"<script\b[^>]*>", page):
        assert re.search(r'\bsrc="/', tag), f"inline or off-site script on {path}: {tag}"
    assert "googleapis" not in page and "https://" not in page


def test_the_swagger_ui_script_is_served_from_this_host(client):
    page = client.get("/docs").content.decode()
    scripts = re.findall(r'<script\b[^>]*\bsrc="([^"]+)"', page)
    init = next(src for src in scripts if "static" not in src)
    response = client.get(init.replace("&amp;", "&"))
    assert response.status_code == 200 and b"SwaggerUIBundle" in response.content


def test_the_replayable_copy_is_re_encrypted_by_rotate_encryption(api, settings):
    import io

    from cryptography.fernet import Fernet
    from django.core.management import call_command

    headers = {"Idempotency-Key": "rotate-me"}
    first = api.post("api-tokens", {"name": "ci"}, headers=headers)
    new_key = Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS = [new_key, *settings.ENCRYPTION_KEYS]
    out = io.StringIO()
    call_command("rotate_encryption", stdout=out)
    assert "re-encrypted 1 value(s) of orchestrio.IdempotencyKey.response_body_encrypted" in out.getvalue()
    settings.ENCRYPTION_KEYS = [new_key]  # the old key is gone: the replay still decrypts
    replay = api.post("api-tokens", {"name": "ci"}, headers=headers)
    assert replay["Idempotent-Replayed"] == "true" and replay.json() == first.json()


def test_a_new_function_api_key_is_no_store_and_so_is_its_replay_and_the_env_vars(api):
    headers = {"Idempotency-Key": "function-key"}
    body = {"slug": "keyed", "runtime": "python3.11", "code": "def handler(request):\n    return 1\n", "auth_mode": "api_key", "env": {"K": "v"}}
    first = api.post("functions", body, headers=headers)
    assert first.status_code == 201 and first["Cache-Control"] == "no-store"
    key = first.json()["api_key"]
    replay = api.post("functions", body, headers=headers)
    assert replay["Idempotent-Replayed"] == "true" and replay["Cache-Control"] == "no-store" and replay.json()["api_key"] == key
    row = IdempotencyKey.objects.get(key="function-key")
    assert row.response_body is None and key not in row.response_body_encrypted
    function_id = first.json()["function_id"]
    assert api.post(f"functions/{function_id}/rotate-api-key")["Cache-Control"] == "no-store"
    assert api.get(f"functions/{function_id}/env-vars")["Cache-Control"] == "no-store"
    assert "no-store" not in api.get(f"functions/{function_id}").get("Cache-Control", "")
