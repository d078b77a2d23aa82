"""Add-ons of instances on AWS against moto (mock_aws): RDS PostgreSQL and ElastiCache Redis,
through the API and the operation's job, the poll sweep that follows AWS, typed AWS errors, and
the snapshots that stand in for dumps on AWS.

moto creates and deletes RDS instances at once and never finishes an ElastiCache deletion; where
a test needs AWS to be "still at it" (or done), it sets the state in moto's backend, as AWS
would move it. moto accepts ModifyReplicationGroup's AuthToken but ignores it, and ignores
DeleteReplicationGroup's FinalSnapshotIdentifier: what is sent is read from botocore's
`provide-client-params` event (the exact parameters of the call)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from botocore.stub import Stubber
from django.utils import timezone
from moto.core import DEFAULT_ACCOUNT_ID
from moto.elasticache.models import elasticache_backends
from moto.rds.models import RDSBackend, rds_backends

from addons import aws as engine
from addons import services
from addons.jobs import poll_due_addon_operations, run_addon_operation
from addons.models import AddOn, AddOnOperation
from instances.models import Blueprint, LogLine
from instances.providers import ProviderError, get_provider
from orchestrio.models import ActivityEvent

from ..helpers import assert_error, assert_validation_error, call_job, run_jobs
from ..instances.aws_fixtures import answer_with, aws, error_answer  # noqa: F401 - fixtures
from .test_addons_local import _Agent, agent  # noqa: F401 - fixtures

REGION = "us-east-1"


def _rds_backend():
    return rds_backends[DEFAULT_ACCOUNT_ID][REGION]


def _cache_backend():
    return elasticache_backends[DEFAULT_ACCOUNT_ID][REGION]


@pytest.fixture
def on_aws(aws, make_instance, agent):
    """A running instance on AWS (region iad, the OnAws blueprint with a subnet, a security group
    and a tag), whose agent is a local HTTP server recording the environment it is given."""
    return make_instance(
        instance_id="aws-web", provider="aws", region_id="iad", blueprint=Blueprint.objects.get(name="OnAws"), state="running",
        ip_address="127.0.0.1", port=agent.server_port, provider_instance_id="i-0123456789abcdef0",
    )  # fmt: skip


@pytest.fixture
def sent(aws):
    """The parameters of every RDS/ElastiCache call the engine makes: {operation name: [params]}."""
    calls: dict[str, list[dict]] = {}

    def record(params, model, **kwargs):
        calls.setdefault(model.name, []).append(dict(params))

    for service in ("rds", "elasticache"):
        get_provider("aws").client(service, REGION).meta.events.register(f"provide-client-params.{service}", record)
    return calls


@pytest.fixture
def rds_creating(monkeypatch):
    """RDS takes its time: a new instance is `creating`, without an endpoint, until the test says."""
    real = RDSBackend.create_db_instance

    def create(self, *args, **kwargs):
        database = real(self, *args, **kwargs)
        database.status = "creating"
        return database

    monkeypatch.setattr(RDSBackend, "create_db_instance", create)


def _create(api, engine_name="postgres", **body):
    response = api.post("instances/aws-web/addons", {"engine": engine_name, **body})
    assert response.status_code == 201, response.content
    return response.json()


def _operation(addon_id) -> AddOnOperation:
    return AddOnOperation.objects.filter(addon__addon_id=addon_id).order_by("-pk").first()


def _poll_again():
    """The poll sweep's next pass, its due time come (no sleeping)."""
    AddOnOperation.objects.filter(next_poll_at__isnull=False).update(next_poll_at=timezone.now() - timedelta(seconds=1))
    summary = call_job(poll_due_addon_operations)
    run_jobs()
    return summary


def _identifier(addon_id: str) -> str:
    name = "orchestrio-" + addon_id.removeprefix("addon_")
    assert len(name) + len("-g9999999") <= 40  # ElastiCache's limit, with room for restores
    return name


def _password(url: str) -> str:
    return url.split("@")[0].rsplit(":", 1)[1]


def _nothing_secret_recorded(*passwords):
    recorded = " ".join(LogLine.objects.values_list("message", flat=True)) + str(list(ActivityEvent.objects.values_list("data", flat=True)))
    recorded += " ".join(AddOnOperation.objects.values_list("error_message", flat=True)) + str(list(AddOn.objects.values_list("provider_data", "error_message")))
    for password in passwords:
        assert password not in recorded


def test_rds_lifecycle(api, on_aws, aws, sent, rds_creating):
    body = _create(api, plan="hobby")
    addon_id = body["addon_id"]
    # On AWS the endpoint comes later: no URL in the 201, none to reveal yet.
    assert body["provider"] == "aws" and body["host"] == "" and body["port"] is None and body["connection_url"] is None
    assert body["version"] == "16"
    assert_error(api.post(f"addons/{addon_id}/reveal"), 400, contains="no endpoint on AWS yet")

    run_jobs()
    identifier = _identifier(addon_id)
    (params,) = sent["CreateDBInstance"]
    assert params["DBInstanceIdentifier"] == identifier and params["Engine"] == "postgres" and params["EngineVersion"] == "16"
    assert params["DBInstanceClass"] == "db.t4g.micro" and params["AllocatedStorage"] == 20 and params["StorageEncrypted"] is True
    assert params["PubliclyAccessible"] is False and params["MasterUsername"] == "app" and params["DBName"] == "app"
    # In the instance's VPC: a subnet group of the add-on's own from the blueprint's subnets, and its security group.
    assert params["DBSubnetGroupName"] == identifier and params["VpcSecurityGroupIds"] == [aws.group]
    assert sent["CreateDBSubnetGroup"][0]["SubnetIds"] == [aws.subnet]
    tags = {tag["Key"]: tag["Value"] for tag in params["Tags"]}
    assert tags["orchestrio:tenant_id"] == "acme-corp" and tags["orchestrio:instance_id"] == "aws-web" and tags["orchestrio:addon_id"] == addon_id
    assert tags["orchestrio:managed_by"] == "orchestrio" and tags["team"] == "core"  # the blueprint's tags too

    # Still creating: the job handed the operation to the poll sweep.
    op = _operation(addon_id)
    assert op.status == "running" and op.next_poll_at is not None
    assert api.get(f"addons/{addon_id}").json()["status"] == "provisioning"
    assert _poll_again() == {"enqueued": 1}
    assert api.get(f"addons/{addon_id}").json()["status"] == "provisioning"
    assert len(sent["CreateDBInstance"]) == 1  # a poll looks, it never creates again

    _rds_backend().databases[identifier].status = "available"
    _poll_again()
    record = api.get(f"addons/{addon_id}").json()
    assert record["status"] == "available", record
    assert record["host"] == f"{identifier}.aaaaaaaaaa.us-east-1.rds.amazonaws.com" and record["port"] == 5432
    url = api.post(f"addons/{addon_id}/reveal").json()["connection_url"]
    assert url == f"postgres://app:{_password(url)}@{record['host']}:5432/app?sslmode=require"
    assert _rds_backend().databases[identifier]._master_user_password == _password(url)  # the control plane's password
    assert _Agent.received[-1] == {"DATABASE_URL": url}  # the instance sees it
    assert _operation(addon_id).next_poll_at is None

    # Rotation: ModifyDBInstance MasterUserPassword, applied now, then waited for.
    assert api.post(f"addons/{addon_id}/rotate-credentials").status_code == 202
    run_jobs()
    (modify,) = sent["ModifyDBInstance"]
    assert modify["ApplyImmediately"] is True and modify["DBInstanceIdentifier"] == identifier
    _poll_again()
    assert api.get(f"addons/{addon_id}").json()["credentials_rotated_at"]
    new_url = api.post(f"addons/{addon_id}/reveal").json()["connection_url"]
    assert new_url != url and modify["MasterUserPassword"] == _password(new_url)
    assert _rds_backend().databases[identifier]._master_user_password == _password(new_url)
    assert len(sent["ModifyDBInstance"]) == 1  # sent once, however many looks
    assert _Agent.received[-1] == {"DATABASE_URL": new_url}

    # Destroy: a final snapshot by default, then the add-on's subnet group.
    assert api.delete(f"addons/{addon_id}?confirm={addon_id}").status_code == 202
    run_jobs()
    assert sent["DeleteDBInstance"][0]["FinalDBSnapshotIdentifier"] == f"{identifier}-final"
    assert identifier not in _rds_backend().databases
    assert f"{identifier}-final" in _rds_backend().database_snapshots
    assert identifier not in _rds_backend().subnet_groups
    assert api.get(f"addons/{addon_id}").status_code == 404
    addon = AddOn.objects.get(addon_id=addon_id)
    assert addon.status == "deleted" and addon.provider_data["final_snapshot_id"] == f"{identifier}-final"
    assert LogLine.objects.filter(message__contains=f"final snapshot {identifier}-final is kept in AWS").exists()
    assert _Agent.received[-1] == {}
    _nothing_secret_recorded(_password(url), _password(new_url))


def test_rds_destroy_without_a_final_snapshot(api, on_aws, sent):
    addon_id = _create(api)["addon_id"]
    run_jobs()
    identifier = _identifier(addon_id)
    assert api.get(f"addons/{addon_id}").json()["status"] == "available"
    assert_validation_error(api.delete(f"addons/{addon_id}?confirm={addon_id}&final_snapshot=perhaps"), ("query", "final_snapshot"))
    assert api.delete(f"addons/{addon_id}?confirm={addon_id}&final_snapshot=false").status_code == 202
    run_jobs()
    (params,) = sent["DeleteDBInstance"]
    assert params["SkipFinalSnapshot"] is True and "FinalDBSnapshotIdentifier" not in params
    assert identifier not in _rds_backend().databases
    assert not [name for name in _rds_backend().database_snapshots if name.startswith(identifier)]
    assert AddOn.objects.get(addon_id=addon_id).provider_data["final_snapshot_id"] == ""
    assert ActivityEvent.objects.get(action="addon.destroy").data["final_snapshot"] is False


def test_elasticache_lifecycle(api, on_aws, aws, sent):
    body = _create(api, "redis", plan="standard")
    addon_id = body["addon_id"]
    assert body["version"] == "7.1" and body["connection_url"] is None
    run_jobs()
    identifier = _identifier(addon_id)
    (params,) = sent["CreateReplicationGroup"]
    assert params["ReplicationGroupId"] == identifier and params["Engine"] == "redis" and params["CacheNodeType"] == "cache.t4g.medium"
    # AUTH requires TLS in transit.
    assert params["TransitEncryptionEnabled"] is True and params["AtRestEncryptionEnabled"] is True and len(params["AuthToken"]) >= 16
    assert params["CacheSubnetGroupName"] == identifier and params["SecurityGroupIds"] == [aws.group]
    assert {t["Key"]: t["Value"] for t in params["Tags"]}["orchestrio:addon_id"] == addon_id
    group = _cache_backend().replication_groups[identifier]
    assert group.auth_token_enabled and group.transit_encryption_enabled

    record = api.get(f"addons/{addon_id}").json()
    assert record["status"] == "available" and record["host"].startswith(f"master.{identifier}.") and record["port"] == 6379
    url = api.post(f"addons/{addon_id}/reveal").json()["connection_url"]
    assert url == f"rediss://:{params['AuthToken']}@{record['host']}:6379/0"
    assert _Agent.received[-1] == {"REDIS_URL": url}

    # Rotation: ROTATE (both tokens accepted), then SET (the new one only), each once.
    assert api.post(f"addons/{addon_id}/rotate-credentials").status_code == 202
    run_jobs()
    _poll_again()
    _poll_again()
    new_url = api.post(f"addons/{addon_id}/reveal").json()["connection_url"]
    assert new_url != url and api.get(f"addons/{addon_id}").json()["credentials_rotated_at"]
    steps = [(p["AuthTokenUpdateStrategy"], p["AuthToken"], p["ApplyImmediately"]) for p in sent["ModifyReplicationGroup"]]
    assert steps == [("ROTATE", _password(new_url), True), ("SET", _password(new_url), True)]

    # Destroy: DeleteReplicationGroup with a final snapshot; done once AWS has no such group.
    assert api.delete(f"addons/{addon_id}?confirm={addon_id}").status_code == 202
    run_jobs()
    assert sent["DeleteReplicationGroup"][0]["FinalSnapshotIdentifier"] == f"{identifier}-final"
    assert api.get(f"addons/{addon_id}").json()["status"] == "deleting"
    _poll_again()
    assert len(sent["DeleteReplicationGroup"]) == 1 and api.get(f"addons/{addon_id}").json()["status"] == "deleting"
    # AWS finished deleting it (moto never does); then the add-on's subnet group goes, which AWS
    # may count as in use a moment longer: looked at again, not a failure. moto has no
    # DeleteCacheSubnetGroup: botocore's Stubber answers these calls.
    stubber = Stubber(get_provider("aws").client("elasticache", REGION))
    for answer in ("in use", "deleted"):
        stubber.add_client_error("describe_replication_groups", service_error_code="ReplicationGroupNotFoundFault", expected_params={"ReplicationGroupId": identifier})
        if answer == "in use":
            stubber.add_client_error("delete_cache_subnet_group", service_error_code="CacheSubnetGroupInUse", expected_params={"CacheSubnetGroupName": identifier})
        else:
            stubber.add_response("delete_cache_subnet_group", {}, expected_params={"CacheSubnetGroupName": identifier})
    with stubber:
        _poll_again()
        assert api.get(f"addons/{addon_id}").json()["status"] == "deleting"
        _poll_again()
    stubber.assert_no_pending_responses()
    assert api.get(f"addons/{addon_id}").status_code == 404
    addon = AddOn.objects.get(addon_id=addon_id)
    assert addon.status == "deleted" and addon.provider_data["final_snapshot_id"] == f"{identifier}-final"
    _nothing_secret_recorded(_password(url), _password(new_url))


@pytest.mark.parametrize("final_snapshot", ["true", "false"])
def test_a_failed_database_is_deleted_without_a_snapshot(api, on_aws, sent, final_snapshot):
    addon_id = _create(api)["addon_id"]
    run_jobs()
    identifier = _identifier(addon_id)
    _rds_backend().databases[identifier].status = "failed"
    assert api.delete(f"addons/{addon_id}?confirm={addon_id}&final_snapshot={final_snapshot}").status_code == 202
    run_jobs()
    assert sent["DeleteDBInstance"][0]["SkipFinalSnapshot"] is True
    assert api.get(f"addons/{addon_id}").status_code == 404 and identifier not in _rds_backend().databases


def test_a_busy_database_is_deleted_once_aws_lets_it(api, on_aws, sent, answer_with):
    addon_id = _create(api)["addon_id"]
    run_jobs()
    answer_with("DeleteDBInstance", error_answer("InvalidDBInstanceState", message="backing up"))
    assert api.delete(f"addons/{addon_id}?confirm={addon_id}").status_code == 202
    run_jobs()
    assert api.get(f"addons/{addon_id}").json()["status"] == "deleting" and _operation(addon_id).next_poll_at is not None
    _poll_again()
    assert api.get(f"addons/{addon_id}").status_code == 404 and len(sent["DeleteDBInstance"]) == 2


def test_an_operators_subnet_group_and_security_groups(api, on_aws, aws, sent, settings):
    get_provider("aws").client("rds", REGION).create_db_subnet_group(DBSubnetGroupName="ops-databases", DBSubnetGroupDescription="ops", SubnetIds=[aws.subnet])
    settings.ADDONS_AWS_DB_SUBNET_GROUP = "ops-databases"
    settings.ADDONS_AWS_SECURITY_GROUP_IDS = ["sg-0ops0databases0"]
    sent.clear()
    addon_id = _create(api)["addon_id"]
    run_jobs()
    (params,) = sent["CreateDBInstance"]
    assert params["DBSubnetGroupName"] == "ops-databases" and params["VpcSecurityGroupIds"] == ["sg-0ops0databases0"]
    assert "CreateDBSubnetGroup" not in sent
    assert api.delete(f"addons/{addon_id}?confirm={addon_id}").status_code == 202
    run_jobs()
    assert "DeleteDBSubnetGroup" not in sent and "ops-databases" in _rds_backend().subnet_groups  # the operator's is kept


def test_a_blueprint_without_subnets_uses_the_default_vpc(api, on_aws, sent):
    Blueprint.objects.filter(name="OnAws").update(subnet_ids=[], security_group_ids=[])
    _create(api, "redis")
    run_jobs()
    (params,) = sent["CreateReplicationGroup"]
    assert "CacheSubnetGroupName" not in params and "SecurityGroupIds" not in params


def test_a_retried_job_never_creates_a_second_database(api, on_aws, sent, rds_creating):
    addon_id = _create(api)["addon_id"]
    op = _operation(addon_id)
    run_jobs()
    # The same job again (a retry, a second delivery), and the sweep's, while RDS is creating.
    call_job(run_addon_operation, op.pk)
    _poll_again()
    identifier = _identifier(addon_id)
    assert len(sent["CreateDBInstance"]) == 1 and [name for name in _rds_backend().databases] == [identifier]
    _rds_backend().databases[identifier].status = "available"
    call_job(run_addon_operation, op.pk)
    assert api.get(f"addons/{addon_id}").json()["status"] == "available"
    assert call_job(run_addon_operation, op.pk) == "already finished"
    assert len(sent["CreateDBInstance"]) == 1


def test_a_job_that_died_after_creating_finds_the_database(api, on_aws, sent):
    """The first attempt created the database and died before recording anything: the next finds
    it by its identifier (and its tag) and adopts it."""
    addon_id = _create(api)["addon_id"]
    addon = AddOn.objects.get(addon_id=addon_id)
    target = services._target(addon)
    engine._rds_create(target)
    sent.clear()
    run_jobs()
    assert "CreateDBInstance" not in sent
    assert api.get(f"addons/{addon_id}").json()["status"] == "available" and len(_rds_backend().databases) == 1


def test_a_database_of_that_name_that_is_not_ours_is_never_adopted(api, on_aws, aws):
    addon_id = _create(api)["addon_id"]
    identifier = _identifier(addon_id)
    get_provider("aws").client("rds", REGION).create_db_instance(
        DBInstanceIdentifier=identifier, Engine="postgres", DBInstanceClass="db.t4g.micro", AllocatedStorage=20,
        MasterUsername="someone", MasterUserPassword="their-password-1", Tags=[{"Key": "orchestrio:addon_id", "Value": "addon_someoneelse"}],
    )  # fmt: skip
    run_jobs()
    record = api.get(f"addons/{addon_id}").json()
    assert record["status"] == "error" and "not this add-on's" in record["error_message"]
    # Destroying the add-on deletes nothing of theirs.
    assert api.delete(f"addons/{addon_id}?confirm={addon_id}").status_code == 202
    run_jobs()
    assert api.get(f"addons/{addon_id}").status_code == 404
    assert _rds_backend().databases[identifier]._master_user_password == "their-password-1"


@pytest.mark.parametrize(
    ("operation", "code", "typed", "words"),
    [
        ("CreateDBInstance", "InsufficientDBInstanceCapacity", "provider_capacity", "no capacity for db.t4g.micro in us-east-1"),
        ("CreateDBInstance", "StorageQuotaExceeded", "provider_quota", "quota in us-east-1"),
        ("CreateDBInstance", "AccessDenied", "provider_auth", "IAM policy"),
        ("CreateDBInstance", "InvalidParameterCombination", "provider_invalid_request", "AWS rejected"),
        ("CreateDBSubnetGroup", "DBSubnetGroupDoesNotCoverEnoughAZs", "provider_invalid_request", "two availability zones"),
        ("CreateReplicationGroup", "InsufficientCacheClusterCapacity", "provider_capacity", "no capacity for cache.t4g.micro"),
        ("CreateReplicationGroup", "NodeQuotaForCustomerExceeded", "provider_quota", "quota"),
    ],
)
def test_an_aws_error_is_the_addons_error(api, on_aws, answer_with, operation, code, typed, words):
    answer_with(operation, error_answer(code, message=f"simulated {code}"))
    body = _create(api, "redis" if operation == "CreateReplicationGroup" else "postgres")
    run_jobs()
    record = api.get(f"addons/{body['addon_id']}").json()
    assert record["status"] == "error" and record["error_message"].startswith(f"{typed}: ") and words in record["error_message"], record
    op = _operation(body["addon_id"])
    assert op.status == "failed" and op.error_message == record["error_message"] and "Traceback" not in op.error_message
    assert ActivityEvent.objects.filter(action="addon.create.failed").exists()
    password = services.crypto.decrypt(AddOn.objects.get(addon_id=body["addon_id"]).password_encrypted)
    _nothing_secret_recorded(password)


def test_waiting_past_the_deadline_fails_the_operation(api, on_aws, settings, rds_creating):
    addon_id = _create(api)["addon_id"]
    run_jobs()
    settings.ADDONS_AWS_WAIT_TIMEOUT_SECONDS = 0
    _poll_again()
    record = api.get(f"addons/{addon_id}").json()
    assert record["status"] == "error" and record["error_message"].startswith("timeout: the RDS instance") and "creating" in record["error_message"]
    assert _operation(addon_id).next_poll_at is None
    assert _poll_again() == {"enqueued": 0}


def test_a_poll_is_claimed_once(api, on_aws, rds_creating):
    addon_id = _create(api)["addon_id"]
    run_jobs()
    AddOnOperation.objects.update(next_poll_at=timezone.now() - timedelta(seconds=1))
    assert call_job(poll_due_addon_operations) == {"enqueued": 1}
    assert call_job(poll_due_addon_operations) == {"enqueued": 0}  # claimed: its due time moved on
    op = _operation(addon_id)
    assert op.rq_job_id.startswith(f"addon-op-{op.pk}-poll-") and op.next_poll_at > timezone.now()
    # The claim expired without its job running (Redis lost it, its worker died): enqueued again.
    AddOnOperation.objects.update(next_poll_at=timezone.now() - timedelta(seconds=1))
    assert call_job(poll_due_addon_operations) == {"enqueued": 1}
    run_jobs()  # both jobs: each a look at AWS, the database still creating
    assert _operation(addon_id).status == "running" and len(_rds_backend().databases) == 1


def test_status_is_aws_s(api, on_aws):
    addon = _available(api, "redis")
    target = services._target(addon)
    assert engine.status(target) == "available" and engine.is_running(target)
    _cache_backend().replication_groups[target.identifier].status = "modifying"
    assert engine.status(target) == "modifying" and not engine.is_running(target)
    gone = engine.AwsTarget(**{**target.__dict__, "addon_id": "addon_nothere", "provider_data": {}})
    assert engine.status(gone) == "missing"


def test_versions_on_aws(api, on_aws):
    assert_validation_error(api.post("instances/aws-web/addons", {"engine": "postgres", "version": "9.6"}), ("body", "version"))
    assert _create(api, version="15")["version"] == "15"
    assert _create(api, "redis", version="7.0")["version"] == "7.0"


# --- snapshots: what backups are on AWS ---------------------------------------------------------


def _available(api, engine_name):
    addon_id = _create(api, engine_name)["addon_id"]
    run_jobs()
    addon = AddOn.objects.get(addon_id=addon_id)
    assert addon.status == "available", addon.error_message
    return addon


def test_rds_snapshots_create_restore_delete(api, on_aws, sent):
    addon = _available(api, "postgres")
    target = services._target(addon)
    snapshot = engine.snapshot_create(target, "bkp_0001")
    assert snapshot == f"{target.identifier}-bkp-0001" and engine.snapshot_status(target, snapshot) == "available"
    assert engine.snapshot_create(target, "bkp_0001") == snapshot  # the same name again: the same snapshot
    assert len([s for s in _rds_backend().database_snapshots if s == snapshot]) == 1
    tags = {t["Key"]: t["Value"] for t in sent["CreateDBSnapshot"][0]["Tags"]}
    assert tags["orchestrio:addon_id"] == addon.addon_id

    # The credentials were rotated since the snapshot: the restored database gets the password in force.
    old = target.identifier
    _rds_backend().databases[old].master_user_password = "the-day-of-the-snapshot"
    rotated = engine.AwsTarget(**{**target.__dict__, "password": "Rotated0Password0Since0The0Snap"})
    data = {}
    for _ in range(5):  # each call one step: restore, set the password, wait, retire the old one
        try:
            facts = engine.snapshot_restore(engine.AwsTarget(**{**rotated.__dict__, "provider_data": {**rotated.provider_data, **data}}), snapshot)
            break
        except engine.InProgress as progress:
            data.update(progress.data)
    else:
        pytest.fail("the restore never finished")
    new = f"{target.base_identifier}-g1"
    assert facts.data["identifier"] == new and facts.data["generation"] == 1 and facts.host.startswith(f"{new}.") and facts.port == 5432
    assert sent["RestoreDBInstanceFromDBSnapshot"][0]["DBSnapshotIdentifier"] == snapshot and sent["RestoreDBInstanceFromDBSnapshot"][0]["PubliclyAccessible"] is False
    assert _rds_backend().databases[new]._master_user_password == "Rotated0Password0Since0The0Snap"
    assert old not in _rds_backend().databases  # the replaced database is deleted
    assert sent["DeleteDBInstance"][-1]["SkipFinalSnapshot"] is True
    assert len(sent["RestoreDBInstanceFromDBSnapshot"]) == 1

    # Another add-on's snapshot is not this one's to read, restore or delete.
    with pytest.raises(ProviderError, match="is not a snapshot of"):
        engine.snapshot_restore(target, "orchestrio-someoneelse0000000000-bkp-1")
    engine.snapshot_delete(target, snapshot)
    assert engine.snapshot_status(target, snapshot) == "missing"
    engine.snapshot_delete(target, snapshot)  # gone already: fine


def test_elasticache_snapshots_create_restore_delete(api, on_aws, sent):
    addon = _available(api, "redis")
    target = services._target(addon)
    snapshot = engine.snapshot_create(target, "nightly 2026-12-01")
    assert snapshot == f"{target.identifier}-nightly-2026-12-01" and engine.snapshot_status(target, snapshot) == "available"
    assert sent["CreateSnapshot"][0]["ReplicationGroupId"] == target.identifier
    with pytest.raises(engine.InProgress, match="restoring"):
        engine.snapshot_restore(target, snapshot)
    facts = engine.snapshot_restore(target, snapshot)
    new = f"{target.base_identifier}-g1"
    restore = sent["CreateReplicationGroup"][-1]
    assert restore["ReplicationGroupId"] == new and restore["SnapshotName"] == snapshot and restore["AuthToken"] == target.password
    assert facts.host.startswith(f"master.{new}.") and facts.data["identifier"] == new
    assert sent["DeleteReplicationGroup"][-1]["ReplicationGroupId"] == target.identifier and "FinalSnapshotIdentifier" not in sent["DeleteReplicationGroup"][-1]
    engine.snapshot_delete(target, snapshot)
    assert engine.snapshot_status(target, snapshot) == "missing"


def test_a_snapshot_that_is_still_being_made_is_not_restored(api, on_aws):
    addon = _available(api, "postgres")
    target = services._target(addon)
    snapshot = engine.snapshot_create(target, "b1")
    _rds_backend().database_snapshots[snapshot].status = "creating"
    assert engine.snapshot_status(target, snapshot) == "creating"
    with pytest.raises(engine.InProgress, match="still being made"):
        engine.snapshot_restore(target, snapshot)


def test_backups_of_an_aws_addon_are_snapshots_through_the_api(api, on_aws, sent, agent):
    """The backups API on AWS: a backup is an RDS snapshot followed by the poll sweep, a restore
    makes the new database the add-on's (its URL pushed to the instance), deleting the backup
    deletes the snapshot, and a snapshot is not downloadable."""
    addon = _available(api, "postgres")
    created = api.post(f"addons/{addon.addon_id}/backups")
    assert created.status_code == 202, created.content
    backup_id = created.json()["backup_id"]
    snapshot = f"{services._target(addon).base_identifier}-{backup_id.replace('_', '-')}"
    # AWS takes its time: the operation waits for the poll sweep, the backup is pending.
    real = RDSBackend.create_db_snapshot

    def slow(self, *args, **kwargs):
        made = real(self, *args, **kwargs)
        made.status = "creating"
        return made

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RDSBackend, "create_db_snapshot", slow)
        run_jobs()
    assert _operation(addon.addon_id).status == "running"
    listed = api.get(f"addons/{addon.addon_id}/backups").json()["results"]
    assert listed[0]["backup_id"] == backup_id and listed[0]["status"] == "pending" and listed[0]["storage"] == "snapshot"
    _rds_backend().database_snapshots[snapshot].status = "available"
    _poll_again()
    (backup,) = api.get(f"addons/{addon.addon_id}/backups").json()["results"]
    assert backup["status"] == "available" and backup["sha256"] == ""
    assert api.get(f"addons/{addon.addon_id}").json()["status"] == "available"
    assert_error(api.get(f"addons/{addon.addon_id}/backups/{backup_id}/download"), 400, contains="snapshot")

    # Restore: a new database from the snapshot, which becomes the add-on's.
    old_host = AddOn.objects.get(pk=addon.pk).host
    assert api.post(f"addons/{addon.addon_id}/restore", {"backup_id": backup_id}).status_code == 202
    for _ in range(5):
        run_jobs()
        if _operation(addon.addon_id).status != "running":
            break
        _poll_again()
    assert _operation(addon.addon_id).status == "succeeded", _operation(addon.addon_id).error_message
    restored = AddOn.objects.get(pk=addon.pk)
    new = f"{services._target(addon).base_identifier}-g1"
    assert restored.status == "available" and restored.provider_data["identifier"] == new and restored.host != old_host
    assert sent["RestoreDBInstanceFromDBSnapshot"][0]["DBSnapshotIdentifier"] == snapshot
    assert new in _Agent.received[-1]["DATABASE_URL"]  # the instance was given the new database's URL

    # Deleting the backup deletes the snapshot in AWS.
    assert api.delete(f"addons/{addon.addon_id}/backups/{backup_id}").status_code == 204
    assert snapshot not in _rds_backend().database_snapshots
