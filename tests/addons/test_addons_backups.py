"""Add-on backups on real servers (issue 19, item 4): PostgreSQL `pg_dump -Fc` / `pg_restore`,
Redis RDB snapshots; the local store and S3 (a moto server); checksums verified on restore; the
signed download URL before and after it expires; the scheduler's automatic backups and retention
on a fixed clock. No mock of PostgreSQL or Redis."""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
import redis
from django.conf import settings
from django.core import signing
from django.test import TestCase
from django.utils import timezone

from addons import engines, services
from addons.jobs import backup_sweep
from addons.models import AddOn, AddOnBackup

from ..helpers import assert_error, run_jobs

pytestmark = pytest.mark.slow
needs_pg = pytest.mark.skipif(engines.postgres_bin() is None, reason="needs the host's PostgreSQL binaries (apt-get install postgresql)")
needs_redis = pytest.mark.skipif(engines.redis_server() is None, reason="needs redis-server (apt-get install redis-server)")


def _addon(api, engine):
    created = api.post("instances/web-01/addons", {"engine": engine})
    assert created.status_code == 201, created.content
    run_jobs()
    body = created.json()
    assert api.get(f"addons/{body['addon_id']}").json()["status"] == "available"
    return body["addon_id"], body["connection_url"]


def _backup(api, addon_id):
    response = api.post(f"addons/{addon_id}/backups")
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "pending" and api.get(f"addons/{addon_id}").json()["status"] == "backing_up"  # from the moment it is accepted
    run_jobs()
    backup = api.get(f"addons/{addon_id}/backups").json()["results"][0]
    assert backup["status"] == "available", backup
    assert backup["size_bytes"] > 0 and len(backup["sha256"]) == 64
    return backup


def _restore(api, addon_id, backup_id):
    response = api.post(f"addons/{addon_id}/restore", {"backup_id": backup_id})
    assert response.status_code == 202, response.content
    run_jobs()
    return api.get(f"addons/{addon_id}").json()


def _when(value: str):
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _download(client, url: str) -> bytes:
    response = client.get(urlsplit(url).path)
    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    return b"".join(response.streaming_content)


@needs_pg
def test_postgres_backup_restore_and_the_signed_download(api, other_api, running, client, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    addon_id, url = _addon(api, "postgres")
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE notes (body text)")
        conn.execute("INSERT INTO notes VALUES ('keep me')")
    backup = _backup(api, addon_id)
    assert backup["storage"] == "local" and backup["kind"] == "manual"
    stored = AddOnBackup.objects.get(backup_id=backup["backup_id"])
    assert (Path(settings.ADDONS_BACKUP_DIR) / stored.location).read_bytes()[:5] == b"PGDMP"  # pg_dump's custom format
    with psycopg.connect(url) as conn:
        conn.execute("DELETE FROM notes")
        conn.execute("CREATE TABLE later (x int)")

    idle = psycopg.connect(url)  # the instance's client, connected through the restore
    record = _restore(api, addon_id, backup["backup_id"])
    assert record["status"] == "available" and record["error_message"] is None
    with pytest.raises(psycopg.OperationalError):
        idle.execute("SELECT 1")  # its session ended with the database it used: it reconnects
    idle.close()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT body FROM notes").fetchall() == [("keep me",)]
        # The database as it was at the backup: a table made since is gone too (docs/addons.md).
        assert conn.execute("SELECT to_regclass('later')").fetchone() == (None,)

    # The download: a signed URL, no session needed, the bytes whose checksum was recorded.
    link = api.get(f"addons/{addon_id}/backups/{backup['backup_id']}/download")
    assert link.status_code == 200 and link["Cache-Control"] == "no-store"
    body = _download(client, link.json()["url"])
    assert hashlib.sha256(body).hexdigest() == backup["sha256"]
    # …tampered with: nothing; after it expires: refused, in a person's words.
    path = urlsplit(link.json()["url"]).path
    assert client.get(path[:-3] + "abc").status_code == 404
    now = signing.time.time()
    monkeypatch.setattr(signing.time, "time", lambda: now + settings.ADDONS_BACKUP_DOWNLOAD_SECONDS + 5)
    expired = client.get(path)
    assert expired.status_code == 403 and b"expired" in expired.content
    monkeypatch.undo()
    # Another tenant: 404 for everything of the add-on's backups.
    for response in (
        other_api.get(f"addons/{addon_id}/backups"), other_api.get(f"addons/{addon_id}/backup-info"),
        other_api.get(f"addons/{addon_id}/backups/{backup['backup_id']}/download"),
        other_api.post(f"addons/{addon_id}/restore", {"backup_id": backup["backup_id"]}), other_api.delete(f"addons/{addon_id}/backups/{backup['backup_id']}"),
    ):  # fmt: skip
        assert_error(response, 404)
    # A deleted backup's link stops working and its file goes from the store.
    assert api.delete(f"addons/{addon_id}/backups/{backup['backup_id']}").status_code == 204
    assert client.get(path).status_code == 404
    assert not (Path(settings.ADDONS_BACKUP_DIR) / stored.location).exists()
    assert api.get(f"addons/{addon_id}/backups").json()["results"] == []

    password = url.split(":")[2].split("@")[0]
    assert password not in caplog.text and password not in str(AddOnBackup.objects.values_list("error_message", flat=True))
    api.delete(f"addons/{addon_id}?confirm={addon_id}")
    run_jobs()


@needs_pg
def test_a_backup_whose_checksum_does_not_match_is_refused_and_the_data_untouched(api, running):
    addon_id, url = _addon(api, "postgres")
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE notes (body text)")
    backup = _backup(api, addon_id)
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO notes VALUES ('written after')")
    stored = Path(settings.ADDONS_BACKUP_DIR) / AddOnBackup.objects.get(backup_id=backup["backup_id"]).location
    stored.write_bytes(stored.read_bytes() + b"tampered")

    record = _restore(api, addon_id, backup["backup_id"])
    assert record["status"] == "available"
    assert "does not match its recorded SHA-256" in record["error_message"] and "nothing was restored" in record["error_message"]
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT body FROM notes").fetchall() == [("written after",)]
    api.delete(f"addons/{addon_id}?confirm={addon_id}")
    run_jobs()


@needs_pg
def test_a_restore_that_fails_leaves_the_database_as_it_was(api, running):
    """An archive pg_restore refuses (its checksum recorded as it is, so it gets that far): the
    restore fails, the database and its data are untouched, no half-restored database is left."""
    addon_id, url = _addon(api, "postgres")
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE notes (body text)")
    backup = _backup(api, addon_id)
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO notes VALUES ('written after')")
    record = AddOnBackup.objects.get(backup_id=backup["backup_id"])
    stored = Path(settings.ADDONS_BACKUP_DIR) / record.location
    broken = stored.read_bytes()[:200]  # a cut archive
    stored.write_bytes(broken)
    AddOnBackup.objects.filter(pk=record.pk).update(sha256=hashlib.sha256(broken).hexdigest())

    after = _restore(api, addon_id, backup["backup_id"])
    assert after["status"] == "available" and "pg_restore" in after["error_message"]
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT body FROM notes").fetchall() == [("written after",)]
        names = {name for (name,) in conn.execute("SELECT datname FROM pg_database")}
    assert not any(name.startswith("app__") for name in names), names
    api.delete(f"addons/{addon_id}?confirm={addon_id}")
    run_jobs()


@needs_redis
def test_redis_backup_and_restore_survive_a_restart(api, running):
    addon_id, url = _addon(api, "redis")
    client = redis.Redis.from_url(url)
    client.set("greeting", "hello")
    backup = _backup(api, addon_id)
    client.delete("greeting")
    client.set("later", "x")
    assert _restore(api, addon_id, backup["backup_id"])["status"] == "available"
    client = redis.Redis.from_url(url)
    assert client.get("greeting") == b"hello" and client.get("later") is None
    # The append-only file was written again from the snapshot: a restart keeps it.
    addon = AddOn.objects.get(addon_id=addon_id)
    engines.stop(services._target(addon))
    engines.ensure_running(services._target(addon))
    assert redis.Redis.from_url(url).get("greeting") == b"hello"
    api.delete(f"addons/{addon_id}?confirm={addon_id}")
    run_jobs()


@pytest.fixture
def s3(settings):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    settings.ADDONS_BACKUP_S3_BUCKET = "orchestrio-backups"
    settings.ADDONS_BACKUP_S3_ENDPOINT_URL = endpoint
    settings.ADDONS_BACKUP_S3_REGION = "us-east-1"
    import os

    saved = {key: os.environ.get(key) for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="orchestrio-backups")
    yield boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@needs_redis
def test_backups_in_s3_with_a_presigned_download(api, running, s3):
    addon_id, url = _addon(api, "redis")
    redis.Redis.from_url(url).set("greeting", "from s3")
    backup = _backup(api, addon_id)
    assert backup["storage"] == "s3"
    key = settings.ADDONS_BACKUP_S3_PREFIX + AddOnBackup.objects.get(backup_id=backup["backup_id"]).location
    assert s3.head_object(Bucket="orchestrio-backups", Key=key)["ContentLength"] == backup["size_bytes"]

    link = api.get(f"addons/{addon_id}/backups/{backup['backup_id']}/download").json()
    # Presigned (SigV4) for ADDONS_BACKUP_DOWNLOAD_SECONDS from now: S3 refuses it after that
    # (moto does not check a presigned URL's expiry, so the refusal itself is not tested here).
    from urllib.parse import parse_qs

    query = parse_qs(urlsplit(link["url"]).query)
    assert query["X-Amz-Expires"] == [str(settings.ADDONS_BACKUP_DOWNLOAD_SECONDS)] and query["X-Amz-Signature"]
    signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt_timezone.utc)
    assert abs((_when(link["expires_at"]) - signed_at).total_seconds() - settings.ADDONS_BACKUP_DOWNLOAD_SECONDS) < 5
    downloaded = httpx.get(link["url"], timeout=10)
    assert downloaded.status_code == 200 and hashlib.sha256(downloaded.content).hexdigest() == backup["sha256"]

    redis.Redis.from_url(url).delete("greeting")
    assert _restore(api, addon_id, backup["backup_id"])["error_message"] is None
    assert redis.Redis.from_url(url).get("greeting") == b"from s3"
    assert api.delete(f"addons/{addon_id}/backups/{backup['backup_id']}").status_code == 204
    assert s3.list_objects_v2(Bucket="orchestrio-backups").get("KeyCount") == 0
    api.delete(f"addons/{addon_id}?confirm={addon_id}")
    run_jobs()


@needs_redis
def test_automatic_backups_and_retention_on_a_fixed_clock(api, running, monkeypatch):
    start = timezone.now().replace(microsecond=0)
    clock = [start]
    monkeypatch.setattr(timezone, "now", lambda: clock[0])
    addon_id, url = _addon(api, "redis")
    redis.Redis.from_url(url).set("k", "v")
    info = api.get(f"addons/{addon_id}/backup-info").json()
    assert info == {"addon_id": addon_id, "auto_backup": False, "retention_days": 7, "daily_quota": 5, "used_today": 0, "next_run_at": None, "last_backup_at": None}
    info = api.post(f"addons/{addon_id}/auto-backup", {"enabled": True}).json()
    assert info["auto_backup"] is True and _when(info["next_run_at"]) == start

    def sweep(at):
        clock[0] = at
        with TestCase.captureOnCommitCallbacks(execute=True):  # as the periodic job's commit would
            summary = backup_sweep()
        run_jobs()
        return summary

    assert sweep(start + timedelta(minutes=5))["auto_backups"] == 1
    first = AddOnBackup.objects.get(addon__addon_id=addon_id)
    assert first.kind == "auto" and first.status == "available" and first.expires_at == first.created_at + timedelta(days=7)
    assert sweep(start + timedelta(hours=12))["auto_backups"] == 0  # a day apart
    info = api.get(f"addons/{addon_id}/backup-info").json()
    assert _when(info["next_run_at"]) == first.created_at + timedelta(days=1) and info["last_backup_at"]
    assert sweep(start + timedelta(days=1, minutes=10))["auto_backups"] == 1
    assert AddOnBackup.objects.filter(addon__addon_id=addon_id, status="available").count() == 2

    # Retention: seven days on Pro; the first backup goes, from its store too, the second stays.
    first_file = Path(settings.ADDONS_BACKUP_DIR) / first.location
    assert first_file.exists()
    summary = sweep(first.created_at + timedelta(days=7, seconds=1))
    assert summary["expired"] == 1 and summary["auto_backups"] == 1  # and the day's automatic one
    first.refresh_from_db()
    assert first.status == "deleted" and not first.stored and not first_file.exists()
    assert [b["backup_id"] for b in api.get(f"addons/{addon_id}/backups").json()["results"]] == list(
        AddOnBackup.objects.filter(addon__addon_id=addon_id, status="available").order_by("-created_at").values_list("backup_id", flat=True)
    )
    # Off: no more automatic backups.
    assert api.post(f"addons/{addon_id}/auto-backup", {"enabled": False}).json()["next_run_at"] is None
    assert sweep(start + timedelta(days=30))["auto_backups"] == 0
    monkeypatch.undo()
    api.delete(f"addons/{addon_id}?confirm={addon_id}")
    run_jobs()
