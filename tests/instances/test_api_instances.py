from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orchestrio.models import SubscriptionPlan
from instances.models import Instance, Operation

from ..factories import InstanceFactory
from ..helpers import Api, assert_error, assert_validation_error
from ..isolation import TenantIsolationContract


def test_create_answers_201_pending_with_a_queued_operation(api):
    response = api.post("instances", {"instance_id": "acme-prod-01", "labels": {"env": "prod"}})
    assert response.status_code == 201
    body = response.json()
    assert body["instance_id"] == "acme-prod-01"
    assert body["tenant_id"] == "acme-corp"
    assert body["state"] == "pending"
    assert body["blueprint_name"] == "OpenClaw" and body["plan_id"] == "openclaw-basic"
    assert body["region"] == "local" and body["provider"] == "local"
    assert body["health_status"] == "unknown"
    assert body["access_url"] == "http://acme-prod-01.instances.localhost:8000"  # PUBLIC_URL's scheme and port
    assert body["operation"]["kind"] == "create" and body["operation"]["status"] == "queued"
    assert body["labels"] == {"env": "prod"}
    assert body["created_at"].endswith("Z")
    import django_rq

    assert django_rq.get_queue("default").count == 1


@pytest.mark.parametrize(
    "public_url, access_url",
    [
        ("https://orchestrio.example.com", "https://web-01.instances.localhost"),
        ("https://orchestrio.example.com:8443/", "https://web-01.instances.localhost:8443"),
        ("http://127.0.0.1:8765", "http://web-01.instances.localhost:8765"),
    ],
)
def test_access_url_is_served_where_the_console_is(api, settings, public_url, access_url):
    settings.PUBLIC_URL = public_url.rstrip("/")
    InstanceFactory(tenant=api.tenant, instance_id="web-01")
    assert api.get("instances/web-01").json()["access_url"] == access_url


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({}, ("body", "instance_id")),
        ({"instance_id": "ab"}, ("body", "instance_id")),
        ({"instance_id": "Acme"}, ("body", "instance_id")),
        ({"instance_id": "-acme"}, ("body", "instance_id")),
        ({"instance_id": "acme-"}, ("body", "instance_id")),
        ({"instance_id": "a" * 64}, ("body", "instance_id")),
        ({"instance_id": "acme_01"}, ("body", "instance_id")),
        ({"instance_id": "cleanup"}, ("body", "instance_id")),
        ({"instance_id": "good-id", "blueprint_name": "No Spaces"}, ("body", "blueprint_name")),
        ({"instance_id": "good-id", "blueprint_name": "Unknown"}, ("body", "blueprint_name")),
        ({"instance_id": "good-id", "plan_id": "openclaw-mega"}, ("body", "plan_id")),
        ({"instance_id": "good-id", "region": "mars"}, ("body", "region")),
        ({"instance_id": "good-id", "region": "iad"}, ("body", "region")),  # AWS not enabled here
        ({"instance_id": "good-id", "labels": "env=prod"}, ("body", "labels")),
        ({"instance_id": "good-id", "labels": {"Bad Key": "x"}}, ("body", "labels", "Bad Key")),
        ({"instance_id": "good-id", "config": [1, 2]}, ("body", "config")),
    ],
)

def test_create_validation(api, body, loc):
    assert_validation_error(api.post("instances", body), loc)
    assert not Instance.objects.exists()


def test_instance_id_taken_is_409_even_across_tenants(api, other_api):
    assert api.post("instances", {"instance_id": "shared-name"}).status_code == 201
    assert_error(api.post("instances", {"instance_id": "shared-name"}), 409, contains="taken")
    assert_error(other_api.post("instances", {"instance_id": "shared-name"}), 409, contains="taken")


def test_destroyed_instances_free_their_id(api, make_instance):
    from django.utils import timezone

    make_instance(instance_id="reuse-me", state="destroyed", destroyed_at=timezone.now())
    assert api.post("instances", {"instance_id": "reuse-me"}).status_code == 201
    assert Instance.objects.filter(instance_id="reuse-me").count() == 2


def test_instance_limit_is_402_and_counts_stopped_and_suspended(api, tenant, make_instance):
    SubscriptionPlan.objects.filter(pk=tenant.plan_id).update(max_instances=2, max_running_instances=None)
    make_instance(state="stopped")
    make_instance(state="suspended")
    body = assert_error(api.post("instances", {"instance_id": "third"}), 402, contains="instances")
    assert body == {"detail": body["detail"], "limit": "instances", "plan": "pro"}


def test_running_limit_ignores_suspended(api, tenant, make_instance):
    SubscriptionPlan.objects.filter(pk=tenant.plan_id).update(max_instances=10, max_running_instances=1)
    make_instance(state="suspended")
    assert api.post("instances", {"instance_id": "runner"}).status_code == 201
    body = assert_error(api.post("instances", {"instance_id": "runner-two"}), 402)
    assert body["limit"] == "running_instances"


def test_start_over_the_running_limit_is_402(api, tenant, make_instance):
    SubscriptionPlan.objects.filter(pk=tenant.plan_id).update(max_running_instances=1)
    make_instance(state="running")
    make_instance(instance_id="sleeper", state="stopped")
    body = assert_error(api.post("instances/sleeper/start"), 402)
    assert body["limit"] == "running_instances"


def test_list_filters(api, make_instance):
    make_instance(instance_id="a-run", state="running", labels={"env": "prod", "team": "x"})
    make_instance(instance_id="b-stop", state="stopped", labels={"env": "dev"})
    make_instance(instance_id="c-err", state="error", labels={"env": "prod"})
    from django.utils import timezone

    make_instance(instance_id="d-gone", state="destroyed", destroyed_at=timezone.now())

    def ids(**query):
        return sorted(row["instance_id"] for row in api.get("instances", **query).json()["results"])

    assert ids() == ["a-run", "b-stop", "c-err"]
    assert ids(state="running") == ["a-run"]
    assert ids(label="env:prod") == ["a-run", "c-err"]
    assert ids(blueprint_name="OpenClaw") == ["a-run", "b-stop", "c-err"]
    assert ids(blueprint_name="Other") == []
    response = api.client.get("/api/v1/instances?label=env:prod&label=team:x", HTTP_AUTHORIZATION=f"Bearer {api.token}")
    assert [r["instance_id"] for r in response.json()["results"]] == ["a-run"]
    assert_validation_error(api.get("instances", state="dozing"), ("query", "state"))
    assert_validation_error(api.get("instances", label="no-colon"), ("query", "label"))


def test_list_uses_a_constant_number_of_queries(api, tenant):
    def count_queries():
        with CaptureQueriesContext(connection) as ctx:
            response = api.get("instances", limit=50)
        assert response.status_code == 200
        return len(ctx.captured_queries), response.json()["count"]

    api.get("tenant")  # the token's first use records last_used_at once; not part of the list's cost
    InstanceFactory.create_batch(3, tenant=tenant)
    few, count = count_queries()
    assert count == 3
    InstanceFactory.create_batch(30, tenant=tenant)
    for instance in Instance.objects.all()[:10]:
        Operation.objects.create(instance=instance, tenant=tenant, kind="stop", requested_by="x", requested_by_type="user")
    many, count = count_queries()
    assert count == 33
    assert many == few


def test_get_and_404(api, running):
    assert api.get("instances/web-01").json()["state"] == "running"
    assert_error(api.get("instances/nope-123"), 404, contains="no instance 'nope-123'")
    assert_error(api.post("instances/nope-123/stop"), 404)


def test_the_record_readers_agree_with_the_plain_orm(tenant, make_instance, other_api):
    """The single read and the list's page (`with_record`: LEFT JOINs for the unfinished
    operation and the live custom domain) find what plain prefetches find, for a plain instance
    and one with an operation, a domain, an error, labels and a health check; the operation is
    rendered as `Operation.summary()` (a 409's body) renders it; another tenant reads none."""
    from datetime import datetime, timezone as tz

    from django.db.models import Prefetch

    from instances import selectors
    from instances.api.serializers import InstanceSerializer
    from domains.models import CustomDomain

    make_instance(instance_id="plain-01", state="pending")
    full = make_instance(
        instance_id="full-01", state="error", error_message="boom", ip_address="10.0.0.7", labels={"env": "prod"}, provider="aws", region_id="iad",
        last_health_check=datetime(2026, 1, 2, 3, 4, 5, tzinfo=tz.utc), provider_instance_id="i-0abc",
    )  # fmt: skip
    Operation.objects.create(instance=full, tenant=tenant, kind="start", requested_by="a@example.com", requested_by_type="user")
    Operation.objects.create(instance=full, tenant=tenant, kind="stop", status="succeeded", requested_by="a@example.com", requested_by_type="user")
    CustomDomain.objects.create(instance=full, tenant=tenant, domain="old.example.com", verification_token="t", removed_at=datetime(2026, 1, 1, tzinfo=tz.utc))
    CustomDomain.objects.create(instance=full, tenant=tenant, domain="app.example.com", verification_token="t")
    reads = [selectors.live_instance_with_record(tenant=tenant, instance_id=i) for i in ("plain-01", "full-01")]
    oracle = Instance.objects.filter(tenant=tenant, destroyed_at__isnull=True).select_related("blueprint").prefetch_related(
        Prefetch("operations", queryset=Operation.objects.filter(status__in=("queued", "running")), to_attr="unfinished"),
        Prefetch("custom_domains", queryset=CustomDomain.objects.filter(removed_at__isnull=True), to_attr="live"),
    )  # fmt: skip
    expected = {}
    for instance in oracle:
        with pytest.raises(TypeError, match="with_record"):  # a record without them would be wrong, not slow
            InstanceSerializer(instance).data
        instance.live_domain_name = instance.live[0].domain if instance.live else None
        instance.unfinished_operation_pk = instance.unfinished[0].pk if instance.unfinished else None
        if instance.unfinished:
            instance.unfinished_operation = instance.unfinished[0]
        record = InstanceSerializer(instance).data
        assert record["operation"] == (instance.unfinished[0].summary() if instance.unfinished else None)
        expected[instance.instance_id] = record
    paged = selectors.instances_with_record_in_order(tenant=tenant, instance_ids=["full-01", "plain-01", "nope-01"])
    assert [instance.instance_id for instance in paged] == ["full-01", "plain-01"]  # in the order asked
    assert selectors.instances_with_record_in_order(tenant=other_api.tenant, instance_ids=["full-01", "plain-01"]) == []
    assert selectors.live_instance_with_record(tenant=other_api.tenant, instance_id="full-01") is None
    for got in reads + paged:
        assert InstanceSerializer(got).data == expected[got.instance_id]
        assert list(InstanceSerializer(got).data) == [name for name in InstanceSerializer().fields]
    record = expected["full-01"]
    assert record["custom_domain"] == "app.example.com" and record["operation"]["kind"] == "start" and record["error_message"] == "boom"
    assert record["last_health_check"] == "2026-01-02T03:04:05.000000Z" and record["labels"] == {"env": "prod"}
    assert expected["plain-01"]["custom_domain"] is None and expected["plain-01"]["operation"] is None


def test_model_hooks_apply_on_the_list_and_the_detail(api, tenant, make_instance, monkeypatch):
    """Instances are built by the ORM (`Model.from_db`), so an overridden `from_db` or an
    `__init__` signal applies to what the list and the detail show."""
    from django.db.models.signals import post_init

    from instances.models import Blueprint

    make_instance(instance_id="hooked-01", state="running")
    original = Instance.from_db.__func__
    built: list[str] = []

    def from_db(cls, db, field_names, values):
        instance = original(cls, db, field_names, values)
        built.append(instance.instance_id)
        instance.instance_type = "from-db.hook"
        return instance

    monkeypatch.setattr(Instance, "from_db", classmethod(from_db))
    initialised: list[str] = []

    def on_init(sender, instance, **kwargs):
        initialised.append(instance.name)

    post_init.connect(on_init, sender=Blueprint)
    try:
        detail = api.get("instances/hooked-01").json()
        listed = api.get("instances").json()["results"]
    finally:
        post_init.disconnect(on_init, sender=Blueprint)
    assert detail["instance_type"] == "from-db.hook"
    assert [row["instance_type"] for row in listed] == ["from-db.hook"]
    assert built.count("hooked-01") >= 2
    assert initialised.count(detail["blueprint_name"]) >= 2


def test_delete_then_again_reports_already_deleted(api, running):
    assert api.delete("instances/web-01").status_code == 202
    again = api.delete("instances/web-01")
    assert again.status_code == 200 and again.json()["already_deleted"] is True


def test_resize_validation(api, running):
    assert_validation_error(api.put("instances/web-01/resize", {}), ("body",))
    assert_validation_error(api.put("instances/web-01/resize", {"plan_id": "openclaw-pro", "new_instance_type": "t3.large"}), ("body",))
    assert_validation_error(api.put("instances/web-01/resize", {"new_instance_type": "huge"}), ("body", "new_instance_type"))
    assert_validation_error(api.put("instances/web-01/resize", {"plan_id": "no-such-plan"}), ("body", "plan_id"))
    assert_error(api.put("instances/web-01/resize", {"new_instance_type": "t3.small"}), 400, contains="already")
    response = api.put("instances/web-01/resize", {"new_instance_type": "m5.large"})
    assert response.status_code == 202


def test_create_is_idempotent_with_a_key(api):
    headers = {"Idempotency-Key": "create-acme-1"}
    first = api.post("instances", {"instance_id": "idem-01"}, headers=headers)
    second = api.post("instances", {"instance_id": "idem-01"}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert Instance.objects.filter(instance_id="idem-01").count() == 1
    assert Operation.objects.count() == 1
    found = api.get("instances/by-idempotency-key/create-acme-1").json()
    assert found["found"] is True and found["instance_id"] == "idem-01" and found["state"] == "pending"
    assert found["provisioning_stage"] == "accepted" and found["logs"][0]["stage"] == "accepted"
    missing = api.get("instances/by-idempotency-key/never-used").json()
    assert missing == {"found": False, "instance_id": None, "state": None, "provisioning_stage": None, "logs": []}


def test_by_idempotency_key_is_tenant_scoped(api, other_api):
    api.post("instances", {"instance_id": "mine-01"}, headers={"Idempotency-Key": "k1"})
    assert other_api.get("instances/by-idempotency-key/k1").json()["found"] is False


def test_cleanup_destroys_error_instances(api, make_instance):
    make_instance(instance_id="bad-1", state="error")
    make_instance(instance_id="bad-2", state="error")
    make_instance(instance_id="good", state="running")
    assert api.post("instances/cleanup").json() == {"cleaned": 2, "errors": 0}
    states = dict(Instance.objects.values_list("instance_id", "state"))
    assert states == {"bad-1": "destroying", "bad-2": "destroying", "good": "running"}


def test_cleanup_and_rotate_need_admin(member_api, running):
    assert_error(member_api.post("instances/cleanup"), 403, contains="owner or admin")
    assert_error(member_api.post("instances/web-01/rotate-agent-key"), 403)
    assert member_api.post("instances/web-01/stop").status_code == 202


def test_instance_scoped_token(api, tenant, owner, make_instance):
    make_instance(instance_id="scoped-1", state="running")
    make_instance(instance_id="other-1", state="running")
    body = api.post("api-tokens", {"name": "one instance", "instance_id": "scoped-1"}).json()
    scoped = Api(body["token"])
    assert [r["instance_id"] for r in scoped.get("instances").json()["results"]] == ["scoped-1"]
    assert scoped.get("instances/scoped-1").status_code == 200
    assert_error(scoped.get("instances/other-1"), 404)
    assert_error(scoped.post("instances/other-1/stop"), 404)
    assert scoped.post("instances/scoped-1/stop").status_code == 202
    assert_error(scoped.post("instances", {"instance_id": "new-one"}), 403, contains="scoped")
    assert_error(scoped.post("instances/cleanup"), 403)
    assert_error(scoped.get("api-tokens"), 403, contains="scoped")
    assert_error(scoped.get("blueprints"), 403)


def test_lifecycle_actions_are_audited(api, running):
    from orchestrio.models import ActivityEvent

    api.post("instances/web-01/stop")
    event = ActivityEvent.objects.get(action="instance.stop")
    assert event.object_id == "web-01" and event.actor_type == "token"


def test_operations_list(api, running):
    api.post("instances/web-01/stop")
    body = api.get("instances/web-01/operations").json()
    assert body["count"] == 1
    row = body["results"][0]
    assert set(row) == {"id", "kind", "status", "requested_by", "created_at", "started_at", "finished_at", "error_code", "error_message", "reason"}
    assert row["reason"] is None  # a person asked (an idle sleep says "idle": tests/gateway/test_sleep_wake.py)
    assert api.get("instances/web-01/operations", status="succeeded").json()["count"] == 0
    assert_validation_error(api.get("instances/web-01/operations", status="weird"), ("query", "status"))


class TestInstanceIsolation(TenantIsolationContract):
    endpoints = [
        ("GET", "instances/{id}", None),
        ("DELETE", "instances/{id}", None),
        ("GET", "instances/{id}/wait?state=running&timeout=1", None),
        ("GET", "instances/{id}/operations", None),
        ("GET", "instances/{id}/logs", None),
        ("GET", "instances/{id}/health", None),
        ("GET", "instances/{id}/runtime", None),
        ("GET", "instances/{id}/config", None),
        ("PATCH", "instances/{id}/config", {"a": 1}),
        ("POST", "instances/{id}/stop", None),
        ("POST", "instances/{id}/start", None),
        ("POST", "instances/{id}/restart", None),
        ("POST", "instances/{id}/suspend", None),
        ("POST", "instances/{id}/resume", None),
        ("POST", "instances/{id}/sleep", None),
        ("POST", "instances/{id}/wake", None),
        ("PATCH", "instances/{id}", {"idle_timeout_seconds": 600}),
        ("PUT", "instances/{id}/resize", {"plan_id": "openclaw-pro"}),
        ("POST", "instances/{id}/rotate-agent-key", None),
    ]

    def make_object(self, api):
        InstanceFactory(instance_id="private-1", tenant=api.tenant, state="stopped")
        return {"id": "private-1"}

    def test_other_tenant_list_excludes_it(self, other_api, owned):
        assert other_api.get("instances").json()["count"] == 0
