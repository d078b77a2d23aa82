"""A tenant with one object of every kind, made through its own API as a user would, and the
outside world it talks to (Stripe, DNS, the instance's agent) answering on loopback.

Both security suites use it: schemathesis fuzzes every operation against these objects, and the
isolation matrix points another tenant's token at them.
"""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import transaction
from django.test import override_settings

from orchestrio import notifications
from orchestrio.models import Notification, SubscriptionPlan
from instances.models import Operation
from instances.services import log_append

from ..billing.conftest import WEBHOOK_SECRET, StripeStub
from ..factories import ApiTokenFactory, InstanceFactory, MembershipFactory, TenantFactory, UserFactory
from ..helpers import Api
from ..domains.dns_fixture import DnsServer


class _AgentHandler(BaseHTTPRequestHandler):
    """The instance agent's API, answered the way a healthy agent answers."""

    def do_GET(self):  # noqa: N802
        if self.path == "/health":
            return self._send({"status": "ok"})
        if self.path == "/api/status":
            return self._send({"status": "running", "uptime_seconds": 60})
        if self.path.startswith("/conversations/"):
            message = {"role": "user", "content": "hello", "at": "2026-12-01T00:00:00.000000Z", "tokens": 2, "user": None}
            return self._send({"id": self.path.split("/")[2], "created_at": message["at"], "updated_at": message["at"], "messages": [message]})
        if self.path.startswith("/conversations"):
            return self._send({"count": 1, "results": [{"id": "c-1", "created_at": None, "updated_at": None, "messages": 1, "preview": "hello"}]})
        if self.path == "/usage":
            return self._send({"instance_id": "", "epoch": "e1", "days": {}})
        if self.path.startswith("/app-logs"):
            line = {"seq": 1, "ts": "2026-12-01T00:00:00.000000Z", "stream": "stdout", "line": "listening"}
            return self._send({"lines": [line], "last_seq": 1, "truncated": False, "starts": 1, "last_exit_code": None, "last_exit_at": None})
        return self._send({"config": {}} if self.path == "/config" else {"status": "running", "exit_code": None})

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/chat":
            exchange = {"conversation_id": "c-1", "model": "default", "skill": "echo", "reply": "You said: hello", "tokens_in": 2, "tokens_out": 4, "at": "2026-12-01T00:00:00.000000Z"}
            if "text/event-stream" in self.headers.get("Accept", ""):
                data = f"event: delta\ndata: {json.dumps({'text': exchange['reply']})}\n\nevent: done\ndata: {json.dumps(exchange)}\n\n".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            return self._send(exchange)
        self._send({"digest": "0" * 64, "ok": True})

    def _send(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def _serve(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


# The servers are stateless for these suites and shared by the whole session (stopping one takes
# half a second, which per test would dominate the run).
# A function every tenant has (not deployed: the sweeps that reach …/deploy start its runtime).
FUNCTION_CODE = "def handler(request):\n    return 'ok'\n"

@pytest.fixture(scope="session")
def agent_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AgentHandler)
    server.daemon_threads = True
    yield from _serve(server)


@pytest.fixture(scope="session")
def stripe_server():
    yield from _serve(StripeStub())


@pytest.fixture(scope="session")
def dns_responder():
    server = DnsServer().start()
    yield server
    server.stop()


@contextmanager
def outside_world(*, stripe_url: str, dns_port: int):
    """Billing configured against the Stripe stub, DNS asked of the loopback responder, and no
    per-minute plan ceiling (the fuzzer sends thousands of requests a minute)."""
    with override_settings(
        STRIPE_SECRET_KEY="sk_test_orchestrio", STRIPE_API_BASE=stripe_url, STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        DNS_NAMESERVERS=["127.0.0.1"], DNS_PORT=dns_port,
    ):  # fmt: skip
        SubscriptionPlan.objects.filter(pk="pro").update(stripe_price_id="price_pro_monthly")
        SubscriptionPlan.objects.filter(pk="team").update(stripe_price_id="price_team_monthly")
        SubscriptionPlan.objects.update(api_requests_per_minute=None)
        yield


def tenant_api(tenant_id: str, username: str) -> Api:
    """A tenant with an owner and the owner's API token."""
    user = UserFactory(username=username)
    tenant = TenantFactory(id=tenant_id, name=tenant_id.replace("-", " ").title())
    MembershipFactory(user=user, tenant=tenant, role="owner")
    token = ApiTokenFactory(tenant=tenant, created_by=user, role="owner")
    return Api(token.plaintext, tenant=tenant, user=user)


@dataclass
class Seeded:
    """The ids of a tenant's objects, by kind."""

    api: Api
    ids: dict[str, list] = field(default_factory=dict)


def _ok(response, *statuses: int) -> dict:
    assert response.status_code in statuses, (response.status_code, response.content[:500])
    return response.json() if response.content else {}


def seed_tenant(api: Api, *, agent_port: int | None = None) -> Seeded:
    """Every kind of object a tenant can own, with ids that start with the tenant's (so a leak is
    easy to spot). The running instance's agent answers at `agent_port` when one is given."""
    tenant = api.tenant
    web = InstanceFactory(
        tenant=tenant, instance_id=f"{tenant.pk}-web", state="running", labels={"team": "core"}, ip_address="127.0.0.1", port=agent_port
    )
    stopped = InstanceFactory(tenant=tenant, instance_id=f"{tenant.pk}-idle", state="stopped")
    broken = InstanceFactory(tenant=tenant, instance_id=f"{tenant.pk}-broken", state="error", error_message="boom")
    for stage in ("provision", "boot", "ready"):
        log_append(instance=web, stage=stage, message=f"{stage} done")

    created_key = f"{tenant.pk}-create-key"
    created = _ok(api.post("instances", {"instance_id": f"{tenant.pk}-new"}, headers={"Idempotency-Key": created_key}), 201)
    blueprint = _ok(api.post("blueprints", {"name": f"{tenant.pk}-bp", "health_path": "/healthz", "agent_port": 8081}), 201)
    task = _ok(
        api.post(f"instances/{web.instance_id}/tasks", {"operation_code": "backup", "script_path": "/opt/orchestrio/scripts/echo-args.sh"}),
        202,
    )
    policy = _ok(api.post(f"instances/{web.instance_id}/gateway-policies", {"slug": "hook", "provider": "api-key"}), 201)
    domain = f"app.{tenant.pk}.example"
    _ok(api.post(f"instances/{web.instance_id}/custom-domain", {"domain": domain}), 202)
    deployment = _ok(api.post("deployments", {"name": f"{tenant.pk}-dep", "environment": "staging", "config": {"a": 1}, "secrets": {"K": "v"}}), 201)
    _ok(api.patch("alerts", {"webhook_url": "https://hooks.example/alerts", "enabled": True}), 200)
    delivery = _ok(api.post("alerts/test"), 202)
    token = _ok(api.post("api-tokens", {"name": f"{tenant.pk}-ci"}), 201)
    colleague = MembershipFactory(user=UserFactory(username=f"dev@{tenant.pk}.example"), tenant=tenant, role="member")
    invitation = _ok(api.post("invitations", {"email": f"invitee@{tenant.pk}.example"}), 201)
    fleet_request = _ok(api.post("requests", {"count": 1, "instance_id_prefix": f"{tenant.pk}-fleet"}), 202)
    # The broken instance's event, as its operation would raise it: each member's notification.
    notifications.notify([(tenant.pk, "instance.error", {"instance_id": broken.instance_id, "error_message": "boom"})])
    notification = Notification.objects.get(tenant=tenant, user=api.user)
    addon = _ok(api.post(f"instances/{web.instance_id}/addons", {"engine": "postgres"}), 201)  # its job is not run: no server
    # Its backup: as if created, then a backup asked for (whose job is not run either: pending).
    from addons.models import AddOn, AddOnOperation

    AddOnOperation.objects.filter(addon__addon_id=addon["addon_id"]).update(status="succeeded")
    AddOn.objects.filter(addon_id=addon["addon_id"]).update(status="available")
    backup = _ok(api.post(f"addons/{addon['addon_id']}/backups"), 202)
    function = _ok(api.post("functions", {"slug": f"{tenant.pk}-fn", "runtime": "python3.11", "code": FUNCTION_CODE, "auth_mode": "api_key", "env": {"K": "v"}}), 201)
    _ok(api.patch(f"instances/{web.instance_id}/consent", {"debug_access": True}), 200)  # its conversations are readable

    return Seeded(
        api=api,
        ids={
            "instance": [web.instance_id, stopped.instance_id, broken.instance_id, created["instance_id"], deployment["instance_id"]],
            "blueprint": [blueprint["name"]],
            "task": [task["task_id"]],
            "gateway_policy": [policy["id"]],
            "deployment": [deployment["id"]],
            "alert_delivery": [delivery["id"]],
            "api_token": [token["id"]],
            "member": [colleague.pk],
            "invitation": [invitation["id"]],
            "fleet_request": [fleet_request["request_id"]],
            "notification": [notification.pk],
            "addon": [addon["addon_id"]],
            "addon_backup": [backup["backup_id"]],
            "function": [function["function_id"]],
            "function_slug": [function["slug"]],
            "idempotency_key": [created_key],
            "operation": list(Operation.objects.filter(tenant=tenant).order_by("pk").values_list("pk", flat=True)[:2]),
            "domain": [domain],
            "conversation": [f"{tenant.pk}-conv"],
        },
    )


@pytest.fixture
def seeded(db, agent_server, stripe_server, dns_responder) -> Seeded:
    """Tenant A ("acme-corp") and its objects, for one test."""
    with outside_world(stripe_url=stripe_server.url, dns_port=dns_responder.port):
        yield seed_tenant(tenant_api("acme-corp", "owner@acme.example"), agent_port=agent_server.server_port)


@pytest.fixture(scope="module")
def seeded_module(django_db_setup, django_db_blocker, agent_server, stripe_server, dns_responder) -> Seeded:
    """Tenant A and its objects, made once for a whole module in a transaction rolled back at its
    end; each test's own transaction (the `db` fixture) is a savepoint inside it."""
    with django_db_blocker.unblock(), transaction.atomic():
        with outside_world(stripe_url=stripe_server.url, dns_port=dns_responder.port):
            yield seed_tenant(tenant_api("acme-corp", "owner@acme.example"), agent_port=agent_server.server_port)
        transaction.set_rollback(True)
