from __future__ import annotations

import pytest

from instances.models import Blueprint

from ..factories import InstanceFactory
from ..helpers import assert_error, assert_validation_error
from ..isolation import TenantIsolationContract

FULL = {
    "name": "Custom-1",
    "imageId": "ami-0123456789abcdef0",
    "instanceType": "t3.medium",
    "subnetIds": ["subnet-0abc1234"],
    "securityGroupIds": ["sg-0abc1234"],
    "keyName": "ops",
    "iamInstanceProfile": "orchestrio-ssm",
    "userData": "#!/bin/sh\necho hi\n",
    "tags": {"team": "core"},
    "healthPath": "/healthz",
    "agentPort": 9000,
    "taskRoots": ["/opt/custom/scripts"],
}


def test_list_includes_builtin_and_own(api, tenant, other_api):
    Blueprint.objects.create(tenant=tenant, name="Mine")
    Blueprint.objects.create(tenant=other_api.tenant, name="Theirs")
    rows = api.get("blueprints").json()["results"]
    assert [(r["name"], r["builtin"]) for r in rows] == [("Function host", True), ("Mine", False), ("OpenClaw", True)]
    assert api.get("blueprints", provider_api="RunInstances").json()["count"] == 3


def test_create_accepts_camel_case(api):
    response = api.post("blueprints", FULL)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["image_id"] == "ami-0123456789abcdef0" and body["subnet_ids"] == ["subnet-0abc1234"]
    assert body["health_path"] == "/healthz" and body["agent_port"] == 9000 and body["builtin"] is False
    snake = {"name": "Custom-2", "image_id": "ami-0123456789abcdef0", "health_path": "/h"}
    assert api.post("blueprints", snake).status_code == 201


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"name": "bad name"}, ("body", "name")),
        ({"name": "x" * 64}, ("body", "name")),
        ({"name": "ok", "imageId": "ubuntu"}, ("body", "image_id")),
        ({"name": "ok", "instance_type": "big"}, ("body", "instance_type")),
        ({"name": "ok", "subnet_ids": ["net-1"]}, ("body", "subnet_ids", 0)),
        ({"name": "ok", "security_group_ids": "sg-0abc1234"}, ("body", "security_group_ids")),
        ({"name": "ok", "health_path": "health"}, ("body", "health_path")),
        ({"name": "ok", "agent_port": 70000}, ("body", "agent_port")),
        ({"name": "ok", "tags": {"orchestrio:instance_id": "x"}}, ("body", "tags")),
        ({"name": "ok", "provider_api": "SpotFleet", "machine_types": {"t3.micro": "many"}}, ("body", "machine_types", "t3.micro")),
        ({"name": "ok", "provider_api": "Nope"}, ("body", "provider_api")),
        ({"name": "ok", "task_roots": ["relative/path"]}, ("body", "task_roots", 0)),
        ({"name": "ok", "user_data": "x" * 16385}, ("body", "user_data")),
    ],
)
def test_create_validation(api, body, loc):
    assert_validation_error(api.post("blueprints", body), loc)


def test_names_are_unique_and_builtin_names_reserved(api):
    assert api.post("blueprints", {"name": "Dup"}).status_code == 201
    assert_error(api.post("blueprints", {"name": "Dup"}), 409)
    assert_error(api.post("blueprints", {"name": "OpenClaw"}), 409, contains="reserved")


def test_builtin_is_read_only(api):
    assert api.get("blueprints/OpenClaw").json()["builtin"] is True
    assert_error(api.patch("blueprints/OpenClaw", {"health_path": "/x"}), 403, contains="read-only")
    assert_error(api.put("blueprints/OpenClaw", {"name": "OpenClaw"}), 403)
    assert_error(api.delete("blueprints/OpenClaw"), 403)


def test_update_and_rename_refused(api):
    api.post("blueprints", {"name": "Editable", "health_path": "/a"})
    body = api.patch("blueprints/Editable", {"healthPath": "/b"}).json()
    assert body["health_path"] == "/b"
    assert_validation_error(api.patch("blueprints/Editable", {"name": "Renamed"}), ("body", "name"))
    replaced = api.put("blueprints/Editable", {"name": "Editable", "agent_port": 8081}).json()
    assert replaced["agent_port"] == 8081


def test_delete_in_use_is_409_then_allowed(api, tenant):
    api.post("blueprints", {"name": "Used"})
    instance = InstanceFactory(tenant=tenant, blueprint=Blueprint.objects.get(name="Used"), state="running")
    body = assert_error(api.delete("blueprints/Used"), 409, contains="used by live instances")
    assert instance.instance_id in body["detail"]
    from django.utils import timezone

    instance.state, instance.destroyed_at = "destroyed", timezone.now()
    instance.save()
    assert api.delete("blueprints/Used").status_code == 204
    assert_error(api.get("blueprints/Used"), 404)
    # the name is free again; the old row stays for the destroyed instance's history
    assert api.post("blueprints", {"name": "Used"}).status_code == 201
    assert Blueprint.objects.filter(name="Used").count() == 2


def test_validate_endpoint(api):
    ok = api.post("blueprints/validate", FULL).json()
    assert ok == {"valid": True, "errors": [], "warnings": []}
    bad = api.post("blueprints/validate", {"name": "bad name", "agentPort": 0}).json()
    assert bad["valid"] is False
    assert {tuple(e["loc"]) for e in bad["errors"]} == {("body", "name"), ("body", "agent_port")}
    warned = api.post("blueprints/validate", {"name": "Bare"}).json()
    assert warned["valid"] is True and any("subnet" in w for w in warned["warnings"])
    taken = api.post("blueprints/validate", {"name": "OpenClaw"}).json()
    assert taken["valid"] is False and taken["errors"][0]["type"] == "conflict"


@pytest.mark.parametrize("raw", ["[1, 2]", '"OpenClaw"', "null"])
def test_validate_refuses_a_body_that_is_not_an_object(api, raw):
    assert_validation_error(api.request("POST", "blueprints/validate", raw=raw), ("body",))


def test_instances_use_own_blueprint(api):
    api.post("blueprints", {"name": "Mine", "health_path": "/health"})
    assert api.post("instances", {"instance_id": "with-mine", "blueprint_name": "Mine"}).json()["blueprint_name"] == "Mine"


def test_other_tenants_blueprint_cannot_be_used(api, other_api):
    other_api.post("blueprints", {"name": "Secret"})
    assert_validation_error(api.post("instances", {"instance_id": "x-1", "blueprint_name": "Secret"}), ("body", "blueprint_name"))


class TestBlueprintIsolation(TenantIsolationContract):
    endpoints = [
        ("GET", "blueprints/{name}", None),
        ("PATCH", "blueprints/{name}", {"health_path": "/x"}),
        ("PUT", "blueprints/{name}", {"name": "Private"}),
        ("DELETE", "blueprints/{name}", None),
    ]

    def make_object(self, api):
        assert api.post("blueprints", {"name": "Private"}).status_code == 201
        return {"name": "Private"}


FLEET_PROBLEMS = [
    ({"provider_api": "EC2Fleet", "machine_types": {f"t3.x{i}": 1 for i in range(21)}}, "machine_types", "1 to 20"),
    ({"provider_api": "EC2Fleet", "machine_types": {"t3.micro": 0}}, "machine_types", "from 1 to 1000"),
    ({"provider_api": "SpotFleet", "machine_types": {"big": 1}}, "machine_types", "not an instance type"),
    ({"provider_api": "EC2Fleet", "on_demand_percentage": 101}, "on_demand_percentage", "0 to 100"),
    ({"provider_api": "EC2Fleet", "allocation_strategy": "lowestPrice"}, "allocation_strategy", "lowest-price"),
    ({"provider_api": "SpotFleet", "allocation_strategy": "lowest-price"}, "allocation_strategy", "lowestPrice"),
    ({"machine_types": {"t3.micro": 1}}, "machine_types", "EC2Fleet and SpotFleet blueprints only"),
    ({"on_demand_percentage": 50}, "on_demand_percentage", "RunInstances launches on-demand"),
]


def test_fleet_settings_are_validated(api):
    """EC2Fleet/SpotFleet settings (machine_types, on_demand_percentage, allocation_strategy) are
    checked by the service, on create, on validate and on update (merged with what is saved)."""
    for fields, loc, words in FLEET_PROBLEMS:
        detail = assert_validation_error(api.post("blueprints", {"name": "Bad", **fields}), ("body", loc))
        assert words in " ".join(issue["msg"] for issue in detail), (fields, detail)
        checked = api.post("blueprints/validate", {"name": "Bad", **fields}).json()
        assert checked["valid"] is False and ["body", loc] in [e["loc"] for e in checked["errors"]], (fields, checked)
    good = {"name": "Fleet", "provider_api": "EC2Fleet", "machine_types": {"t3.micro": 1, "t3.small": 2.0}, "allocation_strategy": "diversified"}
    assert api.post("blueprints/validate", good).json()["valid"] is True
    created = api.post("blueprints", good)
    assert created.status_code == 201, created.content
    assert created.json()["machine_types"] == {"t3.micro": 1, "t3.small": 2} and created.json()["on_demand_percentage"] == 100
    patched = api.patch("blueprints/Fleet", {"machine_types": {"c6i.large": 4, "m6i.large": 4}, "on_demand_percentage": 25})
    assert patched.status_code == 200, patched.content
    assert patched.json()["machine_types"] == {"c6i.large": 4, "m6i.large": 4} and patched.json()["on_demand_percentage"] == 25
    assert_validation_error(api.patch("blueprints/Fleet", {"allocation_strategy": "capacityOptimized"}), ("body", "allocation_strategy"))
    # Switching to RunInstances with the fleet settings left is refused (clear them with it).
    assert_validation_error(api.patch("blueprints/Fleet", {"provider_api": "RunInstances"}), ("body", "machine_types"))
    switched = api.patch("blueprints/Fleet", {"provider_api": "RunInstances", "machine_types": {}, "on_demand_percentage": 100, "allocation_strategy": ""})
    assert switched.status_code == 200, switched.content
    # Fleets are AWS's: a fleet blueprint on a local region is refused before anything is created.
    assert api.patch("blueprints/Fleet", {"provider_api": "SpotFleet"}).status_code == 200
    detail = assert_validation_error(api.post("instances", {"instance_id": "fleet-local", "blueprint_name": "Fleet", "region": "local"}), ("body", "region"))
    assert "pick an AWS region" in detail[0]["msg"]
