"""Deployments: create, revisions, rollback (manual and automatic), encrypted secrets, deletion."""

from __future__ import annotations

import io
import json
import os

import pytest
from django.core.management import call_command
from django.db import connection

from orchestrio.models import SubscriptionPlan
from deployments.models import Deployment, DeploymentRevision
from instances.agent_client import agent_client_for
from instances.models import Instance
from orchestrio.models import ActivityEvent

from ..helpers import run_in_instance, assert_error, assert_validation_error, run_jobs
from ..isolation import TenantIsolationContract

pytestmark = pytest.mark.slow
SECRET = "sk_live_do-not-leak-4242"


def create(api, name="onboarding", **body):
    response = api.post("deployments", {"name": name, "config": {"timeout": 30}, "secrets": {"api_key": SECRET}, **body})
    assert response.status_code == 201, response.content
    return response.json()


def agent_config(deployment_id):
    instance = Deployment.objects.get(pk=deployment_id).instance
    return agent_client_for(instance).get_config()


def test_create_provisions_configures_and_checks_health(api):
    body = create(api)
    assert body["status"] == "provisioning" and body["revision"] == 0 and body["target_revision"] == 1
    assert body["id"].startswith("dep_") and body["instance_id"].startswith("onboarding-")
    assert body["secret_keys"] == ["api_key"] and SECRET not in json.dumps(body)
    assert body["webhook_url"].endswith(f"/gateway/{body['instance_id']}/onboarding")
    run_jobs()
    done = api.get(f"deployments/{body['id']}").json()
    assert done["status"] == "active" and done["revision"] == 1 and done["target_revision"] is None
    assert [(s["name"], s["status"]) for s in done["steps"]] == [("provision", "succeeded"), ("configure", "succeeded"), ("health_check", "succeeded"), ("done", "succeeded")]
    assert all(s["started_at"] for s in done["steps"][:3]) and all(s["finished_at"] for s in done["steps"])
    assert agent_config(body["id"]) == {"timeout": 30}
    instance = Instance.objects.get(instance_id=body["instance_id"])
    state_dir = os.path.join(instance.provider_data["dir"], "state")
    # The instance has its secrets, readable by its own user only, in memory (never on disk).
    inside = run_in_instance(api, instance.instance_id, 'cat "$ORCHESTRIO_SECRETS_FILE"; echo; stat -c "%a %u" "$ORCHESTRIO_SECRETS_FILE"; id -u')
    secrets_json, mode_owner, uid = inside["stdout"].splitlines()
    assert json.loads(secrets_json) == {"api_key": SECRET}
    assert mode_owner == f"600 {uid}" and uid != "0"
    assert "reloaded" in open(os.path.join(state_dir, "reloads.log")).read()  # the reload hook ran
    logs = api.get(f"deployments/{body['id']}/logs").json()["results"]
    assert any("in force and healthy" in line["message"] for line in logs)


def test_patch_makes_a_new_revision_and_rollback_applies_an_old_one(api):
    body = create(api)
    run_jobs()
    response = api.patch(f"deployments/{body['id']}", {"config": {"timeout": 60, "mode": "fast"}, "secrets": {"extra": "v2"}})
    assert response.status_code == 202 and response.json()["status"] == "updating"
    run_jobs()
    assert agent_config(body["id"]) == {"timeout": 60, "mode": "fast"}
    assert api.get(f"deployments/{body['id']}").json()["secret_keys"] == ["api_key", "extra"]
    assert_error(api.patch(f"deployments/{body['id']}", {"config": {"timeout": 60}}), 400, contains="changes nothing")

    assert api.post(f"deployments/{body['id']}/rollback", {"revision": 1}).status_code == 202
    run_jobs()
    current = api.get(f"deployments/{body['id']}").json()
    assert current["revision"] == 3 and current["status"] == "active"
    assert agent_config(body["id"]) == {"timeout": 30}  # the agent reports the config of the revision in force
    revisions = api.get(f"deployments/{body['id']}/revisions").json()["results"]
    assert [(r["number"], r["reason"].split(" by ")[0]) for r in revisions] == [(3, "rollback to revision 1"), (2, "updated"), (1, "created")]
    assert all(r["status"] == "applied" and r["healthy"] for r in revisions)
    stats = api.get(f"deployments/{body['id']}/stats").json()
    assert (stats["revisions"], stats["succeeded"], stats["failed"], stats["success_rate"]) == (3, 3, 0, 1.0)
    assert stats["rollbacks"] == {"manual": 1, "automatic": 0} and stats["duration"]["count"] == 3
    assert stats["last_deploy"]["revision"] == 3 and stats["last_deploy"]["status"] == "applied"
    assert [step["name"] for step in stats["steps"]] == ["provision", "configure", "health_check", "done"]
    assert_error(api.post(f"deployments/{body['id']}/rollback", {"revision": 3}), 400, contains="already in force")
    assert_validation_error(api.post(f"deployments/{body['id']}/rollback", {"revision": 9}), ("body", "revision"))


def test_secrets_merge_patch_removes_with_null(api):
    body = create(api)
    run_jobs()
    api.patch(f"deployments/{body['id']}", {"secrets": {"api_key": None, "token": "t"}})
    run_jobs()
    assert api.get(f"deployments/{body['id']}").json()["secret_keys"] == ["token"]


def test_failed_health_rolls_back_automatically(api):
    body = create(api)
    run_jobs()
    api.patch(f"deployments/{body['id']}", {"config": {"health": {"fail": True, "reason": "bad model name"}}})
    run_jobs()
    current = api.get(f"deployments/{body['id']}").json()
    revisions = {r["number"]: r for r in api.get(f"deployments/{body['id']}/revisions").json()["results"]}
    assert revisions[2]["status"] == "failed" and revisions[2]["healthy"] is False and "did not stay healthy" in revisions[2]["error"]
    assert revisions[3]["reason"].startswith("automatic rollback to revision 1: revision 2 failed at health_check")
    assert current["status"] == "active" and current["revision"] == 3
    stats = api.get(f"deployments/{body['id']}/stats").json()
    assert (stats["succeeded"], stats["failed"], stats["success_rate"]) == (2, 1, 0.6667)
    assert stats["rollbacks"] == {"manual": 0, "automatic": 1}
    assert next(step for step in stats["steps"] if step["name"] == "health_check")["failed"] == 1
    assert agent_config(body["id"]) == {"timeout": 30}
    assert ActivityEvent.objects.filter(action="deployment.failed").exists()


def test_failure_without_a_healthy_revision_stays_failed(api):
    body = create(api, config={"health": {"fail": True}})
    run_jobs()
    current = api.get(f"deployments/{body['id']}").json()
    assert current["status"] == "failed" and "health_check" in current["error"]
    steps = {s["name"]: s["status"] for s in current["steps"]}
    assert steps == {"provision": "succeeded", "configure": "succeeded", "health_check": "failed", "done": "skipped"}
    assert api.get(f"deployments/{body['id']}/revisions").json()["count"] == 1


def test_secrets_are_encrypted_at_rest_and_never_shown(api):
    body = create(api)
    run_jobs()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT secrets_encrypted FROM {DeploymentRevision._meta.db_table}")
        raw = [row[0] for row in cursor.fetchall()]
    assert raw and all(SECRET not in value and "api_key" not in value for value in raw)
    everything = json.dumps([api.get(f"deployments/{body['id']}").json(), api.get(f"deployments/{body['id']}/revisions").json(), api.get(f"deployments/{body['id']}/logs").json(), api.get("activity").json()])
    assert SECRET not in everything
    assert SECRET not in json.dumps(list(ActivityEvent.objects.values_list("data", flat=True)))


def test_key_rotation(api, settings):
    from cryptography.fernet import Fernet

    from orchestrio.crypto import decrypt

    body = create(api)
    old_token = DeploymentRevision.objects.get().secrets_encrypted
    new_key = Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS = [new_key, *settings.ENCRYPTION_KEYS]
    out = io.StringIO()
    call_command("rotate_encryption", stdout=out)
    assert "re-encrypted 1 value(s) of deployments.DeploymentRevision.secrets_encrypted" in out.getvalue()
    rotated = DeploymentRevision.objects.get().secrets_encrypted
    assert rotated != old_token
    settings.ENCRYPTION_KEYS = [new_key]  # the old key is gone: everything still decrypts
    assert json.loads(decrypt(rotated)) == {"api_key": SECRET}
    assert decrypt(Instance.objects.get(instance_id=body["instance_id"]).agent_key_encrypted).startswith("oak_")


def test_names_and_limits(api, tenant):
    create(api, name="dup-name")
    assert_error(api.post("deployments", {"name": "dup-name"}), 409)
    assert_validation_error(api.post("deployments", {"name": "Bad Name"}), ("body", "name"))
    assert_validation_error(api.post("deployments", {"name": "ok-name", "environment": "qa"}), ("body", "environment"))
    assert_validation_error(api.post("deployments", {"name": "ok-name", "secrets": {"bad key": "x"}}), ("body", "secrets", "bad key"))
    SubscriptionPlan.objects.filter(pk=tenant.plan_id).update(max_deployments=1)
    body = assert_error(api.post("deployments", {"name": "second"}), 402)
    assert body["limit"] == "deployments"


def test_rollback_needs_a_plan_with_it(api, tenant):
    body = create(api)
    run_jobs()
    api.patch(f"deployments/{body['id']}", {"config": {"x": 1}})
    run_jobs()
    SubscriptionPlan.objects.filter(pk=tenant.plan_id).update(feature_deployment_rollback=False)
    assert assert_error(api.post(f"deployments/{body['id']}/rollback", {"revision": 1}), 402)["limit"] == "deployment_rollback"


def test_busy_deployment_refuses_changes(api):
    body = create(api)
    assert_error(api.patch(f"deployments/{body['id']}", {"config": {"x": 1}}), 409, contains="provisioning")


def test_delete_production_needs_confirmation(api):
    body = create(api)
    run_jobs()
    assert_error(api.delete(f"deployments/{body['id']}"), 400, contains="?confirm=onboarding")
    assert_error(api.delete(f"deployments/{body['id']}?confirm=wrong"), 400)
    response = api.delete(f"deployments/{body['id']}?confirm=onboarding")
    assert response.status_code == 202 and response.json()["status"] == "deleted"
    run_jobs()
    assert Instance.objects.get(instance_id=body["instance_id"]).state == "destroyed"
    assert_error(api.get(f"deployments/{body['id']}"), 404)
    create(api, name="onboarding")  # the name is free again


def test_delete_staging_needs_no_confirmation(api):
    body = create(api, name="preview", environment="staging")
    assert api.delete(f"deployments/{body['id']}").status_code == 202
    run_jobs()


def test_webhook_url_reaches_the_instance(api):
    from django.test import Client

    body = create(api)
    run_jobs()
    path = body["webhook_url"].split("://", 1)[1].split("/", 1)[1]
    response = Client().post("/" + path, b'{"event": 1}', content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {api.token}")
    echo = json.loads(b"".join(response.streaming_content))
    assert echo["path"] == "/webhooks/onboarding"


class TestDeploymentIsolation(TenantIsolationContract):
    endpoints = [
        ("GET", "deployments/{id}", None),
        ("PATCH", "deployments/{id}", {"config": {"a": 1}}),
        ("DELETE", "deployments/{id}?confirm=hidden", None),
        ("GET", "deployments/{id}/revisions", None),
        ("POST", "deployments/{id}/rollback", {"revision": 1}),
        ("GET", "deployments/{id}/logs", None),
    ]

    def make_object(self, api):
        return {"id": create(api, name="hidden")["id"]}


def test_the_runtime_gives_out_nothing_derived_from_the_secrets(api):
    """/runtime used to carry secrets_digest, an unsalted SHA-256 of the secrets: a member who may
    not read them could test guesses of a short secret against it (issue 14, finding 12)."""
    import hashlib

    body = create(api)
    run_jobs()
    status = api.get(f"instances/{body['instance_id']}/runtime").json()["agent"]["status"]
    assert not [key for key in status if "secret" in key]
    digest = hashlib.sha256(json.dumps({"api_key": SECRET}, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert digest not in json.dumps(status) and SECRET not in json.dumps(status)


def test_the_list_reads_a_constant_number_of_queries(api, tenant):
    """The record's latest revision and its steps come with the page (selectors.with_latest_revision),
    not a query or two per deployment."""
    from django.test.utils import CaptureQueriesContext

    SubscriptionPlan.objects.filter(pk=tenant.plan_id).update(max_instances=10, max_running_instances=10)

    def list_queries():
        with CaptureQueriesContext(connection) as ctx:
            response = api.get("deployments")
        assert response.status_code == 200, response.content
        return len(ctx.captured_queries), response.json()["results"]

    create(api, name="first")
    create(api, name="second")
    few, listed = list_queries()
    assert [d["name"] for d in listed] == ["second", "first"] and all(d["config"] == {"timeout": 30} and d["secret_keys"] == ["api_key"] for d in listed)
    create(api, name="third")
    create(api, name="fourth")
    more, listed = list_queries()
    assert more == few, f"{few} queries for 2 deployments, {more} for 4"
    assert [d["name"] for d in listed] == ["fourth", "third", "second", "first"] and all(d["config"] == {"timeout": 30} for d in listed)
