"""Issue 14, finding 16: what schemathesis found, each fixed in the behaviour and the schema
together. `GET /alerts` of a tenant that never set a webhook answered `updated_at: null` where the
schema said string; an instance's config stayed readable (and writable) after DELETE."""

from __future__ import annotations

import pytest
from django.test import Client

from ..factories import InstanceFactory
from ..helpers import assert_error

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(db):
    response = Client().get("/api/schema?format=json")
    assert response.status_code == 200
    return response.json()


def _response_schema(schema: dict, path: str, method: str, status: str) -> dict:
    content = schema["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
    if "$ref" in content:
        content = schema["components"]["schemas"][content["$ref"].rsplit("/", 1)[-1]]
    return content


def test_alerts_updated_at_is_null_until_the_webhook_is_first_set_and_the_schema_says_so(api, schema):
    body = api.get("alerts").json()
    assert body["updated_at"] is None and body["webhook_url"] == "" and body["enabled"] is False
    updated_at = _response_schema(schema, "/api/v1/alerts", "get", "200")["properties"]["updated_at"]
    assert updated_at.get("nullable") is True and updated_at["format"] == "date-time"


@pytest.mark.parametrize("state", ["destroying", "destroyed"])
def test_an_instances_config_is_gone_once_it_is_deleted(api, tenant, state):
    from django.utils import timezone

    InstanceFactory(
        tenant=tenant, instance_id="cfg-gone", state=state, config={"model": "gpt"},
        destroyed_at=timezone.now() if state == "destroyed" else None,
    )  # fmt: skip
    assert_error(api.get("instances/cfg-gone/config"), 404)
    assert_error(api.patch("instances/cfg-gone/config", {"model": "other"}), 404)


def test_config_reads_404_after_delete_through_the_api(api, tenant, schema):
    InstanceFactory(tenant=tenant, instance_id="cfg-del", state="running", config={"model": "gpt"})
    assert api.get("instances/cfg-del/config").json()["config"] == {"model": "gpt"}
    assert api.delete("instances/cfg-del").status_code == 202
    response = api.get("instances/cfg-del/config")
    assert_error(response, 404, contains="destroy")
    assert "404" in schema["paths"]["/api/v1/instances/{instance_id}/config"]["get"]["responses"]
