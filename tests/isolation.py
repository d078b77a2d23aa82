"""A reusable contract: another tenant's objects are 404 on every endpoint that names them.

Subclass `TenantIsolationContract`, set `endpoints` to (method, path template, body) triples
and implement `make_object(api)` returning the path's format arguments for an object owned by
`api`'s tenant. The contract then checks, for each endpoint, that a second tenant's token gets
404 with the API.md error body, and that the owner still can (not 404).
"""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import assert_error


class TenantIsolationContract:
    endpoints: list[tuple[str, str, Any]] = []

    def make_object(self, api) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    @pytest.fixture
    def owned(self, api):
        return self.make_object(api)

    def test_other_tenant_gets_404_everywhere(self, api, other_api, owned):
        assert self.endpoints, "declare the endpoints this contract covers"
        for method, template, body in self.endpoints:
            path = template.format(**owned)
            response = other_api.request(method, path, body)
            assert_error(response, 404)
            assert "not" in str(response.json()["detail"]).lower() or "no " in str(response.json()["detail"]).lower()

    def test_owner_reaches_every_endpoint(self, api, owned):
        for method, template, body in self.endpoints:
            if method != "GET":
                continue  # writes are exercised by the feature tests; here only existence matters
            response = api.request(method, template.format(**owned), body)
            assert response.status_code != 404, (template, response.content[:300])
