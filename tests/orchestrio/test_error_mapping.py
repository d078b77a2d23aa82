"""`orchestrio.api.exceptions.domain_error_parts` is the one exception → HTTP mapping: the API's
handler and the plain views (proxies, webhook, TLS ask, metrics, request limits) answer a domain
error with the same status, body and headers, and no other code builds an error response."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from django.test import RequestFactory

from orchestrio.api.exceptions import domain_error_parts, exception_handler, json_errors
from orchestrio.errors import (
    BadRequest,
    Conflict,
    DomainError,
    NotFound,
    PlanLimitReached,
    TooManyRequests,
    Unauthorized,
    UpstreamError,
    UpstreamTimeout,
    ValidationFailed,
)

ROOT = Path(__file__).resolve().parents[2]
# Responses that are not a domain error's: the last-resort 500s (a bug), and the 503 of an
# unreachable database or Redis, which the mapping's own database_or_queue_error_response builds.
ALLOWED = {
    ("orchestrio/api/exceptions.py", "validation_response"),
    ("orchestrio/api/exceptions.py", "exception_handler"),
    ("orchestrio/api/exceptions.py", "database_or_queue_error_response"),
    ("orchestrio/middleware.py", "unavailable_response"),
    ("orchestrio/middleware.py", "process_exception"),  # the API's last-resort 500
    ("orchestrio/views.py", "handler500"),
    # A signed backup download is fetched by curl or a browser outside the console and the API (no
    # session, no token): its 403 (expired) and 404 are one line of plain text saying which.
    ("addons/views.py", "backup_download"),
}

ERRORS = [
    (BadRequest("bad signature"), 400, {"detail": "bad signature"}, {}),
    (Unauthorized("no token", challenge='Bearer realm="gateway"'), 401, {"detail": "no token"}, {"WWW-Authenticate": 'Bearer realm="gateway"'}),
    (PlanLimitReached("full", limit="instances", plan="starter"), 402, {"detail": "full", "limit": "instances", "plan": "starter"}, {}),
    (NotFound("no such"), 404, {"detail": "no such"}, {}),
    (Conflict("busy", operation={"id": 1}), 409, {"detail": "busy", "operation": {"id": 1}}, {}),
    (ValidationFailed("bad", field="x"), 422, {"detail": [{"loc": ["body", "x"], "msg": "bad", "type": "value_error"}]}, {}),
    (TooManyRequests("slow down", retry_after=7), 429, {"detail": "slow down"}, {"Retry-After": "7"}),
    (UpstreamError("answered badly"), 502, {"detail": "answered badly"}, {}),
    (UpstreamTimeout("no answer"), 504, {"detail": "no answer"}, {}),
]


@pytest.mark.parametrize(("error", "status", "body", "headers"), ERRORS, ids=[type(e[0]).__name__ for e in ERRORS])
def test_api_and_plain_views_answer_a_domain_error_alike(error, status, body, headers):
    assert domain_error_parts(error) == (status, body, headers)
    api = exception_handler(error, {})
    assert (api.status_code, api.data) == (status, body)

    @json_errors
    def view(request):
        raise error

    plain = view(RequestFactory().get("/x"))
    assert (plain.status_code, json.loads(plain.content)) == (status, body)
    assert {name: plain[name] for name in headers} == headers == {name: api[name] for name in headers}


def _error_responses(tree):
    """(function, line) of every response built with a 4xx/5xx status literal."""
    for function in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
        for call in (n for n in ast.walk(function) if isinstance(n, ast.Call)):
            name = ast.unparse(call.func).rsplit(".", 1)[-1]
            if name not in {"JsonResponse", "Response", "HttpResponse"}:
                continue
            for keyword in call.keywords:
                if keyword.arg == "status":
                    value = ast.unparse(keyword.value)
                    literal = keyword.value.value if isinstance(keyword.value, ast.Constant) else None
                    if (isinstance(literal, int) and literal >= 400) or "HTTP_4" in value or "HTTP_5" in value:
                        yield function.name, call.lineno


def test_no_code_but_the_mapping_builds_an_error_response():
    offenders = []
    for path in (path for app in sorted(ROOT.iterdir()) if app.is_dir() and not app.name.startswith(".") for path in app.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if relative.parts[0] in {".venv", "tests", "bench"} or "migrations" in relative.parts:
            continue
        for function, line in _error_responses(ast.parse(path.read_text())):
            if (relative.as_posix(), function) not in ALLOWED:
                offenders.append(f"{relative}:{line} {function}")
    assert offenders == []


def test_every_domain_error_has_a_status_the_contract_knows():
    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    for cls in subclasses(DomainError):
        assert 400 <= cls.status_code < 600, cls
