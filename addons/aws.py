"""The AWS engine: an add-on of an instance that runs on AWS is an RDS PostgreSQL instance or an
ElastiCache Redis replication group, in the instance's region (docs/addons.md, "On AWS").

The same surface as the local engine (addons/engines.py), as module functions over a plain-data
target (no model import): `provision`, `set_password`, `destroy`, `status`, `connection_url`, and
the snapshots that stand in for dumps on AWS (`snapshot_create/status/restore/delete`).

AWS does this work asynchronously: creating a database takes minutes. Every function here is one
idempotent step: it looks at what AWS has (by the identifier derived from the add-on's id, checked
against the add-on's tag), does the next call if one is due, and either returns `Facts` (done:
the endpoint, and what to remember in the add-on's `provider_data`) or raises `InProgress` (come
back later; its `data` is remembered too). The operation's job calls it again from the poll sweep
(addons.jobs.poll_due_addon_operations) until it is done or its deadline passes, so a retried or
re-run job finds the database it created and never creates a second one.

Clients, retries and the error types are the AWS provider's (instances/providers/aws.py): the same
boto3 clients (botocore's retry mode, AWS_MAX_ATTEMPTS), and AWS errors become a `ProviderError`
with the provider's codes (`provider_capacity`, `provider_quota`, `provider_auth`…) and a message
that names what to do, never a password (AWS never echoes one; the services scrub them anyway).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from instances.choices import ErrorCode
from instances.providers import ProviderError, get_provider
from instances.providers.aws import translate

logger = logging.getLogger(__name__)

MANAGED_BY = "orchestrio"

# The add-on's plan → what AWS runs it on. PostgreSQL: (DB instance class, gp3 storage in GiB,
# automated-backup retention in days, Multi-AZ); Redis: (cache node type, cache clusters —
# a second one is a replica in another zone, with automatic failover —, snapshot retention days).
# ADDONS_AWS_SIZES in the settings overrides entries ({"postgres": {"hobby": [...]}, ...}).
SIZES = {
    "postgres": {
        "hobby": ("db.t4g.micro", 20, 1, False),
        "standard": ("db.t4g.medium", 50, 7, False),
        "premium": ("db.m7g.large", 100, 14, True),
    },
    "redis": {
        "hobby": ("cache.t4g.micro", 1, 1),
        "standard": ("cache.t4g.medium", 1, 7),
        "premium": ("cache.m7g.large", 2, 14),
    },
}

# RDS: usable statuses, and statuses it never leaves by itself.
RDS_READY = {"available", "backing-up", "storage-optimization", "configuring-enhanced-monitoring", "configuring-log-exports"}
RDS_BROKEN = {
    "failed", "incompatible-network", "incompatible-option-group", "incompatible-parameters", "incompatible-restore",
    "inaccessible-encryption-credentials", "inaccessible-encryption-credentials-recoverable", "restore-error", "storage-full",
}  # fmt: skip
CACHE_READY = {"available", "snapshotting"}
CACHE_BROKEN = {"create-failed"}

RDS_NOT_FOUND = {"DBInstanceNotFound", "DBInstanceNotFoundFault"}
CACHE_NOT_FOUND = {"ReplicationGroupNotFoundFault", "ReplicationGroupNotFound"}
SNAPSHOT_NOT_FOUND = {"DBSnapshotNotFound", "DBSnapshotNotFoundFault", "SnapshotNotFoundFault", "SnapshotNotFound"}
SUBNET_GROUP_NOT_FOUND = {"DBSubnetGroupNotFoundFault", "DBSubnetGroupNotFound", "CacheSubnetGroupNotFoundFault", "CacheSubnetGroupNotFound"}
ALREADY_EXISTS = {
    "DBInstanceAlreadyExists", "DBInstanceAlreadyExistsFault", "ReplicationGroupAlreadyExistsFault", "ReplicationGroupAlreadyExists",
    "DBSnapshotAlreadyExists", "DBSnapshotAlreadyExistsFault", "SnapshotAlreadyExistsFault", "SnapshotAlreadyExists",
    "DBSubnetGroupAlreadyExists", "DBSubnetGroupAlreadyExistsFault", "CacheSubnetGroupAlreadyExistsFault", "CacheSubnetGroupAlreadyExists",
}  # fmt: skip
# The database services' own codes, typed as the provider types EC2's.
CAPACITY = {"InsufficientDBInstanceCapacity", "InsufficientDBInstanceCapacityFault", "InsufficientCacheClusterCapacity", "InsufficientCacheClusterCapacityFault", "InsufficientStorageClusterCapacity"}
QUOTA = {
    "InstanceQuotaExceeded", "InstanceQuotaExceededFault", "StorageQuotaExceeded", "StorageQuotaExceededFault",
    "DBSubnetGroupQuotaExceeded", "DBSubnetGroupQuotaExceededFault", "SnapshotQuotaExceeded", "SnapshotQuotaExceededFault",
    "NodeQuotaForCustomerExceeded", "NodeQuotaForCustomerExceededFault", "NodeQuotaForClusterExceeded", "NodeQuotaForClusterExceededFault",
    "ClusterQuotaForCustomerExceeded", "ClusterQuotaForCustomerExceededFault", "CacheSubnetGroupQuotaExceeded", "CacheSubnetGroupQuotaExceededFault",
    "ReplicationGroupQuotaExceeded",
}  # fmt: skip
WRONG_STATE = {"InvalidDBInstanceState", "InvalidDBInstanceStateFault", "InvalidReplicationGroupState", "InvalidReplicationGroupStateFault", "InvalidDBSnapshotState", "InvalidSnapshotState", "InvalidSnapshotStateFault"}
TOO_FEW_ZONES = {"DBSubnetGroupDoesNotCoverEnoughAZs"}
# A subnet group AWS still counts as used for a moment after its database is gone.
SUBNET_GROUP_IN_USE = {"CacheSubnetGroupInUse", "CacheSubnetGroupInUseFault", "InvalidDBSubnetGroupStateFault", "InvalidDBSubnetGroupState"}


class InProgress(Exception):
    """AWS is still at it: look again later. `data` is remembered in the add-on's provider_data."""

    def __init__(self, message: str, *, data: dict | None = None, deleting: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.data = data or {}
        self.deleting = deleting  # AWS accepted the deletion and is at it (nothing left for us to send)


class NotOurs(ProviderError):
    """AWS has a database of the add-on's name that carries another add-on's tag."""


@dataclass(frozen=True)
class Facts:
    """A finished step: where the add-on listens now (empty host: unchanged) and what to remember."""

    host: str = ""
    port: int | None = None
    data: dict = field(default_factory=dict)


@dataclass(frozen=True)
class AwsTarget:
    """What the engine needs to know of an add-on on AWS (built by the services from the add-on,
    its instance, the instance's blueprint and region)."""

    addon_id: str
    tenant_id: str
    instance_id: str
    instance_pk: int
    engine: str
    version: str
    plan: str
    region: str
    username: str
    database: str
    password: str
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    tags: dict = field(default_factory=dict)
    provider_data: dict = field(default_factory=dict)

    @property
    def base_identifier(self) -> str:
        """`orchestrio-<the random part of the add-on's id>`, 31 characters: a valid RDS and
        ElastiCache identifier (a letter first, letters, digits and single hyphens) with room for
        a restore's `-g<n>` within ElastiCache's 40, derived from the add-on's id alone."""
        cleaned = re.sub(r"[^a-z0-9]+", "-", self.addon_id.lower().removeprefix("addon_")).strip("-")
        return f"orchestrio-{cleaned}"

    @property
    def identifier(self) -> str:
        """The database AWS runs for it now (a restore moves it to a new one)."""
        return self.provider_data.get("identifier") or self.base_identifier

    @property
    def generation(self) -> int:
        return int(self.provider_data.get("generation") or 0)


# --- plumbing ---------------------------------------------------------------------------------


def versions(engine: str) -> list[str]:
    """The engine versions offered on AWS, the default first (ADDONS_AWS_*_VERSIONS)."""
    return list(settings.ADDONS_AWS_POSTGRES_VERSIONS if engine == "postgres" else settings.ADDONS_AWS_REDIS_VERSIONS)


def size(engine: str, plan: str) -> tuple:
    overrides = (settings.ADDONS_AWS_SIZES or {}).get(engine, {})
    return tuple(overrides.get(plan) or SIZES[engine][plan])


def _digest(*parts: str) -> str:
    """A marker that a call with these values was sent (of a random password: no secret kept)."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


def error_for(error: Exception, *, action: str, target: AwsTarget | None = None) -> ProviderError:
    """An RDS/ElastiCache failure as the AWS provider types its failures (same codes, a message
    that says what to do); what is not specific to the database services is the provider's."""
    if isinstance(error, ClientError):
        code, message = _code(error), error.response.get("Error", {}).get("Message", "")
        where = f" in {target.region}" if target is not None and target.region else ""
        if code in CAPACITY:
            kind = f" for {size(target.engine, target.plan)[0]}" if target is not None else ""
            return ProviderError(ErrorCode.PROVIDER_CAPACITY, f"AWS has no capacity{kind}{where} right now ({code}); retry later, or choose another plan")
        if code in QUOTA:
            return ProviderError(ErrorCode.PROVIDER_QUOTA, f"the AWS account reached a quota{where} ({code}: {message}); request a higher limit or destroy unused add-ons")
        if code in TOO_FEW_ZONES:
            return ProviderError(
                ErrorCode.PROVIDER_INVALID_REQUEST,
                f"RDS needs subnets in at least two availability zones ({code}); give the blueprint subnets in two zones, or set ADDONS_AWS_DB_SUBNET_GROUP",
            )
        if code in RDS_NOT_FOUND | CACHE_NOT_FOUND:
            return ProviderError(ErrorCode.MACHINE_VANISHED, f"AWS has no such database anymore ({code}); it was deleted outside Orchestrio")
        if code in WRONG_STATE:
            return ProviderError(ErrorCode.PROVIDER_INVALID_REQUEST, f"AWS refused to {action} in the database's current state ({code}: {message}); retry once it is available", retryable=True)
    return translate(error, action=action)


def _call(service: str, target: AwsTarget, method: str, *, action: str, **kwargs):
    """One call with the AWS provider's client (botocore's retries); failures typed."""
    try:
        return getattr(get_provider("aws").client(service, target.region), method)(**kwargs)
    except (ClientError, BotoCoreError) as exc:
        raise error_for(exc, action=action, target=target) from None


def _call_when_ready(service: str, target: AwsTarget, method: str, *, action: str, **kwargs):
    """Like `_call`, for a change AWS refuses while the database is busy (a backup, another
    change): that refusal is "not yet" (InProgress), and the step is tried again on the next look."""
    try:
        return getattr(get_provider("aws").client(service, target.region), method)(**kwargs)
    except ClientError as exc:
        if _code(exc) in WRONG_STATE:
            raise InProgress(f"AWS cannot {action} yet ({_code(exc)}): the database is busy") from None
        raise error_for(exc, action=action, target=target) from None
    except BotoCoreError as exc:
        raise error_for(exc, action=action, target=target) from None


def _call_or_none(service: str, target: AwsTarget, method: str, *, accept: set[str], action: str, **kwargs):
    """Like `_call`, but None when AWS answers with one of the `accept` codes (a thing not found
    where that is fine; or, with ALREADY_EXISTS, made already by a retried or concurrent step)."""
    try:
        return getattr(get_provider("aws").client(service, target.region), method)(**kwargs)
    except ClientError as exc:
        if _code(exc) in accept:
            return None
        raise error_for(exc, action=action, target=target) from None
    except BotoCoreError as exc:
        raise error_for(exc, action=action, target=target) from None


def tags(target: AwsTarget) -> dict[str, str]:
    """The add-on's tags, like an instance machine's: the blueprint's own, then ours."""
    return {
        **{str(k): str(v) for k, v in (target.tags or {}).items()},
        "orchestrio:tenant_id": target.tenant_id,
        "orchestrio:instance_id": target.instance_id,
        "orchestrio:instance_pk": str(target.instance_pk),
        "orchestrio:addon_id": target.addon_id,
        "orchestrio:managed_by": MANAGED_BY,
        "Name": target.addon_id,
    }


def _tag_list(target: AwsTarget) -> list[dict]:
    return [{"Key": key, "Value": value} for key, value in tags(target).items()]


def _subnet_group(target: AwsTarget, service: str) -> str:
    """The subnet group the database goes in: the operator's (ADDONS_AWS_DB_SUBNET_GROUP /
    ADDONS_AWS_CACHE_SUBNET_GROUP), else one of the add-on's own made from the blueprint's
    subnets (the instance's VPC), else none (the region's default VPC)."""
    configured = settings.ADDONS_AWS_DB_SUBNET_GROUP if service == "rds" else settings.ADDONS_AWS_CACHE_SUBNET_GROUP
    if configured:
        return configured
    if not target.subnet_ids:
        return ""
    name = target.base_identifier
    description = f"Orchestrio add-on {target.addon_id} of {target.instance_id}"
    action = "create the add-on's subnet group"
    if service == "rds":
        _call_or_none(
            "rds", target, "create_db_subnet_group", accept=ALREADY_EXISTS, action=action,
            DBSubnetGroupName=name, DBSubnetGroupDescription=description, SubnetIds=list(target.subnet_ids), Tags=_tag_list(target),
        )  # fmt: skip
    else:
        _call_or_none(
            "elasticache", target, "create_cache_subnet_group", accept=ALREADY_EXISTS, action=action,
            CacheSubnetGroupName=name, CacheSubnetGroupDescription=description, SubnetIds=list(target.subnet_ids), Tags=_tag_list(target),
        )  # fmt: skip
    return name


def _security_groups(target: AwsTarget) -> list[str]:
    """ADDONS_AWS_SECURITY_GROUP_IDS, else the blueprint's groups when its subnets are used (they
    are of that VPC); none otherwise (the VPC's default group)."""
    if settings.ADDONS_AWS_SECURITY_GROUP_IDS:
        return list(settings.ADDONS_AWS_SECURITY_GROUP_IDS)
    if target.subnet_ids and not (settings.ADDONS_AWS_DB_SUBNET_GROUP if target.engine == "postgres" else settings.ADDONS_AWS_CACHE_SUBNET_GROUP):
        return list(target.security_group_ids)
    return []


def _placement(target: AwsTarget, service: str) -> dict:
    """The network parameters of a create or restore call: the subnet group and security groups,
    in the names RDS or ElastiCache gives them (none set: AWS's defaults)."""
    names = {"rds": ("DBSubnetGroupName", "VpcSecurityGroupIds"), "elasticache": ("CacheSubnetGroupName", "SecurityGroupIds")}[service]
    params = {}
    if group := _subnet_group(target, service):
        params[names[0]] = group
    if groups := _security_groups(target):
        params[names[1]] = groups
    return params


def _delete_own_subnet_group(target: AwsTarget) -> None:
    """The add-on's own subnet group, once its database is gone (the operator's is kept)."""
    if not target.subnet_ids:
        return
    try:
        if target.engine == "postgres" and not settings.ADDONS_AWS_DB_SUBNET_GROUP:
            get_provider("aws").client("rds", target.region).delete_db_subnet_group(DBSubnetGroupName=target.base_identifier)
        elif target.engine == "redis" and not settings.ADDONS_AWS_CACHE_SUBNET_GROUP:
            get_provider("aws").client("elasticache", target.region).delete_cache_subnet_group(CacheSubnetGroupName=target.base_identifier)
    except ClientError as exc:
        if _code(exc) in SUBNET_GROUP_IN_USE:
            raise InProgress(f"the subnet group {target.base_identifier} is still in use; it is deleted once AWS has let go of the database") from None
        if _code(exc) not in SUBNET_GROUP_NOT_FOUND:
            raise error_for(exc, action="delete the add-on's subnet group", target=target) from None
    except BotoCoreError as exc:
        raise error_for(exc, action="delete the add-on's subnet group", target=target) from None


def _ours(target: AwsTarget, raw: dict, tag_list: list[dict] | None) -> dict:
    """`raw` when it is this add-on's (its tag says so); a database of that name that is not is
    never adopted, changed or deleted."""
    found = {tag["Key"]: tag["Value"] for tag in tag_list or []}
    if found.get("orchestrio:addon_id") not in (None, target.addon_id):
        raise NotOurs(ErrorCode.PROVIDER_INVALID_REQUEST, f"AWS already has a database named {raw.get('DBInstanceIdentifier') or raw.get('ReplicationGroupId')} that is not this add-on's; not touching it")
    return raw


# --- RDS (PostgreSQL) -------------------------------------------------------------------------


def _rds(target: AwsTarget, identifier: str | None = None) -> dict | None:
    found = _call_or_none("rds", target, "describe_db_instances", accept=RDS_NOT_FOUND, action="look up the database", DBInstanceIdentifier=identifier or target.identifier)
    if not found or not found.get("DBInstances"):
        return None
    raw = found["DBInstances"][0]
    return _ours(target, raw, raw.get("TagList"))


def _rds_wait_ready(target: AwsTarget, raw: dict, *, doing: str) -> Facts:
    status = raw.get("DBInstanceStatus", "")
    if status in RDS_BROKEN:
        raise ProviderError(ErrorCode.PROVIDER_ERROR, f"the RDS instance {raw['DBInstanceIdentifier']} is {status}; destroy the add-on and create it again, or see the RDS console")
    if status == "deleting":
        raise ProviderError(ErrorCode.MACHINE_VANISHED, f"the RDS instance {raw['DBInstanceIdentifier']} is being deleted (outside Orchestrio)")
    endpoint = raw.get("Endpoint") or {}
    if status not in RDS_READY or not endpoint.get("Address"):
        raise InProgress(f"the RDS instance {raw['DBInstanceIdentifier']} is {status or 'starting'} ({doing})")
    return Facts(host=endpoint["Address"], port=int(endpoint.get("Port") or 5432), data={"identifier": raw["DBInstanceIdentifier"], "resource": "rds"})


def _rds_create(target: AwsTarget) -> None:
    instance_class, storage, retention, multi_az = size("postgres", target.plan)
    params = {
        "DBInstanceIdentifier": target.identifier,
        "Engine": "postgres",
        "EngineVersion": target.version,
        "DBInstanceClass": instance_class,
        "AllocatedStorage": int(storage),
        "StorageType": "gp3",
        "StorageEncrypted": True,
        "MasterUsername": target.username,
        "MasterUserPassword": target.password,
        "DBName": target.database,
        "PubliclyAccessible": False,
        "MultiAZ": bool(multi_az),
        "BackupRetentionPeriod": int(retention),
        "CopyTagsToSnapshot": True,
        "AutoMinorVersionUpgrade": True,
        "DeletionProtection": False,
        "Tags": _tag_list(target),
        **_placement(target, "rds"),
    }
    # A concurrent attempt that created it already: found on the next look.
    _call_or_none("rds", target, "create_db_instance", accept=ALREADY_EXISTS, action="create the RDS instance", **params)


def _rds_set_password(target: AwsTarget, identifier: str, password: str, *, marker_key: str) -> None:
    """ModifyDBInstance MasterUserPassword (applied now), once; then wait until RDS has applied it."""
    raw = _rds(target, identifier)
    if raw is None:
        raise ProviderError(ErrorCode.MACHINE_VANISHED, f"AWS has no RDS instance {identifier} anymore; it was deleted outside Orchestrio")
    marker = _digest(identifier, password)
    if target.provider_data.get(marker_key) != marker:
        _rds_wait_ready(target, raw, doing="before the password is changed")
        _call_when_ready("rds", target, "modify_db_instance", action="change the database's password", DBInstanceIdentifier=identifier, MasterUserPassword=password, ApplyImmediately=True)
        raise InProgress(f"RDS is applying the new password to {identifier}", data={marker_key: marker})
    if "MasterUserPassword" in (raw.get("PendingModifiedValues") or {}):
        raise InProgress(f"RDS is applying the new password to {identifier}")
    _rds_wait_ready(target, raw, doing="applying the new password")


def _rds_delete(target: AwsTarget, identifier: str, *, final_snapshot: bool) -> str:
    """Delete the RDS instance (a final snapshot first unless not wanted); returns the final
    snapshot's id ("" without one). Idempotent: a deletion under way is waited for."""
    raw = _rds(target, identifier)
    if raw is None:
        return ""
    status = raw.get("DBInstanceStatus", "")
    snapshot = f"{identifier}-final" if final_snapshot else ""
    if status == "deleting":
        raise InProgress(f"the RDS instance {identifier} is being deleted", data={"final_snapshot_id": snapshot} if snapshot else None, deleting=True)
    if status in RDS_BROKEN:
        snapshot = ""  # a failed database cannot be snapshotted: deleted without one
    elif status not in RDS_READY and status != "stopped":
        raise InProgress(f"the RDS instance {identifier} is {status}; it is deleted once that ends")
    kwargs = {"FinalDBSnapshotIdentifier": snapshot} if snapshot else {"SkipFinalSnapshot": True}
    kwargs["DeleteAutomatedBackups"] = not snapshot
    _call_when_ready("rds", target, "delete_db_instance", action="delete the RDS instance", DBInstanceIdentifier=identifier, **kwargs)
    if _rds(target, identifier) is not None:
        raise InProgress(f"the RDS instance {identifier} is being deleted", data={"final_snapshot_id": snapshot} if snapshot else None, deleting=True)
    return snapshot


# --- ElastiCache (Redis) ----------------------------------------------------------------------


def _cache(target: AwsTarget, identifier: str | None = None) -> dict | None:
    found = _call_or_none("elasticache", target, "describe_replication_groups", accept=CACHE_NOT_FOUND, action="look up the Redis replication group", ReplicationGroupId=identifier or target.identifier)
    if not found or not found.get("ReplicationGroups"):
        return None
    raw = found["ReplicationGroups"][0]
    if raw.get("ARN"):
        listed = _call_or_none("elasticache", target, "list_tags_for_resource", accept=CACHE_NOT_FOUND, action="read the replication group's tags", ResourceName=raw["ARN"])
        _ours(target, raw, (listed or {}).get("TagList"))
    return raw


def _cache_wait_ready(target: AwsTarget, raw: dict, *, doing: str) -> Facts:
    status = raw.get("Status", "")
    name = raw["ReplicationGroupId"]
    if status in CACHE_BROKEN:
        raise ProviderError(ErrorCode.PROVIDER_ERROR, f"the ElastiCache replication group {name} is {status}; destroy the add-on and create it again, or see the ElastiCache console")
    if status == "deleting":
        raise ProviderError(ErrorCode.MACHINE_VANISHED, f"the ElastiCache replication group {name} is being deleted (outside Orchestrio)")
    groups = raw.get("NodeGroups") or [{}]
    endpoint = groups[0].get("PrimaryEndpoint") or raw.get("ConfigurationEndpoint") or {}
    if status not in CACHE_READY or not endpoint.get("Address"):
        raise InProgress(f"the ElastiCache replication group {name} is {status or 'starting'} ({doing})")
    return Facts(host=endpoint["Address"], port=int(endpoint.get("Port") or 6379), data={"identifier": name, "resource": "elasticache"})


def _cache_create(target: AwsTarget, identifier: str, *, snapshot: str = "") -> None:
    node_type, clusters, retention = size("redis", target.plan)
    params = {
        "ReplicationGroupId": identifier,
        "ReplicationGroupDescription": f"Orchestrio add-on {target.addon_id} of {target.instance_id}",
        "Engine": "redis",
        "EngineVersion": target.version,
        "CacheNodeType": node_type,
        "NumCacheClusters": int(clusters),
        "AutomaticFailoverEnabled": int(clusters) > 1,
        "MultiAZEnabled": int(clusters) > 1,
        "Port": 6379,
        # AUTH needs TLS in transit: the URL is rediss://.
        "AuthToken": target.password,
        "TransitEncryptionEnabled": True,
        "AtRestEncryptionEnabled": True,
        "SnapshotRetentionLimit": int(retention),
        "Tags": _tag_list(target),
    }
    if snapshot:
        params["SnapshotName"] = snapshot
    params.update(_placement(target, "elasticache"))
    _call_or_none("elasticache", target, "create_replication_group", accept=ALREADY_EXISTS, action="create the ElastiCache replication group", **params)


def _cache_modify_token(target: AwsTarget, identifier: str, password: str, strategy: str) -> None:
    _call_when_ready(
        "elasticache", target, "modify_replication_group", action="change the Redis AUTH token",
        ReplicationGroupId=identifier, AuthToken=password, AuthTokenUpdateStrategy=strategy, ApplyImmediately=True,
    )  # fmt: skip


def _cache_set_password(target: AwsTarget, identifier: str, password: str) -> None:
    """Two steps, as ElastiCache rotates AUTH: ROTATE (the old and the new token both accepted),
    then SET (only the new one); each sent once and waited for."""
    raw = _cache(target, identifier)
    if raw is None:
        raise ProviderError(ErrorCode.MACHINE_VANISHED, f"AWS has no ElastiCache replication group {identifier} anymore; it was deleted outside Orchestrio")
    marker = _digest(identifier, password)
    for step, key in (("ROTATE", "auth_rotate_sent"), ("SET", "auth_set_sent")):
        if target.provider_data.get(key) != marker:
            _cache_wait_ready(target, raw, doing=f"before the AUTH token's {step.lower()}")
            _cache_modify_token(target, identifier, password, step)
            raise InProgress(f"ElastiCache is applying the new AUTH token to {identifier} ({step})", data={key: marker})
        if raw.get("Status") != "available":
            raise InProgress(f"ElastiCache is applying the new AUTH token to {identifier} ({step})")


def _cache_delete(target: AwsTarget, identifier: str, *, final_snapshot: bool) -> str:
    raw = _cache(target, identifier)
    if raw is None:
        return ""
    status = raw.get("Status", "")
    snapshot = f"{identifier}-final" if final_snapshot else ""
    if status == "deleting":
        raise InProgress(f"the ElastiCache replication group {identifier} is being deleted", data={"final_snapshot_id": snapshot} if snapshot else None, deleting=True)
    if status in CACHE_BROKEN:
        snapshot = ""  # a failed group cannot be snapshotted: deleted without one
    elif status not in CACHE_READY:
        raise InProgress(f"the ElastiCache replication group {identifier} is {status}; it is deleted once that ends")
    kwargs = {"FinalSnapshotIdentifier": snapshot} if snapshot else {}
    _call_when_ready("elasticache", target, "delete_replication_group", action="delete the ElastiCache replication group", ReplicationGroupId=identifier, RetainPrimaryCluster=False, **kwargs)
    raise InProgress(f"the ElastiCache replication group {identifier} is being deleted", data={"final_snapshot_id": snapshot} if snapshot else None, deleting=True)


# --- the engine's operations ------------------------------------------------------------------


def provision(target: AwsTarget) -> Facts:
    """Create the database (unless an earlier attempt did) and wait until it has its endpoint."""
    if target.engine == "postgres":
        raw = _rds(target)
        if raw is None:
            _rds_create(target)
            raw = _rds(target)
            if raw is None:
                raise InProgress(f"RDS is creating {target.identifier}")
        return _rds_wait_ready(target, raw, doing="being created")
    raw = _cache(target)
    if raw is None:
        _cache_create(target, target.identifier)
        raw = _cache(target)
        if raw is None:
            raise InProgress(f"ElastiCache is creating {target.identifier}")
    return _cache_wait_ready(target, raw, doing="being created")


def set_password(target: AwsTarget, password: str) -> None:
    """Make `password` the tenant's: RDS ModifyDBInstance MasterUserPassword, ElastiCache
    ModifyReplicationGroup AuthToken (ROTATE then SET). Done once AWS has applied it."""
    if target.engine == "postgres":
        _rds_set_password(target, target.identifier, password, marker_key="password_sent")
    else:
        _cache_set_password(target, target.identifier, password)


def destroy(target: AwsTarget, *, final_snapshot: bool = True) -> Facts:
    """Delete the database — after a final snapshot (`<identifier>-final`) unless not wanted —
    and then the add-on's own subnet group; done once AWS has no such database anymore."""
    try:
        if target.engine == "postgres":
            snapshot = _rds_delete(target, target.identifier, final_snapshot=final_snapshot)
        else:
            snapshot = _cache_delete(target, target.identifier, final_snapshot=final_snapshot)
    except NotOurs:
        snapshot = ""  # the add-on never had a database of its own: nothing of it to delete
    _delete_own_subnet_group(target)
    data = {"final_snapshot_id": snapshot or target.provider_data.get("final_snapshot_id", "")} if final_snapshot else {"final_snapshot_id": ""}
    return Facts(data=data)


def status(target: AwsTarget) -> str:
    """AWS's status of the add-on's database ("missing" when it has none)."""
    if target.engine == "postgres":
        raw = _rds(target)
        return raw.get("DBInstanceStatus", "unknown") if raw else "missing"
    raw = _cache(target)
    return raw.get("Status", "unknown") if raw else "missing"


def is_running(target: AwsTarget) -> bool:
    return status(target) in (RDS_READY if target.engine == "postgres" else CACHE_READY)


def connection_url(*, engine: str, host: str, port: int | None, username: str, password: str, database: str) -> str | None:
    """The tenant's URL; None until AWS has given the database its endpoint. TLS in both:
    RDS PostgreSQL (15 and later force it) and ElastiCache with AUTH (which requires it)."""
    if not host:
        return None
    if engine == "postgres":
        return f"postgres://{quote(username, safe='')}:{quote(password, safe='')}@{host}:{port}/{quote(database, safe='')}?sslmode=require"
    return f"rediss://:{quote(password, safe='')}@{host}:{port}/0"


# --- snapshots (what backups are on AWS) -------------------------------------------------------


def snapshot_id(target: AwsTarget, name: str) -> str:
    """The snapshot's identifier: the add-on's base identifier and `name` (letters, digits and
    single hyphens, as RDS and ElastiCache both accept)."""
    cleaned = re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", name.lower())).strip("-")
    if not cleaned:
        raise ProviderError(ErrorCode.PROVIDER_INVALID_REQUEST, f"a snapshot name needs letters or digits: {name!r}")
    return f"{target.base_identifier}-{cleaned}"[:255].rstrip("-")


def _own_snapshot(target: AwsTarget, snapshot: str) -> None:
    """Only this add-on's snapshots are read, restored or deleted (their names start with its id)."""
    if not snapshot.startswith(target.base_identifier + "-"):
        raise ProviderError(ErrorCode.PROVIDER_INVALID_REQUEST, f"{snapshot} is not a snapshot of {target.addon_id}")


def snapshot_create(target: AwsTarget, name: str) -> str:
    """Start a snapshot of the add-on's database now (CreateDBSnapshot, ElastiCache CreateSnapshot)
    and return its id; follow it with `snapshot_status`. Idempotent: the same name again is the
    same snapshot."""
    snapshot = snapshot_id(target, name)
    action = "snapshot the database"
    if target.engine == "postgres":
        _call_or_none("rds", target, "create_db_snapshot", accept=ALREADY_EXISTS, action=action, DBSnapshotIdentifier=snapshot, DBInstanceIdentifier=target.identifier, Tags=_tag_list(target))
    else:
        _call_or_none("elasticache", target, "create_snapshot", accept=ALREADY_EXISTS, action=action, SnapshotName=snapshot, ReplicationGroupId=target.identifier, Tags=_tag_list(target))
    return snapshot


def snapshot_status(target: AwsTarget, snapshot: str) -> str:
    """`creating`, `available`, `failed`, `deleting` or `missing`."""
    _own_snapshot(target, snapshot)
    if target.engine == "postgres":
        found = _call_or_none("rds", target, "describe_db_snapshots", accept=SNAPSHOT_NOT_FOUND, action="look up the snapshot", DBSnapshotIdentifier=snapshot)
        raw = (found or {}).get("DBSnapshots") or []
        state = raw[0].get("Status", "") if raw else "missing"
    else:
        found = _call_or_none("elasticache", target, "describe_snapshots", accept=SNAPSHOT_NOT_FOUND, action="look up the snapshot", SnapshotName=snapshot)
        raw = (found or {}).get("Snapshots") or []
        state = raw[0].get("SnapshotStatus", "") if raw else "missing"
    if state in ("available", "missing", "deleting"):
        return state
    if state in ("failed", "incompatible-restore", "error"):
        return "failed"
    return "creating"


def _retire(target: AwsTarget, delete) -> None:
    """Delete the database a restore replaces; done once AWS accepted the deletion (the restored
    one serves already). A database that cannot be deleted yet (it is modifying…) is waited for:
    it is never left running unrecorded."""
    try:
        delete(target, target.identifier, final_snapshot=False)
    except InProgress as progress:
        if not progress.deleting:
            raise


def snapshot_restore(target: AwsTarget, snapshot: str) -> Facts:
    """Replace the add-on's data with the snapshot's. AWS restores a snapshot into a *new*
    database only, so: restore it as `<base>-g<n+1>`, give it the password in force (the
    snapshot carries the one of its day), delete the database it replaces (no final snapshot:
    the restore discards the current data, as a local restore does), and return the
    new one's endpoint and identifier. Each call does the next step (InProgress until done);
    the caller records the Facts, after which the add-on is the restored database."""
    _own_snapshot(target, snapshot)
    state = snapshot_status(target, snapshot)
    if state != "available":
        if state == "creating":
            raise InProgress(f"the snapshot {snapshot} is still being made")
        raise ProviderError(ErrorCode.PROVIDER_INVALID_REQUEST, f"the snapshot {snapshot} is {state}; it cannot be restored")
    generation = target.generation + 1
    new = f"{target.base_identifier}-g{generation}"
    data = {"identifier": new, "generation": generation}
    if target.engine == "postgres":
        raw = _rds(target, new)
        if raw is None:
            instance_class, _, retention, multi_az = size("postgres", target.plan)
            params = {
                "DBInstanceIdentifier": new, "DBSnapshotIdentifier": snapshot, "DBInstanceClass": instance_class,
                "PubliclyAccessible": False, "MultiAZ": bool(multi_az), "CopyTagsToSnapshot": True, "DeletionProtection": False,
                "Tags": _tag_list(target), **_placement(target, "rds"),
            }  # fmt: skip
            _call_or_none("rds", target, "restore_db_instance_from_db_snapshot", accept=ALREADY_EXISTS, action="restore the snapshot", **params)
            raise InProgress(f"RDS is restoring {snapshot} as {new}")
        facts = _rds_wait_ready(target, raw, doing=f"restoring {snapshot}")
        _rds_set_password(target, new, target.password, marker_key="restore_password_sent")
        _retire(target, _rds_delete)
    else:
        raw = _cache(target, new)
        if raw is None:
            _cache_create(target, new, snapshot=snapshot)  # with the token in force: nothing to set after
            raise InProgress(f"ElastiCache is restoring {snapshot} as {new}")
        facts = _cache_wait_ready(target, raw, doing=f"restoring {snapshot}")
        _retire(target, _cache_delete)
    return Facts(host=facts.host, port=facts.port, data={**facts.data, **data})


def snapshot_delete(target: AwsTarget, snapshot: str) -> None:
    """Delete the snapshot (one already gone is fine)."""
    _own_snapshot(target, snapshot)
    if target.engine == "postgres":
        _call_or_none("rds", target, "delete_db_snapshot", accept=SNAPSHOT_NOT_FOUND, action="delete the snapshot", DBSnapshotIdentifier=snapshot)
    else:
        _call_or_none("elasticache", target, "delete_snapshot", accept=SNAPSHOT_NOT_FOUND, action="delete the snapshot", SnapshotName=snapshot)
