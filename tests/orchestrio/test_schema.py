from __future__ import annotations

import io

import pytest
import yaml
from django.core.management import call_command


@pytest.fixture(scope="module")
def schema():
    out = io.StringIO()
    # --fail-on-warn turns every drf-spectacular warning into a failure; --validate checks the
    # document against the OpenAPI 3 meta-schema.
    call_command("spectacular", "--validate", "--fail-on-warn", "--format", "openapi", stdout=out)
    return yaml.safe_load(out.getvalue())


def test_schema_builds_without_warnings(schema):
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/tenant" in schema["paths"]


def _operations(schema):
    for path, item in schema["paths"].items():
        for method, op in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield path, method, op


def test_every_operation_documents_its_errors(schema):
    public = {("/api/v1/plans", "get"), ("/api/v1/regions", "get")}
    for path, method, op in _operations(schema):
        codes = set(op["responses"])
        if (path, method) not in public:
            assert {"401", "403"} <= codes, (path, method, codes)
        assert "429" in codes, (path, method, codes)
        if "{" in path:
            assert "404" in codes, (path, method, codes)
        if method in ("post", "put", "patch"):
            assert {"413", "422"} <= codes, (path, method, codes)
        for code, response in op["responses"].items():
            if code.startswith(("4", "5")):
                content = response.get("content", {}).get("application/json", {})
                assert "schema" in content, (path, method, code)


def test_lifecycle_actions_document_their_answers(schema):
    for verb in ("stop", "start", "restart", "suspend", "resume"):
        op = schema["paths"][f"/api/v1/instances/{{instance_id}}/{verb}"]["post"]
        assert {"202", "400", "402", "409"} <= set(op["responses"]) and "200" not in op["responses"], verb
        assert "requestBody" not in op, verb


def test_query_parameters_document_422_and_empty_values(schema):
    for path, method, op in _operations(schema):
        query = [p for p in op.get("parameters", []) if p["in"] == "query"]
        if query:
            assert "422" in op["responses"], (path, method)
        for parameter in query:
            # django-filter, the paginator and DRF serializers all read `?name=` as not given.
            if not parameter.get("required") and parameter["schema"].get("type") != "array":
                assert parameter.get("allowEmptyValue") is True, (path, method, parameter["name"])


def test_docs_pages_are_served(client, db):
    assert client.get("/api/schema").status_code == 200
    swagger = client.get("/docs")
    assert swagger.status_code == 200 and b"swagger" in swagger.content.lower()
    # Assets come from this host, not a CDN (the console may run offline).
    assert b"cdn.jsdelivr" not in swagger.content
    assert client.get("/redoc").status_code == 200
