"""Functions on a function instance (FUNCTIONS_BACKEND=instance), end to end with real processes:
the tenant's function instance is a local instance (its agent sandboxed, as every local
instance's), the control plane pushes the function host onto it, deploys versions there and invokes
them through its agent; it sleeps and wakes like any instance, and a host that restarted gets its
versions pushed again. (The same on an EC2 machine: tests/functions/test_functions_on_aws.py.)"""

from __future__ import annotations

import pytest

from functions.models import Function, FunctionVersion
from instances.models import Instance
from orchestrio.models import ActivityEvent

from ..helpers import assert_error, run_jobs
from .conftest import NODE_HANDLER, create

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _on_instances(settings, sandboxed):
    settings.FUNCTIONS_BACKEND = "instance"
    settings.FUNCTIONS_REGION = "local"
    settings.FUNCTIONS_HOST_IDLE_SECONDS = 0
    settings.FUNCTIONS_HOST_READY_SECONDS = 120


@pytest.fixture
def sandboxed():
    from instances.providers import sandbox

    if not sandbox.support().enabled:
        pytest.skip(f"needs the local sandbox: {sandbox.support().reason}")


def _deploy(api, function_id, **body) -> dict:
    response = api.post(f"functions/{function_id}/deploy", body or None)
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "building"  # finished by a job: the machine may take minutes
    run_jobs()
    (version,) = [v for v in api.get(f"functions/{function_id}/versions").json()["results"] if v["number"] == response.json()["number"]]
    return version


def _host() -> Instance:
    return Instance.objects.get(managed_by="functions", destroyed_at__isnull=True)


def test_a_deploy_creates_the_function_instance_and_the_public_url_invokes_it_there(api, client):
    function = create(api, "on-host", auth_mode="api_key", env={"GREETING": "hi"})
    version = _deploy(api, function["function_id"])
    assert version["status"] == "built", version
    host = _host()
    assert host.state == "running" and host.provider == "local" and host.blueprint.name == "Function host"

    record = api.get(f"functions/{function['function_id']}").json()
    assert record["function_instance_id"] == host.instance_id and record["running"] is True
    # The tenant sees its function instance (managed_by), which its instance limit does not count.
    listed = {i["instance_id"]: i for i in api.get("instances").json()["results"]}
    assert listed[host.instance_id]["managed_by"] == "functions"
    assert api.get("dashboard/summary").json()["plan"]["usage"]["instances"] == 0

    assert client.get("/fn/on-host/x").status_code == 401
    answer = client.get("/fn/on-host/x?q=1", HTTP_X_API_KEY=function["api_key"])
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["path"] == "/x" and body["query"] == {"q": "1"} and body["greeting"] == "hi"
    assert answer["X-Function-Version"] == "1"

    lines = api.get(f"functions/{function['function_id']}/logs").json()["lines"]
    text = "\n".join(lines)
    assert "got GET /x" in text  # the handler's print, on the function instance
    assert f"the function instance {host.instance_id} runs: sending it version 1" in text and "version 1 is live" in text
    assert ActivityEvent.objects.filter(action="instance.create", object_id=host.instance_id).exists()


def test_a_broken_version_fails_and_the_previous_keeps_serving_then_a_node_version_switches(api, client):
    function = create(api, "switchy")
    assert _deploy(api, function["function_id"])["status"] == "built"
    api.patch(f"functions/{function['function_id']}", {"code": "def handler(request):\n    return (\n"})
    failed = _deploy(api, function["function_id"])
    assert failed["status"] == "failed" and "SyntaxError" in failed["error_message"], failed
    assert client.get("/fn/switchy/").json()["path"] == "/"  # version 1 still serves
    assert api.get(f"functions/{function['function_id']}").json()["current_version"] == 1

    from functions import backends

    if "node20" not in backends.get().available_runtimes():
        return
    import shutil

    if shutil.which("node") is None:
        pytest.skip("no node on this machine")
    api.patch(f"functions/{function['function_id']}", {"runtime": "node20", "code": NODE_HANDLER})
    assert _deploy(api, function["function_id"])["status"] == "built"
    answer = client.post("/fn/switchy/n", data=b"payload", content_type="text/plain")
    assert answer.status_code == 201 and answer.json() == {"path": "/n", "greeting": "none", "body": "payload"}
    assert answer["X-Function-Version"] == "3"


@pytest.mark.django_db(transaction=True)
def test_an_asleep_function_instance_wakes_on_an_invocation(api, client):
    function = create(api, "sleepy")
    assert _deploy(api, function["function_id"])["status"] == "built"
    host = _host()
    assert api.post(f"instances/{host.instance_id}/sleep").status_code == 202
    run_jobs()
    assert _host().state == "asleep"
    assert api.get(f"functions/{function['function_id']}").json()["running"] is False

    from ..helpers import BackgroundWorker

    with BackgroundWorker(interval=0.05):  # the wake is an operation the worker runs while the request waits
        answer = client.get("/fn/sleepy/again")
    assert answer.status_code == 200 and answer.json()["path"] == "/again"
    assert _host().state == "running"


def test_a_host_that_restarted_gets_its_version_pushed_again(api, client):
    function = create(api, "again", env={"GREETING": "back"})
    assert _deploy(api, function["function_id"])["status"] == "built"
    from functions import remote

    host = remote._Host(_host())
    # The host forgets every version when it restarts (a reboot, a new release): PUT /app again.
    files, _ = remote.bundle()
    import json

    status, _, _ = host.call("PUT", "/app", body=json.dumps({"command": remote.HOST_COMMAND, "files": files}).encode(), timeout=15)
    assert status == 200
    import time

    host.ensure_app(deadline=time.monotonic() + 10)
    invoked = api.post(f"functions/{function['function_id']}/invoke", {"request": {"path": "/p"}})
    assert invoked.status_code == 200, invoked.content
    assert invoked.json()["cold_start"] is True and '"greeting": "back"' in invoked.json()["body"].replace('":"', '": "')


def test_deleting_the_last_function_destroys_the_function_instance(api):
    first, second = create(api, "one-fn"), create(api, "two-fn")
    assert _deploy(api, first["function_id"])["status"] == "built"
    assert _deploy(api, second["function_id"])["status"] == "built"
    host = _host()
    assert Instance.objects.filter(managed_by="functions").count() == 1  # one per tenant
    assert api.delete(f"functions/{first['function_id']}").status_code == 204
    run_jobs()
    assert Instance.objects.get(pk=host.pk).destroyed_at is None
    assert api.delete(f"functions/{second['function_id']}").status_code == 204
    run_jobs()
    assert Instance.objects.get(pk=host.pk).destroyed_at is not None
    assert not Function.objects.exists() and not FunctionVersion.objects.exists()


def test_another_tenants_function_instance_is_not_theirs(api, other_api):
    function = create(api, "mine-fn")
    assert _deploy(api, function["function_id"])["status"] == "built"
    host = _host()
    assert_error(other_api.get(f"instances/{host.instance_id}"), 404)
    assert_error(other_api.post(f"functions/{function['function_id']}/invoke", {"request": {}}), 404)
    assert other_api.get("instances").json()["results"] == []


def test_a_deploy_waits_for_its_machine_without_holding_a_worker_and_a_lost_job_is_put_back(api, monkeypatch, settings):
    import django_rq

    from functions import jobs, remote, services

    from ..helpers import call_job

    monkeypatch.setattr(remote, "HOST_WAIT_IN_JOB_SECONDS", 0.2)
    function = create(api, "patient")
    response = api.post(f"functions/{function['function_id']}/deploy")
    number = response.json()["number"]
    version = FunctionVersion.objects.get(function__function_id=function["function_id"], number=number)
    # The deploy's job, before the function instance's create has run: it ends, still building.
    assert call_job(jobs.deploy_version, version.pk, "user", "owner@example.com") == "building"
    # Its queued job is lost too (a worker killed with it): the create alone runs.
    from rq.job import Job

    Job.fetch(services.deploy_job_id(version_pk=version.pk), connection=django_rq.get_connection("default")).delete()
    run_jobs()
    assert _host().state == "running"
    assert FunctionVersion.objects.get(pk=version.pk).status == "building"
    summary = call_job(jobs.stop_idle_functions)
    assert summary["requeued_deploys"] == 1
    run_jobs()
    assert FunctionVersion.objects.get(pk=version.pk).status == "built"
    assert call_job(jobs.stop_idle_functions)["requeued_deploys"] == 0

    # A deploy to a function instance a person stopped is not left waiting: it fails and says why.
    api.post(f"instances/{_host().instance_id}/stop")
    run_jobs()
    assert api.post(f"functions/{function['function_id']}/deploy").json()["status"] == "building"
    run_jobs()
    stuck = FunctionVersion.objects.get(function__function_id=function["function_id"], number=number + 1)
    assert stuck.status == "failed" and "stopped" in stuck.error_message  # a person's stop: not woken, said why
    assert api.get(f"functions/{function['function_id']}").json()["current_version"] == number


def test_a_crashed_function_host_is_started_again_by_the_agent_and_gets_its_versions_again(api):
    import os
    import signal
    import time

    import psutil

    from functions import remote
    from instances.providers import sandbox

    function = create(api, "phoenix")
    assert _deploy(api, function["function_id"])["status"] == "built"
    host = _host()
    uid = sandbox.uid_for(host.pk)
    (pid,) = [p.pid for p in psutil.process_iter(["cmdline", "uids"]) if p.info["uids"].real == uid and "host.py" in " ".join(p.info["cmdline"] or [])]
    os.kill(pid, signal.SIGKILL)
    calls, deadline = remote._Host(host), time.monotonic() + 15
    while time.monotonic() < deadline:  # the agent starts it again (not the control plane: no PUT /app)
        status, headers, _ = calls.call("GET", "/health", timeout=5)
        if status == 200 and calls.is_current(headers):
            break
        time.sleep(0.1)
    assert status == 200 and _host().state == "running"
    invoked = api.post(f"functions/{function['function_id']}/invoke", {"request": {"path": "/back"}})
    assert invoked.status_code == 200, invoked.content
    assert invoked.json()["cold_start"] is True  # a new host knows no version: it was sent again
