"""The instance id rule has one home (`instances.hostnames`): the API, the console, the router and
a deployment's name all agree with it."""

from __future__ import annotations

import pytest
from django.conf import settings

from gateway import origin
from instances import hostnames

CANDIDATES = ["ok-1", "abc", "ab", "a" * 63, "a" * 64, "Upper-1", "-lead", "trail-", "dot.ted", "under_score", "api", "cleanup", "x1-y2-z3"]


@pytest.fixture
def console(client, tenant, owner):
    client.force_login(owner)
    return client


@pytest.mark.parametrize("candidate", CANDIDATES)
def test_api_console_and_router_agree_with_the_rule(api, console, candidate):
    valid = hostnames.instance_id_problem(candidate) is None
    created = api.post("instances", {"instance_id": candidate})
    assert created.status_code == (201 if valid else 422), created.content
    if not valid:
        assert created.json()["detail"][0]["loc"] == ["body", "instance_id"]
    api.delete(f"instances/{candidate}")
    # The console's form (another id, so that it is not taken)
    form_id = ("f" + candidate[1:]) if valid else candidate
    page = console.post("/instances/new", {"instance_id": form_id, "blueprint_name": "OpenClaw", "plan_id": "openclaw-basic", "region": "local"})
    assert (page.status_code == 302) == valid, form_id
    routed = origin.classify(f"{candidate.lower()}.{settings.BASE_DOMAIN}")
    assert routed.site is origin.Site.INSTANCE
    assert (routed.instance_id == candidate) == valid


def test_a_deployment_name_is_a_hostname_label_with_room_for_its_suffix(api):
    for name, ok in (("web-app", True), ("a" * 50, True), ("a" * 51, False), ("Web", False), ("ab", False)):
        response = api.post("deployments", {"name": name})
        assert (response.status_code == 201) == ok, (name, response.content)
        if ok:
            assert hostnames.instance_id_problem(response.json()["instance_id"]) is None
