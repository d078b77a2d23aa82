"""SSRF: every outbound URL a tenant controls (alert webhooks, OIDC issuers and their JWKS) is
refused when it points at a private, loopback, link-local, multicast or reserved address — when it
is set (422) and again when the control plane connects (DNS rebinding) — and what the far end
answers never comes back to the tenant.

These tests run with OUTBOUND_ALLOW_LOOPBACK off, as production does. The DNS answers come from
`fake_dns` (socket.getaddrinfo, which both the validation and the connection use)."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from billing.models import AlertAttempt, AlertConfig, AlertDelivery
from gateway.models import GatewayPolicy

from ..helpers import assert_validation_error, call_job, run_jobs
from ..instances.conftest import make_instance, running  # noqa: F401 - fixtures

PUBLIC_IP = "93.184.215.14"  # a global unicast address; nothing in these tests connects to it
SECRET = "TOP-SECRET-internal-service-answer"


@pytest.fixture(autouse=True)
def _loopback_is_off(settings):
    assert settings.OUTBOUND_ALLOW_LOOPBACK is False, "the security tests run with loopback refused, as production"


@pytest.fixture
def fake_dns(monkeypatch):
    """Names → addresses (a list, or a list of lists: one answer per lookup, the last repeated).
    Anything else (IP literals, real names) goes to the real resolver."""
    real = socket.getaddrinfo
    answers: dict[str, list] = {}
    lookups: list[str] = []

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode() if isinstance(host, bytes) else host
        name = (name or "").rstrip(".").lower()
        if name not in answers:
            return real(host, port, family, type, proto, flags)
        lookups.append(name)
        plan = answers[name]
        current = plan.pop(0) if isinstance(plan[0], list) and len(plan) > 1 else (plan[0] if isinstance(plan[0], list) else plan)
        out = []
        for address in current:
            fam = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, int(port or 0), 0, 0) if fam == socket.AF_INET6 else (address, int(port or 0))
            out.append((fam, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
        return out

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    fake = type("FakeDns", (), {})()
    fake.answers, fake.lookups = answers, lookups
    answers.update({
        "hooks.example.com": [PUBLIC_IP],
        "internal.attacker.test": ["127.0.0.1"],
        "metadata.attacker.test": ["169.254.169.254"],
        "mixed.attacker.test": [PUBLIC_IP, "10.0.0.7"],
        "v6.attacker.test": ["::ffff:10.0.0.1"],
    })  # fmt: skip
    return fake


class _Internal(BaseHTTPRequestHandler):
    """An internal service: answers with something secret, and counts every TCP connection."""

    def do_GET(self):  # noqa: N802
        self._answer()

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer()

    def _answer(self):
        self.server.requests.append({"path": self.path, "host": self.headers.get("Host")})
        status, headers = self.server.answer
        body = json.dumps({"error": SECRET}).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class InternalService(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Internal)
        self.connections = 0
        self.requests: list[dict] = []
        self.answer = (401, {})
        self.port = self.server_port

    def verify_request(self, request, client_address):
        self.connections += 1
        return True


@pytest.fixture
def internal():
    server = InternalService()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


# --- what is refused when it is set -----------------------------------------------------------------

REFUSED = [
    # from the report
    "https://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "https://10.0.0.1/",
    "https://[::1]:8201/",
    "https://user:pass@127.0.0.1:8201/",
    "HTTP://127.0.0.1:8201/",
    # the same addresses, spelled otherwise
    "http://2130706433/",
    "https://2130706433/",
    "https://0x7f000001/",
    "https://0177.0.0.1/",
    "https://127.1/",
    "https://0.0.0.0/",
    "https://0/",
    "https://[::]/",
    "https://[::ffff:127.0.0.1]/",
    "https://[::ffff:a9fe:a9fe]/",
    "https://[::127.0.0.1]/",
    "https://[::ffff:0:7f00:1]/",
    "https://[100::1]/",
    "https://[2001:db8::1]/",
    "https://[64:ff9b::a9fe:a9fe]/",
    "https://[64:ff9b:1::a00:1]/",
    "https://[2002:7f00:1::1]/",
    "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
    "https://[fe80::1]/",
    "https://[fd00::1]/",
    "https://[ff02::1]/",
    "https://100.64.0.1/",
    "https://192.168.0.1/",
    "https://172.16.5.4/",
    "https://224.0.0.1/",
    "https://240.0.0.1/",
    "https://255.255.255.255/",
    "https://192.0.0.170/",
    "https://198.18.0.1/",
    "https://192.0.2.1/",
    "https://localhost/",
    "https://localhost./",
    "https://LOCALHOST:8000/",
    "https://web-01.instances.localhost/",
    # names that resolve to them
    "https://internal.attacker.test/",
    "https://metadata.attacker.test/latest/meta-data/",
    "https://mixed.attacker.test/",
    "https://v6.attacker.test/",
    # a public host, but not a URL we send to
    "https://user@hooks.example.com/",
    "https://:secret@hooks.example.com/",
    "http://hooks.example.com/",
    "ftp://hooks.example.com/",
    "https:///no-host",
    "https://[::1/",
]


@pytest.mark.parametrize("url", REFUSED)
def test_alert_webhook_url_is_refused_when_set(api, fake_dns, url):
    assert_validation_error(api.patch("alerts", {"webhook_url": url, "enabled": True}), ("body", "webhook_url"))
    assert not AlertConfig.objects.exclude(webhook_url="").exists()


@pytest.mark.parametrize("url", [u for u in REFUSED if u.startswith("https://") and "@" not in u and "[::1/" not in u and ":///" not in u])
def test_oidc_issuer_is_refused_when_set(api, running, fake_dns, url):
    response = api.post("instances/web-01/gateway-policies", {"provider": "oidc", "audience": "a", "issuer": url})
    assert_validation_error(response, ("body", "issuer"))
    assert not GatewayPolicy.objects.exists()


def test_terraform_hostname_is_an_issuer_too(api, running, fake_dns):
    body = {"provider": "terraform-oidc", "audience": "a", "config": {"hostname": "internal.attacker.test"}}
    assert_validation_error(api.post("instances/web-01/gateway-policies", body), ("body", "config", "hostname"))


def test_a_public_https_url_is_accepted(api, fake_dns):
    assert api.patch("alerts", {"webhook_url": "https://hooks.example.com/orchestrio", "enabled": True}).status_code == 200


# --- and refused again when the control plane connects ---------------------------------------------


def _deliver(tenant, url: str) -> AlertDelivery:
    """A webhook URL that never went through validation (stored before this rule, or a name whose
    DNS answer changed): the delivery itself must refuse it."""
    AlertConfig.objects.update_or_create(tenant=tenant, defaults={"webhook_url": url, "enabled": True})
    from billing import alerts

    delivery = call_job(alerts.emit, tenant.pk, "alert.test", {"message": "hi"}, force=True)
    run_jobs()
    delivery.refresh_from_db()
    return delivery


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/",
        "https://127.0.0.1:{port}/",
        "http://2130706433:{port}/",
        "https://[::ffff:127.0.0.1]:{port}/",
        "https://localhost:{port}/",
        "https://user:pass@127.0.0.1:{port}/",
        "https://internal.attacker.test:{port}/",
    ],
)
def test_delivery_refuses_internal_addresses(api, tenant, fake_dns, internal, url):
    delivery = _deliver(tenant, url.format(port=internal.port))
    assert internal.connections == 0
    assert delivery.status == "pending" and delivery.last_response_code is None
    assert delivery.last_error in ("address not allowed", "URL not allowed")
    assert SECRET not in json.dumps(api.get("alerts/deliveries").json())


def test_dns_rebinding_between_validation_and_delivery(api, fake_dns, internal):
    fake_dns.answers["rebind.attacker.test"] = [[PUBLIC_IP], ["127.0.0.1"]]
    url = f"https://rebind.attacker.test:{internal.port}/hook"
    assert api.patch("alerts", {"webhook_url": url, "enabled": True}).status_code == 200
    assert api.post("alerts/test").status_code == 202
    run_jobs()
    assert internal.connections == 0
    delivery = AlertDelivery.objects.get()
    assert delivery.last_error == "address not allowed" and delivery.last_response_code is None
    assert fake_dns.lookups.count("rebind.attacker.test") >= 2  # asked again when connecting


def test_delivery_records_a_fixed_reason_never_the_body(api, tenant, settings, fake_dns, internal):
    settings.OUTBOUND_ALLOW_LOOPBACK = True  # a receiver on loopback that answers badly
    internal.answer = (500, {})
    delivery = _deliver(tenant, f"http://127.0.0.1:{internal.port}/hook")
    assert delivery.last_response_code == 500 and delivery.last_error == "HTTP 500"
    assert AlertAttempt.objects.get().error == "HTTP 500"
    assert SECRET not in json.dumps(api.get("alerts/deliveries").json())


def test_redirects_are_not_followed(api, tenant, settings, fake_dns, internal):
    settings.OUTBOUND_ALLOW_LOOPBACK = True
    internal.answer = (302, {"Location": "http://169.254.169.254/latest/meta-data/"})
    delivery = _deliver(tenant, f"http://127.0.0.1:{internal.port}/hook")
    assert len(internal.requests) == 1
    assert delivery.status == "pending" and delivery.last_error == "HTTP 302"


def test_refused_and_silent_ports_give_fixed_reasons(api, tenant, settings, fake_dns):
    settings.OUTBOUND_ALLOW_LOOPBACK = True
    settings.ALERT_TIMEOUT_SECONDS = 0.5
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    assert _deliver(tenant, f"http://127.0.0.1:{port}/").last_error == "connection refused"
    AlertDelivery.objects.all().delete()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    try:
        assert _deliver(tenant, f"http://127.0.0.1:{silent.getsockname()[1]}/").last_error == "timed out"
    finally:
        silent.close()
    AlertDelivery.objects.all().delete()
    assert _deliver(tenant, "https://no-such-host.invalid/").last_error == "host not found"


def test_delivery_connects_to_the_address_it_checked(api, settings, fake_dns, internal):
    """The name is resolved once per connection, by the guard, and the connection goes to that
    address (the system resolver does not know this name at all); the Host header keeps the name."""
    settings.OUTBOUND_ALLOW_LOOPBACK = True
    internal.answer = (200, {})
    fake_dns.answers["hooks.test"] = ["127.0.0.1"]
    assert api.patch("alerts", {"webhook_url": f"http://hooks.test:{internal.port}/hook", "enabled": True}).status_code == 200
    api.post("alerts/test")
    run_jobs()
    assert internal.requests == [{"path": "/hook", "host": f"hooks.test:{internal.port}"}]
    assert AlertDelivery.objects.get().status == "succeeded"


def test_loopback_allowed_still_refuses_private_networks(api, settings, fake_dns):
    settings.OUTBOUND_ALLOW_LOOPBACK = True
    for url in ("https://10.0.0.1/", "https://169.254.169.254/", "https://[::ffff:a9fe:a9fe]/", "http://10.0.0.1/", "http://hooks.example.com/"):
        assert_validation_error(api.patch("alerts", {"webhook_url": url}), ("body", "webhook_url"))


# --- OIDC issuers and key sets at fetch time --------------------------------------------------------


@pytest.fixture
def listener():
    """A TCP port that counts the connections it accepts."""
    server = InternalService()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_oidc_issuer_rebinding_is_refused_at_fetch(api, running, fake_dns, listener):
    from gateway import oidc

    fake_dns.answers["idp.rebind.test"] = [[PUBLIC_IP], ["127.0.0.1"]]
    issuer = f"https://idp.rebind.test:{listener.port}/idp"
    created = api.post("instances/web-01/gateway-policies", {"slug": "deploy", "provider": "oidc", "audience": "orchestrio", "issuer": issuer})
    assert created.status_code == 201, created.content
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode({"iss": issuer, "aud": "orchestrio", "sub": "x", "exp": int(time.time()) + 300}, key, algorithm="RS256", headers={"kid": "k1"})
    with pytest.raises(oidc.OIDCError, match="not allowed"):
        oidc.verify(token, issuer=issuer, audience="orchestrio")
    assert listener.connections == 0


def test_operator_allowed_networks(api, settings, fake_dns):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["10.20.0.0/16"]
    assert api.patch("alerts", {"webhook_url": "https://10.20.1.2/hook"}).status_code == 200
    for url in ("https://10.21.0.1/hook", "https://127.0.0.1/hook", "http://10.20.1.2/hook"):
        assert_validation_error(api.patch("alerts", {"webhook_url": url}), ("body", "webhook_url"))


def test_check_deploy_warns_when_loopback_is_allowed_in_production(settings):
    from orchestrio.outbound import check_outbound

    assert check_outbound() == []
    settings.OUTBOUND_ALLOW_LOOPBACK = True
    assert [message.id for message in check_outbound()] == ["orchestrio.W020"]


@pytest.fixture
def tls_receiver(tmp_path, monkeypatch):
    """An https receiver on loopback with a certificate for hooks.test only, and the outbound
    client trusting that certificate (as it trusts the public CAs)."""
    import datetime
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from orchestrio import outbound

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hooks.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(1)
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("hooks.test")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    server = InternalService()
    server.answer = (200, {})
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_file, key_file)
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    client_context = ssl.create_default_context(cafile=str(cert_file))
    monkeypatch.setattr(outbound, "_ssl_context", lambda: client_context)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_tls_verifies_the_hostname_while_connecting_to_the_checked_address(api, tenant, settings, fake_dns, tls_receiver):
    settings.OUTBOUND_ALLOW_LOOPBACK = True
    fake_dns.answers["hooks.test"] = ["127.0.0.1"]
    fake_dns.answers["other.test"] = ["127.0.0.1"]
    delivery = _deliver(tenant, f"https://hooks.test:{tls_receiver.port}/hook")
    assert delivery.status == "succeeded", delivery.last_error
    assert tls_receiver.requests == [{"path": "/hook", "host": f"hooks.test:{tls_receiver.port}"}]
    AlertDelivery.objects.all().delete()
    # Same address, another name: the certificate does not match it.
    assert _deliver(tenant, f"https://other.test:{tls_receiver.port}/hook").last_error == "TLS handshake failed"
