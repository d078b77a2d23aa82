"""Input the database, the renderer or a job cannot take is refused once, where it comes in: text
that is not Unicode (a lone surrogate such as "\\ud800") or has NUL, numbers JSON cannot carry,
JSON nested deeper than the limit (422), and bodies over the size limit (413). No input is a 500,
and nothing of a refused request is stored."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from gateway.models import GatewayPolicy
from deployments.models import Deployment, DeploymentRevision
from instances.models import Instance
from tasks.models import Task

from ..helpers import assert_error, assert_validation_error
from ..instances.conftest import make_instance, running  # noqa: F401 - fixtures

SURROGATE = "\ud800"


def _raw(api, method: str, path: str, text: str, **headers):
    """Send `text` as the JSON body, exactly (json.dumps escapes a lone surrogate as \\ud800)."""
    return api.request(method, path, raw=text, headers=headers or None)


# (value, the loc the 422 names below the field), for values, keys and nested places
BAD_TEXT = [
    ({"k": SURROGATE}, ["k"]),
    ({SURROGATE: 1}, ["\ufffd"]),
    ({"a": {"b": ["ok", "x" + "\udfff"]}}, ["a", "b", 1]),
    ({"a": [{"ok\udbff": True}]}, ["a", 0, "ok\ufffd"]),
    ({"k": "nul\x00"}, ["k"]),
    ({"k\x00": "v"}, ["k\x00"]),
]


@pytest.mark.parametrize(("config", "loc"), BAD_TEXT)
def test_instance_config(api, running, config, loc):
    response = api.patch("instances/web-01/config", config)
    assert_validation_error(response, ("body", *loc))
    assert Instance.objects.get(pk=running.pk).config in ({}, None)
    assert api.get("instances/web-01/config").status_code == 200


@pytest.mark.parametrize(("config", "loc"), BAD_TEXT)
def test_deployment_config(api, config, loc):
    created = api.post("deployments", {"name": "bad", "environment": "staging", "config": config})
    assert_validation_error(created, ("body", "config", *loc))
    assert not Deployment.objects.exists()
    good = api.post("deployments", {"name": "good", "environment": "staging", "config": {"a": 1}})
    assert good.status_code == 201, good.content
    deployment = good.json()["id"]
    assert_validation_error(api.patch(f"deployments/{deployment}", {"config": config}), ("body", "config", *loc))
    assert DeploymentRevision.objects.filter(deployment_id=deployment).count() == 1
    assert api.get("deployments").status_code == 200 and api.get(f"deployments/{deployment}").status_code == 200


@pytest.mark.parametrize(("rule", "loc"), BAD_TEXT)
def test_gateway_policy_allow(api, running, rule, loc):
    created = api.post("instances/web-01/gateway-policies", {"provider": "api-key", "allow": [rule]})
    assert_validation_error(created, ("body", "allow", 0, *loc))
    assert not GatewayPolicy.objects.exists()
    policy = api.post("instances/web-01/gateway-policies", {"provider": "api-key"}).json()["id"]
    assert_validation_error(api.patch(f"gateway-policies/{policy}", {"allow": [rule]}), ("body", "allow", 0, *loc))
    assert GatewayPolicy.objects.get().allow == []


@pytest.mark.parametrize(("args", "loc"), BAD_TEXT)
def test_task_script_args(api, running, args, loc):
    body = {"operation_code": "x", "script_path": "/opt/orchestrio/scripts/echo-args.sh", "script_args": args}
    assert_validation_error(api.post("instances/web-01/tasks", body), ("body", "script_args", *loc))
    assert not Task.objects.exists()
    assert api.get("instances/web-01/tasks").status_code == 200


def test_surrogate_pairs_are_fine(api, running):
    """"\\ud83d\\ude00" is one character (😀), not two lone surrogates."""
    response = _raw(api, "PATCH", "instances/web-01/config", '{"emoji": "\\ud83d\\ude00"}')
    assert response.status_code == 200, response.content
    assert api.get("instances/web-01/config").json()["config"]["emoji"] == "😀"


def test_invalid_utf8_bytes_are_422(api, running):
    response = api.client.patch("/api/v1/instances/web-01/config", b'{"k": "\xed\xa0\x80"}', content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {api.token}")
    assert_validation_error(response, ("body",))


@pytest.mark.parametrize("text", ['{"n": 1e400}', '{"n": -1e999}', '{"n": NaN}', '{"n": Infinity}'])
def test_numbers_json_cannot_carry_are_422(api, running, text):
    assert_error(_raw(api, "PATCH", "instances/web-01/config", text), 422)
    assert Instance.objects.get(pk=running.pk).config in ({}, None)


def test_a_refused_body_does_not_reach_idempotency(api, running):
    body = {"operation_code": "x", "script_path": "/opt/orchestrio/scripts/echo-args.sh", "script_args": {"k": SURROGATE}}
    response = api.post("instances/web-01/tasks", body, headers={"Idempotency-Key": "k-1"})
    assert_validation_error(response, ("body", "script_args", "k"))


@pytest.mark.parametrize("query", ["state=%00", "blueprint_name=a%00", "label=team:%00", "limit=%00", "offset=1%00"])
def test_nul_in_the_query_is_422(api, running, query):
    response = api.client.get(f"/api/v1/instances?{query}", HTTP_AUTHORIZATION=f"Bearer {api.token}")
    assert_error(response, 422)


@pytest.mark.parametrize("path", ["/api/v1/instances/web%00", "/api/v1/tasks/tsk%00", "/tunnel/web%00/x", "/gateway/web-01/s%00", "/instances/web%00", "/deployments/d%00"])
def test_nul_in_the_path_is_404(api, running, path):
    response = api.client.get(path, HTTP_AUTHORIZATION=f"Bearer {api.token}")
    assert response.status_code == 404


def test_nul_in_a_console_query_is_400(client, owner, running):
    client.force_login(owner)
    assert client.get("/instances/?q=%00").status_code == 400


# --- nesting ----------------------------------------------------------------------------------------


def _nested(depth: int) -> str:
    return '{"a": ' * (depth - 1) + "{}" + "}" * (depth - 1)


def test_100k_nested_arrays_are_422(api, running):
    response = _raw(api, "PATCH", "instances/web-01/config", "[" * 100_000 + "]" * 100_000)
    assert_error(response, 422, contains="nested")


@pytest.mark.parametrize("depth", [33, 100, 950, 5000])
def test_config_nested_beyond_the_limit_is_422(api, running, depth):
    assert_error(_raw(api, "PATCH", "instances/web-01/config", _nested(depth)), 422, contains="nested")
    assert Instance.objects.get(pk=running.pk).config in ({}, None)
    body = json.dumps({"name": "deep", "environment": "staging"})[:-1] + ', "config": ' + _nested(depth) + "}"
    assert_error(_raw(api, "POST", "deployments", body), 422, contains="nested")
    assert not Deployment.objects.exists()


def test_config_at_the_limit_is_fine(api, running, settings):
    response = _raw(api, "PATCH", "instances/web-01/config", _nested(settings.API_MAX_JSON_DEPTH))
    assert response.status_code == 200, response.content
    assert api.get("instances/web-01/config").status_code == 200


def test_config_size_is_limited(api, running, settings):
    big = {"blob": "x" * (settings.CONFIG_MAX_BYTES + 1)}
    assert_validation_error(api.patch("instances/web-01/config", big), ("body",))
    assert_validation_error(api.post("deployments", {"name": "big", "environment": "staging", "config": big}), ("body", "config"))


# --- body size --------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413(api, running, settings):
    body = json.dumps({"blob": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)})
    response = _raw(api, "PATCH", "instances/web-01/config", body)
    assert_error(response, 413)
    assert response["Content-Type"].startswith("application/json")
    response = _raw(api, "POST", "blueprints", body)
    assert_error(response, 413)


def test_a_small_limit_applies_to_every_api_body(api, running, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    assert_error(_raw(api, "POST", "api-tokens", json.dumps({"name": "x" * 2000})), 413)
    stripe = Client().post("/billing/stripe/webhook", b"{" + b" " * 2000 + b"}", content_type="application/json", HTTP_STRIPE_SIGNATURE="t=1,v1=x")
    assert_error(stripe, 413)


def test_a_console_form_over_the_limit_is_413_not_500(client, owner, running, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    client.force_login(owner)
    response = client.post("/instances/web-01/config", {"config": "{}" + " " * 4000})
    assert response.status_code == 413


# --- the console's forms ----------------------------------------------------------------------------


@pytest.fixture
def console(client, owner, tenant):
    client.force_login(owner)
    return client


@pytest.mark.parametrize("text", ['{"k": "\\ud800"}', '{"\\udfff": 1}', '{"k": "\\u0000"}', _nested(100), "[" * 50_000 + "]" * 50_000, '{"n": 1e400}'])
def test_console_json_fields_refuse_what_the_api_refuses(console, running, text):
    allow = f"[{text}]" if text.startswith("{") else text
    posts = [
        ("/instances/web-01/config", {"config": text}),
        ("/instances/web-01/gateway", {"provider": "api-key", "slug": "", "audience": "", "allow": allow, "config": "{}"}),
        ("/instances/web-01/tasks", {"operation_code": "x", "script_path": "/opt/orchestrio/scripts/echo-args.sh", "script_args": text, "timeout_seconds": 60}),
        ("/deployments/new", {"name": "dep", "environment": "staging", "blueprint_name": "OpenClaw", "plan_id": "openclaw-basic", "region": "local", "config": text, "secrets": ""}),
    ]
    for path, form in posts:
        response = console.post(path, form, follow=True)
        assert response.status_code == 200 and b"not valid JSON" in response.content, (path, response.content[-2000:])
    assert Instance.objects.get(pk=running.pk).config in ({}, None)
    assert not GatewayPolicy.objects.exists() and not Task.objects.exists() and not Deployment.objects.exists()
