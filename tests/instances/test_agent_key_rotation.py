"""Rotating the agent key holds no row lock (no transaction at all) while it talks to the agent,
and a rotation cut short after the agent took its key is finished by the next one."""

from __future__ import annotations

import pytest
from django.db import connection

from instances import services
from instances.agent_client import AgentClient, AgentError, AgentUnreachable
from instances.models import Instance
from orchestrio import crypto
from orchestrio.errors import UpstreamError
from orchestrio.tenancy import Actor

ACTOR = Actor.system("test")


class FakeAgent:
    """Answers set_key like the agent: only with the key it holds."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.calls: list[dict] = []
        self.down = False

    def set_key(self, client: AgentClient, new_key: str) -> dict:
        self.calls.append({"presented": client.key, "in_transaction": connection.in_atomic_block})
        if self.down:
            raise AgentUnreachable("connection refused")
        if client.key != self.key:
            raise AgentError(401, "invalid agent key")
        self.key = new_key
        return {"rotated": True}


@pytest.fixture
def agent(monkeypatch, transactional_db, tenant):
    from tests.factories import InstanceFactory

    instance = InstanceFactory(tenant=tenant, instance_id="rot-1", state="running", ip_address="127.0.0.1", port=1)
    fake = FakeAgent(crypto.decrypt(instance.agent_key_encrypted))
    monkeypatch.setattr(AgentClient, "set_key", lambda client, new_key: fake.set_key(client, new_key))
    return instance, fake


def test_the_agent_is_told_outside_any_transaction(agent):
    instance, fake = agent
    rotated = services.instance_rotate_agent_key(instance=instance, actor=ACTOR)
    assert fake.calls == [{"presented": crypto.decrypt(instance.agent_key_encrypted), "in_transaction": False}]
    row = Instance.objects.get(pk=instance.pk)
    assert crypto.decrypt(row.agent_key_encrypted) == fake.key != crypto.decrypt(instance.agent_key_encrypted)
    assert row.agent_key_pending_encrypted == "" and rotated.agent_key_rotated_at is not None


def test_a_refused_rotation_keeps_the_old_key_and_drops_the_pending_one(agent):
    instance, fake = agent
    fake.down = True
    with pytest.raises(UpstreamError):
        services.instance_rotate_agent_key(instance=instance, actor=ACTOR)
    row = Instance.objects.get(pk=instance.pk)
    assert row.agent_key_encrypted == instance.agent_key_encrypted and row.agent_key_pending_encrypted == ""


def test_a_rotation_cut_short_is_finished_by_the_next(agent):
    instance, fake = agent
    # The agent took a key whose rotation never reached its last step.
    lost = "oak_lost-rotation"
    fake.key = lost
    Instance.objects.filter(pk=instance.pk).update(agent_key_pending_encrypted=crypto.encrypt(lost))
    services.instance_rotate_agent_key(instance=instance, actor=ACTOR)
    assert [call["presented"] for call in fake.calls] == [crypto.decrypt(instance.agent_key_encrypted), lost]
    row = Instance.objects.get(pk=instance.pk)
    assert crypto.decrypt(row.agent_key_encrypted) == fake.key and row.agent_key_pending_encrypted == ""
