"""Functions deployed and invoked for real: sandboxed runtimes on this host (docs/functions.md)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import override_settings

from functions import jobs, runtime
from functions.models import Function, FunctionVersion

from .conftest import NODE_HANDLER, create, deploy

pytestmark = [pytest.mark.sandbox, pytest.mark.django_db]


def public(method="get", path="/fn/hello", **kwargs):
    return getattr(Client(), method)(path, **kwargs)


def test_python_handler_deployed_and_invoked_through_the_public_url(api):
    function = create(api, env={"GREETING": "hi"})
    assert function["current_version"] is None and function["url"].endswith("/fn/hello")
    version = deploy(api, function["function_id"])
    assert version["status"] == "built", version
    assert version["number"] == 1 and version["start_ms"] > 0

    response = public("post", "/fn/hello/some/where?x=1", data="ping", content_type="text/plain", HTTP_COOKIE="sessionid=console-secret")
    assert response.status_code == 200, response.content
    body = json.loads(response.content)
    assert body["path"] == "/some/where" and body["query"] == {"x": "1"} and body["body"] == "ping" and body["greeting"] == "hi"
    assert "cookie" not in body["headers"] and "authorization" not in body["headers"]
    assert response["x-handled-by"] == "python"
    # Served on the console's host: sandboxed, as everything proxied there is.
    assert response["Content-Security-Policy"] == "sandbox" and response["X-Content-Type-Options"] == "nosniff"

    logs = api.get(f"functions/{function['function_id']}/logs").json()["lines"]
    assert any("got POST /some/where" in line for line in logs), logs


def test_node_handler_deployed_and_invoked(api):
    if "node20" not in runtime.available_runtimes():
        pytest.skip("node 20 is not installed here (apt-get install nodejs): the Node runtime cannot be tested")
    function = create(api, slug="hello-node", runtime="node20", code=NODE_HANDLER, env={"GREETING": "hey"})
    assert deploy(api, function["function_id"])["status"] == "built"
    response = public("post", "/fn/hello-node/n", data="x", content_type="text/plain")
    assert response.status_code == 201, response.content
    assert json.loads(response.content) == {"path": "/n", "greeting": "hey", "body": "x"}
    assert response["x-handled-by"] == "node"
    assert any("node got POST /n" in line for line in api.get(f"functions/{function['function_id']}/logs").json()["lines"])


def test_api_key_required_checked_and_rotated(api):
    function = create(api, slug="secured", auth_mode="api_key")
    key = function["api_key"]
    assert key.startswith("fnk_") and function["api_key_prefix"] == key[:12]
    stored = Function.objects.get(function_id=function["function_id"])
    assert key not in json.dumps(list(Function.objects.filter(pk=stored.pk).values()), default=str), "the key is stored only hashed"
    assert api.get(f"functions/{function['function_id']}").json().get("api_key") is None
    deploy(api, function["function_id"])

    assert public(path="/fn/secured").status_code == 401
    assert public(path="/fn/secured", HTTP_X_API_KEY="fnk_wrong").status_code == 401
    assert public(path="/fn/secured", HTTP_X_API_KEY=key).status_code == 200
    ok = public(path="/fn/secured", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert ok.status_code == 200
    assert "authorization" not in json.loads(ok.content)["headers"], "the key never reaches the handler"

    rotated = api.post(f"functions/{function['function_id']}/rotate-api-key")
    assert rotated.status_code == 200 and rotated["Cache-Control"] == "no-store"
    new_key = rotated.json()["api_key"]
    assert new_key != key
    assert public(path="/fn/secured", HTTP_X_API_KEY=key).status_code == 401, "the old key is refused"
    assert public(path="/fn/secured", HTTP_X_API_KEY=new_key).status_code == 200


@pytest.mark.parametrize(
    "broken",
    [
        "def handler(request:\n    return 1\n",  # syntax error
        "import no_such_module_anywhere\ndef handler(request):\n    return 'x'\n",  # import error
        "raise SystemExit(3)\n",  # exits at start
        "def not_a_handler():\n    pass\n",  # no handler
    ],
)
def test_a_broken_handler_fails_its_deploy_and_the_previous_version_keeps_serving(api, broken):
    function = create(api)
    fid = function["function_id"]
    assert deploy(api, fid)["status"] == "built"
    assert api.patch(f"functions/{fid}", {"code": broken}).status_code == 200
    failed = deploy(api, fid)
    assert failed["status"] == "failed" and failed["number"] == 2
    assert failed["error_message"]
    assert api.get(f"functions/{fid}").json()["current_version"] == 1
    response = public("get", "/fn/hello/still")
    assert response.status_code == 200 and json.loads(response.content)["path"] == "/still"
    assert response["X-Function-Version"] == "1"


def test_deploy_switches_and_rollback_deploys_an_earlier_version_again(api):
    function = create(api)
    fid = function["function_id"]
    deploy(api, fid)
    api.patch(f"functions/{fid}", {"code": "def handler(request):\n    return 'v2'\n"})
    assert deploy(api, fid)["number"] == 2
    assert public(path="/fn/hello").content == b"v2"
    assert runtime.running_versions(Function.objects.get(function_id=fid).pk) == [2], "the replaced version's runtime is stopped"
    rolled = deploy(api, fid, version=1)
    assert rolled["number"] == 3 and rolled["rolled_back_from"] == 1 and rolled["status"] == "built"
    assert json.loads(public(path="/fn/hello/r").content)["path"] == "/r"
    versions = api.get(f"functions/{fid}/versions").json()
    assert [v["number"] for v in versions["results"]] == [3, 2, 1]


def test_scale_to_zero_and_wake_on_the_next_request(api):
    function = create(api, idle_timeout_seconds=10, env={"GREETING": "still here"})
    fid = function["function_id"]
    deploy(api, fid)
    pk = Function.objects.get(function_id=fid).pk
    assert public(path="/fn/hello").status_code == 200
    assert runtime.is_running(pk, 1)

    jobs.stop_idle_functions()
    assert runtime.is_running(pk, 1), "not idle long enough yet"
    # Idle past its timeout (the mtime of its last invocation moved back).
    stamp = runtime.function_dir(pk) / "last-invoked"
    old = time.time() - 11
    import os

    os.utime(stamp, (old, old))
    assert jobs.stop_idle_functions()["stopped_idle"] == 1
    assert not runtime.is_running(pk, 1)
    assert api.get(f"functions/{fid}").json()["running"] is False

    response = public(path="/fn/hello/woken")
    assert response.status_code == 200 and json.loads(response.content)["path"] == "/woken"
    assert json.loads(response.content)["greeting"] == "still here", "a runtime started on demand has its env vars"
    assert runtime.is_running(pk, 1)
    invoked = api.post(f"functions/{fid}/invoke", {"method": "GET", "path": "/x"}).json()
    assert invoked["cold_start"] is False and invoked["status"] == 200
    assert any("started on request (cold start" in line for line in api.get(f"functions/{fid}/logs").json()["lines"])


@pytest.mark.django_db(transaction=True)
def test_concurrent_invocations_of_a_function_at_zero_share_one_start(api, monkeypatch):
    function = create(api)
    fid = function["function_id"]
    deploy(api, fid)
    pk = Function.objects.get(function_id=fid).pk
    runtime.stop(pk, 1)
    starts = []
    real_start = runtime.start

    def counting_start(target, **kwargs):
        starts.append(target.number)
        return real_start(target, **kwargs)

    monkeypatch.setattr(runtime, "start", counting_start)
    results = []

    def call():
        try:
            results.append(Client().get("/fn/hello/c").status_code)
        finally:
            connection.close()  # this thread's own (PostgreSQL would keep it open past the test)

    threads = [threading.Thread(target=call) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [200] * 5
    assert starts == [1], "one start for every caller"


def test_a_runtime_that_does_not_come_up_in_time_answers_504(api):
    function = create(api, code="import time\ntime.sleep(30)\ndef handler(request):\n    return 'late'\n")
    fid = function["function_id"]
    with override_settings(FUNCTIONS_START_TIMEOUT_SECONDS=1):
        assert deploy(api, fid)["status"] == "failed"
    # A good version, stopped, whose next start is too slow for the wake timeout.
    api.patch(f"functions/{fid}", {"code": "import time\ndef handler(request):\n    return 'ok'\n"})
    assert deploy(api, fid)["status"] == "built"
    pk = Function.objects.get(function_id=fid).pk
    runtime.stop(pk, 2)
    (runtime.version_dir(pk, 2) / "code" / "handler.py").write_text("import time\ntime.sleep(30)\ndef handler(request):\n    return 'ok'\n")
    with override_settings(FUNCTIONS_WAKE_TIMEOUT_SECONDS=1):
        response = public(path="/fn/hello")
    assert response.status_code == 504, response.content
    assert "did not start" in json.loads(response.content)["detail"]


def test_env_vars_are_encrypted_at_rest_and_revealed_only_to_admins(api, member_api):
    function = create(api, env={"DB_PASSWORD": "hunter2-secret-value"})
    fid = function["function_id"]
    deploy(api, fid)
    row = Function.objects.filter(function_id=fid).values().get()
    version = FunctionVersion.objects.filter(function__function_id=fid).values().get()
    assert "hunter2" not in json.dumps(row, default=str) and "hunter2" not in json.dumps(version, default=str)
    assert function["env_var_names"] == ["DB_PASSWORD"] and "hunter2" not in json.dumps(function)
    revealed = api.get(f"functions/{fid}/env-vars")
    assert revealed.status_code == 200 and revealed.json()["env"] == {"DB_PASSWORD": "hunter2-secret-value"}
    assert revealed["Cache-Control"] == "no-store"
    assert member_api.get(f"functions/{fid}/env-vars").status_code == 403
    activity = api.get("activity").json()["results"]
    assert any(a["action"] == "function.env_reveal" for a in activity)
    assert "hunter2" not in json.dumps(activity)


def test_invocations_count_as_executions_and_metrics(api):
    from billing import metering

    function = create(api)
    fid = function["function_id"]
    deploy(api, fid)
    for _ in range(3):
        assert public(path="/fn/hello").status_code == 200
    from datetime import date, timedelta

    today = date.today()
    assert metering.pending_counts(api.tenant.pk, today - timedelta(days=1), today + timedelta(days=2)) == 3
    jobs.flush_function_metrics()
    metrics = api.get(f"functions/{fid}/metrics").json()
    assert metrics["totals"]["count"] == 3 and metrics["all_time"]["invocations"] == 3
    assert api.get(f"functions/{fid}").json()["invocations"] == 3
