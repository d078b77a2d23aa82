from __future__ import annotations

import pytest

from instances.models import Instance
from instances.agent_client import agent_client_for

from ..helpers import assert_error, assert_validation_error, run_jobs


def test_config_merge_patch(api, running):
    assert api.get("instances/web-01/config").json() == {"instance_id": "web-01", "config": {}}
    body = api.patch("instances/web-01/config", {"model": "gpt", "skills": {"search": True, "code": True}}).json()
    assert body["config"] == {"model": "gpt", "skills": {"search": True, "code": True}} and body["applied"] is False
    # RFC 7396: only present fields change; null removes
    body = api.patch("instances/web-01/config", {"skills": {"code": None, "math": True}, "model": None}).json()
    assert body["config"] == {"skills": {"search": True, "math": True}}


def test_config_validation(api, running):
    assert_validation_error(api.request("PATCH", "instances/web-01/config", raw="[1]"), ("body",))
    assert_validation_error(api.patch("instances/web-01/config", {"blob": "x" * 70000}), ("body",))
    assert_validation_error(api.patch("instances/web-01/config?apply=maybe", {"a": 1}), ("query", "apply"))


def test_apply_needs_a_running_instance(api, make_instance):
    make_instance(instance_id="sleepy", state="stopped")
    assert_error(api.patch("instances/sleepy/config?apply=true", {"a": 1}), 400, contains="not running")
    assert Instance.objects.get(instance_id="sleepy").config == {}


def test_apply_to_an_unreachable_agent_is_502(api, running):
    Instance.objects.filter(pk=running.pk).update(ip_address="127.0.0.1", port=1)
    assert_error(api.patch("instances/web-01/config?apply=true", {"a": 1}), 502, contains="refused")


@pytest.mark.slow
def test_apply_pushes_config_to_the_agent(api, live):
    live("cfg-1", config={"initial": True})
    instance = Instance.objects.get(instance_id="cfg-1")
    assert agent_client_for(instance).get_config() == {"initial": True}
    body = api.patch("instances/cfg-1/config?apply=true", {"greeting": "hi"}).json()
    assert body["applied"] is True and len(body["agent_config_digest"]) == 64
    assert agent_client_for(instance).get_config() == {"initial": True, "greeting": "hi"}
    runtime = api.get("instances/cfg-1/runtime").json()
    assert runtime["agent"]["status"]["config_digest"] == body["agent_config_digest"]


@pytest.mark.slow
def test_runtime_in_every_state(api, live, make_instance):
    live("rt-1")
    running = api.get("instances/rt-1/runtime").json()
    assert running["state"] == "running" and running["agent"]["reachable"] is True
    assert running["agent"]["status"]["instance_id"] == "rt-1" and running["agent"]["status"]["uptime_seconds"] >= 0
    assert running["message"].startswith("running") and running["recent_logs"]

    api.post("instances/rt-1/stop")
    stopping = api.get("instances/rt-1/runtime").json()
    assert stopping["state"] == "stopping" and stopping["operation"]["kind"] == "stop"
    assert "stopping" in stopping["message"] and "only contacted while the instance is running" in stopping["agent"]["reason"]
    run_jobs()
    stopped = api.get("instances/rt-1/runtime").json()
    assert "start it to reach its agent" in stopped["message"]

    make_instance(instance_id="rt-err", state="error", error_message="boom")
    errored = api.get("instances/rt-err/runtime").json()
    assert errored["message"] == "in error: boom"


def test_runtime_of_a_running_instance_whose_agent_is_down(api, running):
    Instance.objects.filter(pk=running.pk).update(ip_address="127.0.0.1", port=1)
    body = api.get("instances/web-01/runtime").json()
    assert body["agent"]["reachable"] is False and "cannot reach the agent" in body["agent"]["error"]
    assert "did not answer" in body["message"]


@pytest.mark.slow
def test_rotate_agent_key(api, live):
    from orchestrio.crypto import decrypt

    live("keyed-1")
    instance = Instance.objects.get(instance_id="keyed-1")
    old_key = decrypt(instance.agent_key_encrypted)
    response = api.post("instances/keyed-1/rotate-agent-key")
    assert response.status_code == 200 and response.json()["rotated_at"].endswith("Z")
    instance.refresh_from_db()
    new_key = decrypt(instance.agent_key_encrypted)
    assert new_key != old_key
    assert old_key not in response.content.decode() and new_key not in response.content.decode()
    from instances.agent_client import AgentClient, AgentError, endpoint_for

    assert AgentClient(endpoint_for(instance), new_key).status()["instance_id"] == "keyed-1"
    with pytest.raises(AgentError) as refused:
        AgentClient(endpoint_for(instance), old_key).status()
    assert refused.value.status_code == 401
    # The new key survives a restart (the local provider hands the current key to the agent).
    api.post("instances/keyed-1/restart")
    run_jobs()
    assert api.get("instances/keyed-1/runtime").json()["agent"]["reachable"] is True


def test_rotate_needs_a_running_instance(api, make_instance):
    make_instance(instance_id="off-1", state="stopped")
    assert_error(api.post("instances/off-1/rotate-agent-key"), 400, contains="while the instance is running")


def test_agent_refuses_requests_without_the_key(api, live):
    from ..helpers import instance_http

    live("locked-1")
    with instance_http("locked-1", gateway_key=False) as agent:
        assert agent.get("/health").status_code == 200
        for path in ("/api/status", "/config", "/tasks/x", "/anything"):
            assert agent.get(path).status_code == 401
            assert agent.get(path, headers={"X-Orchestrio-Agent-Key": "wrong"}).status_code == 401
