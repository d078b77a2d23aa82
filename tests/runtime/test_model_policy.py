"""The model policy (issue 21, item 3): validated against the model catalogue, stored in the
instance's config and pushed to its agent, which enforces it on chat."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from instances.agent_client import agent_client_for
from runtime.models import LanguageModel

from ..factories import InstanceFactory
from ..helpers import assert_error, assert_validation_error, local_instance


def test_the_policy_is_validated_against_the_catalogue(api, member_api, other_api, tenant):
    InstanceFactory(tenant=tenant, instance_id="pol-1", state="stopped")
    assert api.get("instances/pol-1/model-policy").json() == {"instance_id": "pol-1", "allowed_models": [], "default_model": None, "max_tokens_per_day": None}
    listed = api.get("models").json()
    assert set(listed) == {"count", "next", "previous", "results"}  # a list like every other (API.md)
    catalogue = {m["id"] for m in listed["results"]}
    assert {"default", "openclaw-fast", "openclaw-large"} <= catalogue

    assert_validation_error(api.put("instances/pol-1/model-policy", {"allowed_models": ["gpt-nope"]}), ("body", "allowed_models", 0))
    assert_validation_error(api.put("instances/pol-1/model-policy", {"allowed_models": []}), ("body", "allowed_models"))
    assert_validation_error(api.put("instances/pol-1/model-policy", {"allowed_models": ["openclaw-fast"], "default_model": "openclaw-large"}), ("body", "default_model"))
    assert_validation_error(api.put("instances/pol-1/model-policy", {"allowed_models": ["openclaw-fast"], "max_tokens_per_day": 0}), ("body", "max_tokens_per_day"))
    assert_validation_error(api.put("instances/pol-1/model-policy", {"allowed_models": ["openclaw-fast", "openclaw-fast"]}), ("body", "allowed_models"))
    LanguageModel.objects.filter(pk="openclaw-large").update(available=False)
    assert_validation_error(api.put("instances/pol-1/model-policy", {"allowed_models": ["openclaw-large"]}), ("body", "allowed_models", 0))

    saved = member_api.put("instances/pol-1/model-policy", {"allowed_models": ["openclaw-fast", "default"], "max_tokens_per_day": 5000})
    assert saved.status_code == 200, saved.content
    assert saved.json() == {
        "instance_id": "pol-1", "allowed_models": ["openclaw-fast", "default"], "default_model": "openclaw-fast", "max_tokens_per_day": 5000,
        "applied": False, "apply_error": None,  # stopped: it reaches the agent with the config when it starts
    }  # fmt: skip
    assert api.get("instances/pol-1/config").json()["config"]["model_policy"]["allowed_models"] == ["openclaw-fast", "default"]
    # No budget any more: the key goes (null removes it in the merge).
    assert api.put("instances/pol-1/model-policy", {"allowed_models": ["default"]}).json()["max_tokens_per_day"] is None
    # The config's merge patch cannot set it past the catalogue.
    assert_validation_error(api.patch("instances/pol-1/config", {"model_policy": {"allowed_models": ["anything"]}}), ("body", "model_policy"))
    assert_error(other_api.put("instances/pol-1/model-policy", {"allowed_models": ["default"]}), 404)
    assert_error(other_api.get("instances/pol-1/model-policy"), 404)


@pytest.mark.slow
def test_the_agent_enforces_the_policy(api, live):
    live("pol-2")
    saved = api.put("instances/pol-2/model-policy", {"allowed_models": ["openclaw-fast", "openclaw-large"], "max_tokens_per_day": 40}).json()
    assert saved["applied"] is True
    assert agent_client_for(local_instance("pol-2")).get_config()["model_policy"]["allowed_models"] == ["openclaw-fast", "openclaw-large"]

    refused = api.post("instances/pol-2/chat", {"message": "hi", "model": "default"})
    body = assert_validation_error(refused, ("body", "model"))
    assert refused.json()["allowed_models"] == ["openclaw-fast", "openclaw-large"] and "not allowed" in body[0]["msg"]
    assert api.post("instances/pol-2/chat", {"message": "hi"}).json()["model"] == "openclaw-fast"  # the default
    assert api.post("instances/pol-2/chat", {"message": "x" * 200, "model": "openclaw-large"}).status_code == 200  # crosses the budget

    over = api.post("instances/pol-2/chat", {"message": "one more"})
    assert_error(over, 429, contains="budget")
    now = datetime.now(timezone.utc)
    to_midnight = 86400 - (now.hour * 3600 + now.minute * 60 + now.second)
    assert abs(int(over["Retry-After"]) - to_midnight) <= 5
    streamed = api.post("instances/pol-2/chat", {"message": "one more"}, headers={"Accept": "text/event-stream"})
    assert streamed.status_code == 429 and streamed["Retry-After"]

    # A bigger budget lets chats through again at once.
    api.put("instances/pol-2/model-policy", {"allowed_models": ["openclaw-fast"], "max_tokens_per_day": 100000})
    assert api.post("instances/pol-2/chat", {"message": "one more"}).status_code == 200


def test_staff_edit_the_catalogue_in_the_admin_audited(client, db):
    from django.contrib.auth import get_user_model

    from orchestrio.models import ActivityEvent

    staff = get_user_model().objects.create_superuser("ops@orchestrio.example", "ops@orchestrio.example", "staff-password-1")
    client.force_login(staff)
    assert client.get("/admin/runtime/languagemodel/").status_code == 200
    form = {"id": "openclaw-fast", "name": "OpenClaw Fast", "price_in_per_1k": "0.001", "price_out_per_1k": "0.002", "available": "on", "sort_order": "1"}
    assert client.post("/admin/runtime/languagemodel/openclaw-fast/change/", form).status_code == 302
    assert str(LanguageModel.objects.get(pk="openclaw-fast").price_in_per_1k) == "0.001000"
    event = ActivityEvent.objects.get(action="admin.languagemodel.change")
    assert event.actor_type == "staff" and set(event.data["fields"]) == {"price_in_per_1k", "price_out_per_1k"}
    for path in ("/admin/runtime/agentusage/", "/admin/runtime/instanceruntime/"):
        assert client.get(path).status_code == 200
