"""`ork` through its entry point (click's CliRunner, in this process) against a live server: every
command group, `--output json` parsed, the exit codes, the token file's mode."""

from __future__ import annotations

import json
import os
import stat

import pytest
from click.testing import CliRunner

from orchestrio import notifications
from orchestrio_client.cli import EXIT_CODES, cli

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def ork_cli(live_server, ork_token, tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "ORK_URL": live_server.url, "ORK_TOKEN": ork_token, "ORK_PROFILE": None, "ORK_OUTPUT": None, "ORK_RETRIES": None}

    def run(*args: str, code: int = 0, input: str | None = None, **extra_env):
        result = CliRunner().invoke(cli, list(args), env={**env, **extra_env}, input=input, catch_exceptions=False)
        assert result.exit_code == code, f"ork {' '.join(args)} → {result.exit_code}\n{result.stdout}\n{result.stderr}"
        return result

    def run_json(*args: str, code: int = 0, **extra_env):
        return json.loads(run("-o", "json", *args, code=code, **extra_env).stdout)

    run.json = run_json
    return run


def test_instances_and_tasks(ork_cli, worker):
    created = ork_cli("instances", "create", "cli-box", "--label", "env=ci", "--wait", "--timeout", "60")
    assert "cli-box: running" in created.stderr  # the progress display
    assert ork_cli.json("instances", "get", "cli-box")["state"] == "running"
    listed = json.loads(ork_cli("instances", "list", "--label", "env:ci", "-o", "json").stdout)  # -o after the command too
    assert [i["instance_id"] for i in listed] == ["cli-box"]
    table = ork_cli("instances", "list").stdout
    assert table.splitlines()[0].split()[:3] == ["INSTANCE_ID", "STATE", "HEALTH_STATUS"] and "cli-box" in table
    assert ork_cli.json("instances", "runtime", "cli-box")["state"] == "running"
    assert ork_cli.json("instances", "logs", "cli-box")
    ork_cli("tunnel-hit", code=2)  # (an unknown command is a usage error)
    app_logs = ork_cli.json("instances", "app-logs", "cli-box", "--tail", "5")
    assert app_logs["instance_id"] == "cli-box" and isinstance(app_logs["lines"], list) and app_logs["starts"] >= 1
    ork_cli("instances", "app-logs", "cli-box", "--follow", "--timeout", "0.5")
    stats = ork_cli.json("instances", "stats", "cli-box", "--window", "24h")
    assert stats["instance_id"] == "cli-box" and stats["resolution"] == "minute" and isinstance(stats["points"], list)
    expected = "(none)" if not stats["points"] else "T"  # no sample yet, or the table's first column
    assert ork_cli("instances", "stats", "cli-box").stdout.split()[0] == expected
    assert ork_cli.json("instances", "wait", "cli-box", "--state", "running")["state"] == "running"
    chat = ork_cli("instances", "chat", "cli-box", "hello there", "--user", "cli-user")
    assert "I am the agent of cli-box" in chat.stdout and "tokens in" in chat.stderr
    assert ork_cli.json("instances", "chat", "cli-box", "again")["reply"] == "You said: again"
    assert "model" in ork_cli("instances", "chat", "cli-box", "hi", "--model", "Not A Model", code=EXIT_CODES["validation"]).stderr

    assert ork_cli.json("instances", "config", "set", "cli-box", "greeting=hello", "n=3")["config"]["greeting"] == "hello"
    assert json.loads(ork_cli("instances", "config", "get", "cli-box").stdout)["config"]["n"] == 3

    # Tasks: run and follow (the output streams to stdout), get, list.
    run = ork_cli("tasks", "run", "cli-box", "/opt/orchestrio/scripts/echo-args.sh", "--arg", "who=world", "--follow")
    assert "world" in run.stdout and "succeeded" in run.stderr
    task_id = ork_cli.json("tasks", "list", "cli-box")[0]["task_id"]
    assert ork_cli.json("tasks", "get", task_id)["status"] == "succeeded"
    ork_cli("tasks", "cancel", task_id, code=EXIT_CODES["state"])  # finished: 400
    failing = ork_cli("tasks", "run", "cli-box", "/opt/orchestrio/scripts/fail.sh", "--follow", code=EXIT_CODES["task_failed"])
    assert "failed" in failing.stderr

    # Lifecycle verbs with --wait, and the exit codes scripts rely on.
    assert ork_cli.json("instances", "stop", "cli-box", "--wait")["state"] == "stopped"
    ork_cli("instances", "stop", "cli-box", code=EXIT_CODES["state"])
    ork_cli("instances", "wait", "cli-box", "--state", "running", "--timeout", "1", code=EXIT_CODES["timeout"])
    ork_cli("instances", "start", "cli-box", "--wait")
    ork_cli("instances", "get", "nope-nope", code=EXIT_CODES["not_found"])
    ork_cli("instances", "create", "cli-box", code=EXIT_CODES["conflict"])
    invalid = ork_cli("instances", "create", "Bad Id!", code=EXIT_CODES["validation"])
    assert "instance_id" in invalid.stderr
    ork_cli("instances", "list", code=EXIT_CODES["auth"], ORK_TOKEN="ork_live_wrong")
    ork_cli("instances", "list", code=EXIT_CODES["unreachable"], ORK_URL="http://127.0.0.1:9", ORK_RETRIES="0")

    destroyed = ork_cli.json("instances", "destroy", "cli-box", "--yes", "--wait")
    assert destroyed["state"] == "destroyed"
    ork_cli("instances", "get", "cli-box", code=EXIT_CODES["not_found"])


def test_login_profiles_and_the_token_file(ork_cli, live_server, ork_token, tmp_path):
    # Login asks for the token (not echoed), checks it, saves it 0600 in a 0700 directory.
    login = ork_cli("login", "--url", live_server.url, input=f"{ork_token}\n", ORK_TOKEN=None, ORK_URL=None)
    assert "sdk-corp" in login.stdout and ork_token not in login.stdout
    path = tmp_path / "config" / "orchestrio" / "config.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert json.loads(path.read_text())["profiles"]["default"]["token"] == ork_token

    # Without ORK_URL/ORK_TOKEN the saved profile is used.
    assert ork_cli.json("tenant", ORK_TOKEN=None, ORK_URL=None)["tenant_id"] == "sdk-corp"
    # A bad token is refused at login and not saved.
    ork_cli("login", "--url", live_server.url, "--token", "ork_live_bogus", "--profile", "bad", code=EXIT_CODES["auth"], ORK_TOKEN=None)
    assert "bad" not in json.loads(path.read_text())["profiles"]
    # A second profile, chosen with --profile.
    ork_cli("login", "--url", live_server.url, "--token", ork_token, "--profile", "staging", ORK_TOKEN=None)
    assert {p["profile"] for p in ork_cli.json("profiles")} == {"default", "staging"}
    assert ork_cli.json("--profile", "staging", "usage", ORK_TOKEN=None, ORK_URL=None)["executions"] >= 0
    ork_cli("--profile", "nowhere", "tenant", code=EXIT_CODES["usage"], ORK_TOKEN=None, ORK_URL=None)

    ork_cli("logout", "--profile", "staging")
    ork_cli("logout")
    assert json.loads(path.read_text())["profiles"] == {}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    ork_cli("tenant", code=EXIT_CODES["auth"], ORK_TOKEN=None, ORK_URL=None)


def test_blueprints_gateway_domains_tokens_usage_activity(ork_cli, ork_tenant, tmp_path):
    blueprint = tmp_path / "bp.json"
    blueprint.write_text(json.dumps({"name": "cli-bp", "provider_api": "RunInstances", "health_path": "/health"}))
    assert ork_cli.json("blueprints", "validate", str(blueprint))["valid"] is True
    assert ork_cli.json("blueprints", "create", str(blueprint))["name"] == "cli-bp"
    assert "cli-bp" in {b["name"] for b in ork_cli.json("blueprints", "list")}
    patch = tmp_path / "patch.json"
    patch.write_text(json.dumps({"health_path": "/ready"}))
    assert ork_cli.json("blueprints", "update", "cli-bp", str(patch))["health_path"] == "/ready"
    assert ork_cli.json("blueprints", "get", "cli-bp")["health_path"] == "/ready"
    ork_cli("blueprints", "create", str(blueprint), code=EXIT_CODES["conflict"])
    ork_cli("blueprints", "delete", "cli-bp")
    ork_cli("blueprints", "get", "cli-bp", code=EXIT_CODES["not_found"])

    # Gateway policies and domains of an instance (pending is enough: no worker here).
    ork_cli("instances", "create", "cli-gw")
    policy = ork_cli.json("gateway", "policies", "create", "cli-gw", "--slug", "hook", "--provider", "api-key")
    assert policy["slug"] == "hook" and policy["provider"] == "api-key"
    assert [p["id"] for p in ork_cli.json("gateway", "policies", "list", "cli-gw")] == [policy["id"]]
    assert ork_cli.json("gateway", "policies", "update", policy["id"], "--disabled")["enabled"] is False
    assert ork_cli.json("gateway", "policies", "get", policy["id"])["enabled"] is False
    ork_cli("gateway", "policies", "create", "cli-gw", "--provider", "oidc", code=EXIT_CODES["validation"])  # no issuer
    ork_cli("gateway", "policies", "delete", policy["id"])
    ork_cli("domains", "get", "cli-gw", code=EXIT_CODES["not_found"])
    added = ork_cli.json("domains", "add", "cli-gw", "app.example.com")
    assert added["domain"] == "app.example.com" and added["dns_records"]
    assert ork_cli.json("domains", "get", "cli-gw")["status"] in ("pending_dns", "verifying")
    ork_cli("domains", "add", "cli-gw", "not a domain", code=EXIT_CODES["validation"])
    assert ork_cli.json("domains", "remove", "cli-gw")["status"] == "removing"

    # Tokens: create shows the secret once; list never does; revoke.
    made = ork_cli.json("tokens", "create", "ci token", "--expires-in-days", "30")
    assert made["token"].startswith("ork_live_")
    listed = ork_cli("-o", "json", "tokens", "list").stdout
    assert "ci token" in listed and made["token"] not in listed
    ork_cli("tokens", "revoke", str(made["id"]))
    ork_cli("tenant", code=EXIT_CODES["auth"], ORK_TOKEN=made["token"])

    assert set(ork_cli.json("usage")) >= {"executions", "quota", "instance_hours"}
    assert any(e["action"] for e in ork_cli.json("activity"))
    notifications.notify([(ork_tenant[0].pk, "instance.health_up", {"instance_id": "cli-gw"})])
    assert "1 unread" in ork_cli("notifications", "list").stdout
    [note] = ork_cli.json("notifications", "list", "--unread")["results"]
    assert ork_cli.json("notifications", "read", str(note["id"]))["read_at"] is not None
    assert ork_cli.json("notifications", "read-all") == {"marked": 0, "unread": 0}
    ork_cli("notifications", "read", "999999", code=EXIT_CODES["not_found"])
    assert ork_cli.json("regions") and ork_cli.json("plans")["instance_plans"]
    assert "complete" in ork_cli("completion", "bash").stdout


def test_deploy_update_and_rollback(ork_cli, worker):
    deployed = ork_cli.json("deploy", "cli-app", "--env", "staging", "--config", "mode=a", "--secret", "API_KEY=s3cret", "--wait", "--timeout", "60")
    assert deployed["status"] == "active" and "s3cret" not in json.dumps(deployed)
    ork_cli("deployments", "rollback", deployed["id"], "1", code=EXIT_CODES["state"])  # already in force: 400
    assert ork_cli.json("deployments", "update", deployed["id"], "--config", "mode=b", "--wait")["config"]["mode"] == "b"
    ork_cli("deployments", "get", deployed["id"])
    revisions = ork_cli.json("deployments", "revisions", deployed["id"])
    assert {r["number"] for r in revisions} >= {1, 2}
    rolled = ork_cli.json("deployments", "rollback", deployed["id"], "1", "--wait")
    assert rolled["status"] == "active" and rolled["config"]["mode"] == "a"
    assert [d["name"] for d in ork_cli.json("deployments", "list")] == ["cli-app"]
    assert isinstance(ork_cli.json("deployments", "logs", deployed["id"]), list)
    assert ork_cli.json("deployments", "delete", deployed["id"], "--yes")["status"] in ("deleting", "deleted")
    assert ork_cli.json("deployments", "list") == []


def test_fleet_requests_and_operations(ork_cli, worker):
    acquired = ork_cli.json("requests", "create", "--count", "2", "--prefix", "cli-fleet", "--label", "pr=7", "--wait", "--timeout", "60")
    assert acquired["status"] == "complete" and sorted(i["instance_id"] for i in acquired["instances"]) == ["cli-fleet-1", "cli-fleet-2"]
    assert [r["request_id"] for r in ork_cli.json("requests", "list", "--kind", "acquire")] == [acquired["request_id"]]
    assert ork_cli.json("requests", "get", acquired["request_id"])["succeeded"] == 2
    ops = ork_cli.json("operations", "list", "--instance", "cli-fleet-1")
    assert [op["kind"] for op in ops] == ["create"]
    assert ork_cli.json("operations", "get", str(ops[0]["id"]))["status"] == "succeeded"
    ork_cli("requests", "create", "--count", "1", "--prefix", "cli-fleet", code=EXIT_CODES["conflict"])  # cli-fleet-1 is taken
    ork_cli("requests", "return", code=EXIT_CODES["usage"])
    returned = ork_cli.json("requests", "return", acquired["request_id"], "--yes", "--wait", "--timeout", "60")
    assert returned["kind"] == "return" and returned["status"] == "complete"
    assert ork_cli.json("instances", "list", "--label", "pr:7") == []


@pytest.mark.sandbox
def test_functions(ork_cli, tmp_path):
    handler = tmp_path / "handler.py"
    handler.write_text("def handler(request):\n    print('cli says hi')\n    return {'status': 200, 'body': {'path': request['path']}}\n")
    created = ork_cli.json("functions", "create", "cli-fn", "--runtime", "python3.11", "--file", str(handler), "--api-key", "--deploy")
    assert created["api_key"].startswith("fnk_") and created["deployed_version"]["status"] == "built"
    fid = created["function_id"]
    invoked = ork_cli.json("functions", "invoke", fid, "--path", "/p")
    assert invoked["status"] == 200 and json.loads(invoked["body"]) == {"path": "/p"}
    assert "cli says hi" in ork_cli("functions", "logs", fid).stdout
    handler.write_text("def handler(request:\n")
    failed = ork_cli("-o", "json", "functions", "deploy", fid, "--file", str(handler), code=EXIT_CODES["error"])
    assert json.loads(failed.stdout)["status"] == "failed"
    assert [v["number"] for v in ork_cli.json("functions", "versions", fid)] == [2, 1]
    assert ork_cli.json("functions", "deploy", fid, "--version", "1")["status"] == "built"
    assert ork_cli.json("functions", "rotate-key", fid)["api_key"] != created["api_key"]
    assert "cli-fn" in ork_cli("functions", "list").stdout
    ork_cli("functions", "delete", fid, "--yes")
    ork_cli("functions", "get", fid, code=EXIT_CODES["not_found"])


def test_addons(ork_cli, worker, tmp_path):
    """A database for an instance, scripted: create and wait, reveal, back up, download, restore,
    the backup plan, destroy (a real redis-server on the local engine)."""
    import redis as redis_py

    from addons import engines

    if engines.redis_server() is None:
        pytest.skip("needs redis-server (apt-get install redis-server)")
    ork_cli("instances", "create", "cli-db", "--wait", "--timeout", "60")
    created = ork_cli.json("addons", "create", "cli-db", "--engine", "redis", "--wait", "--timeout", "60")
    addon_id, url = created["addon_id"], created["connection_url"]
    assert created["status"] == "available" and url.startswith("redis://:")
    assert ork_cli("addons", "reveal", addon_id).stdout.strip() == url
    assert addon_id in ork_cli("addons", "list", "cli-db").stdout
    redis_py.Redis.from_url(url).set("greeting", "hello")
    backup = ork_cli.json("addons", "backup", addon_id, "--wait", "--timeout", "60")
    assert backup["status"] == "available" and len(backup["sha256"]) == 64
    saved = tmp_path / "backup.rdb"
    ork_cli("addons", "download", addon_id, backup["backup_id"], "--output", str(saved))
    import hashlib

    assert hashlib.sha256(saved.read_bytes()).hexdigest() == backup["sha256"]
    redis_py.Redis.from_url(url).delete("greeting")
    restored = ork_cli.json("addons", "restore", addon_id, backup["backup_id"], "--yes", "--wait", "--timeout", "60")
    assert restored["status"] == "available" and redis_py.Redis.from_url(url).get("greeting") == b"hello"
    assert ork_cli.json("addons", "auto-backup", addon_id, "on")["auto_backup"] is True
    assert ork_cli.json("addons", "backup-info", addon_id)["retention_days"] == 7
    assert [b["backup_id"] for b in ork_cli.json("addons", "backups", addon_id)] == [backup["backup_id"]]
    ork_cli("addons", "restore", addon_id, "bak_nope", "--yes", code=EXIT_CODES["not_found"])
    ork_cli("addons", "destroy", addon_id, "--yes", "--wait", "--timeout", "60")
    ork_cli("addons", "get", addon_id, code=EXIT_CODES["not_found"])
    ork_cli("instances", "destroy", "cli-db", "--yes")
