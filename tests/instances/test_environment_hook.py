"""The instance's environment is one set merged from every app's part (instances.hooks): a push
by one app never drops another's, and a deployment's own secret wins over an add-on's URL."""

from __future__ import annotations

from instances import hooks


def test_every_contributor_is_registered_with_its_priority():
    assert {name: priority for name, (priority, _) in hooks._environment.items()} == {"deployment": 10, "addons": 0}


def test_parts_merge_and_one_can_be_replaced_for_a_push(monkeypatch):
    monkeypatch.setattr(hooks, "_environment", {})
    hooks.on_environment("deployment", lambda *, instance: {"API_KEY": "old", "DATABASE_URL": "mine"}, priority=10)
    hooks.on_environment("addons", lambda *, instance: {"DATABASE_URL": "addon", "REDIS_URL": "r"})
    assert hooks.instance_environment(object()) == {"API_KEY": "old", "DATABASE_URL": "mine", "REDIS_URL": "r"}
    # A deployment applying a new revision pushes its new secrets with the add-ons' URLs kept.
    assert hooks.instance_environment(object(), replace={"deployment": {"API_KEY": "new"}}) == {"API_KEY": "new", "DATABASE_URL": "addon", "REDIS_URL": "r"}
