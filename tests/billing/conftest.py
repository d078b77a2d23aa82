"""A stub of Stripe's HTTP API on loopback (the real SDK talks to it), and Stripe-style webhook
signing done for real."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from orchestrio.models import SubscriptionPlan

from ..instances.conftest import live, make_instance, running  # noqa: F401 - fixtures

WEBHOOK_SECRET = "whsec_test_0123456789abcdef"


class StripeStub(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict] = []
        self.fail_with: int | None = None
        self.url = f"http://127.0.0.1:{self.server_port}"


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        form = {k: v[0] if len(v) == 1 else v for k, v in parse_qs(raw).items()}
        self.server.requests.append({"path": self.path, "form": form, "headers": dict(self.headers.items())})
        if self.server.fail_with:
            return self._send(self.server.fail_with, {"error": {"type": "api_error", "message": "stub failure"}})
        if self.path == "/v1/customers":
            return self._send(200, {"id": "cus_test123", "object": "customer", "email": form.get("email")})
        if self.path == "/v1/checkout/sessions":
            return self._send(200, {"id": "cs_test_abc", "object": "checkout.session", "url": f"{self.server.url}/pay/cs_test_abc"})
        if self.path == "/v1/billing_portal/sessions":
            return self._send(200, {"id": "bps_test_abc", "object": "billing_portal.session", "url": f"{self.server.url}/portal/bps_test_abc"})
        return self._send(404, {"error": {"type": "invalid_request_error", "message": "no such endpoint"}})

    def do_GET(self):  # noqa: N802 - the "hosted" checkout page a browser lands on
        body = b"<html><body><h1>Stripe Checkout (stub)</h1></body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Request-Id", "req_stub")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def stripe_stub(settings, request):
    request.getfixturevalue("transactional_db" if "live_server" in request.fixturenames else "db")
    server = StripeStub()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.STRIPE_SECRET_KEY = "sk_test_orchestrio"
    settings.STRIPE_API_BASE = server.url
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.CSP_FORM_ACTION_EXTRA = [server.url]  # the stub's "hosted" pages
    SubscriptionPlan.objects.filter(pk="pro").update(stripe_price_id="price_pro_monthly")
    SubscriptionPlan.objects.filter(pk="team").update(stripe_price_id="price_team_monthly")
    yield server
    server.shutdown()


def signed(payload: dict, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> tuple[bytes, str]:
    body = json.dumps(payload).encode()
    timestamp = int(time.time()) if timestamp is None else timestamp
    signature = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return body, f"t={timestamp},v1={signature}"


def event(kind: str, obj: dict, *, event_id: str = "evt_1") -> dict:
    return {"id": event_id, "object": "event", "type": kind, "api_version": "2024-06-20", "created": int(time.time()), "data": {"object": obj}}


def post_webhook(client, payload: dict, **kwargs):
    body, signature = signed(payload, **kwargs)
    return client.post("/billing/stripe/webhook", body, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature)
