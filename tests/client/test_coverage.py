"""The SDK keeps step with the API (issue 17): `client/orchestrio_client/_generated.py` is what
`client/generate.py` makes of the live `/api/schema`, so every operation has its method. A new
or changed endpoint fails here until `python client/generate.py` is run and its output committed."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import pytest

CLIENT = Path(__file__).resolve().parents[2] / "client"


def _generator():
    spec = importlib.util.spec_from_file_location("orchestrio_client_generate", CLIENT / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    from django.test import Client as DjangoClient

    with django_db_blocker.unblock():
        response = DjangoClient().get("/api/schema", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def test_the_generated_sdk_is_the_schemas(schema):
    committed = (CLIENT / "orchestrio_client" / "_generated.py").read_text()
    assert _generator().render(schema) == committed, (
        "client/orchestrio_client/_generated.py is out of date with /api/schema: run `python client/generate.py` and commit it"
    )


def test_every_operation_has_its_method(schema):
    from orchestrio_client import OPERATIONS, Client

    in_schema = {
        op["operationId"]: (method.upper(), path)
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert OPERATIONS == in_schema
    for operation_id, (method, path) in in_schema.items():
        function = getattr(Client, operation_id, None)
        assert callable(function), f"no Client.{operation_id} for {method} {path}"
        assert (function.__doc__ or "").startswith(f"{method} {path}")
        params = inspect.signature(function).parameters
        for name in (part[1:-1] for part in path.split("/") if part.startswith("{")):
            assert name in params, f"Client.{operation_id} takes no {name}"


def test_a_new_operation_gets_its_method(schema):
    """A schema with one more operation gives one more method (the coverage is not a list)."""
    extra = {**schema, "paths": {**schema["paths"], "/api/v1/widgets/{widget_id}": {"get": {"operationId": "widgets_retrieve", "parameters": [{"in": "path", "name": "widget_id", "required": True, "schema": {"type": "string"}}], "responses": {"200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Tenant"}}}}}}}}}
    namespace: dict = {"__name__": "orchestrio_client._check", "__package__": "orchestrio_client"}
    exec(compile(_generator().render(extra), "generated", "exec"), namespace)  # noqa: S102 (our own generator's output)
    assert namespace["OPERATIONS"]["widgets_retrieve"] == ("GET", "/api/v1/widgets/{widget_id}")
    assert hasattr(namespace["GeneratedOperations"], "widgets_retrieve")
