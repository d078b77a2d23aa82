"""Custom domains: validation, uniqueness, DNS verification against a DNS server on loopback, the
TLS ask endpoint, removal."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from orchestrio.models import SubscriptionPlan
from domains.jobs import check_custom_domains
from domains.models import CustomDomain

from ..factories import InstanceFactory
from ..helpers import assert_error, assert_validation_error, run_jobs
from ..isolation import TenantIsolationContract
from .dns_fixture import dns_server  # noqa: F401 - fixture

HOST = "web-01.instances.localhost"


def attach(api, domain="app.acme.example"):
    response = api.post("instances/web-01/custom-domain", {"domain": domain})
    assert response.status_code == 202, response.content
    return response.json()


def configure(dns, body, *, cname=HOST, txt=True):
    if cname:
        dns.set(body["domain"], "CNAME", cname + ".")
    if txt:
        token = next(r["value"] for r in body["dns_records"] if r["type"] == "TXT")
        dns.set(f"_orchestrio-challenge.{body['domain']}", "TXT", f'"{token}"')


def test_attach_tells_exactly_which_records_to_create(api, running):
    body = attach(api)
    assert body["domain"] == "app.acme.example" and body["status"] == "pending_dns" and body["error"] is None
    cname = next(r for r in body["dns_records"] if r["type"] == "CNAME")
    txt = next(r for r in body["dns_records"] if r["type"] == "TXT")
    assert cname == {"type": "CNAME", "name": "app.acme.example", "value": HOST, "purpose": cname["purpose"]}
    assert txt["name"] == "_orchestrio-challenge.app.acme.example" and txt["value"].startswith("orchestrio-verify=")
    assert api.get("instances/web-01").json()["custom_domain"] == "app.acme.example"
    assert api.get("instances/web-01/custom-domain").json()["domain"] == "app.acme.example"


def test_apex_records_offered_when_the_edge_has_addresses(api, running, settings):
    settings.EDGE_IP_ADDRESSES = ["203.0.113.10", "2001:db8::10"]
    records = attach(api)["dns_records"]
    assert {(r["type"], r["value"]) for r in records if r["type"] in ("A", "AAAA")} == {("A", "203.0.113.10"), ("AAAA", "2001:db8::10")}


@pytest.mark.parametrize(
    "domain",
    ["", "localhost", "https://app.example.com", "app.example.com:8443", "app.example.com/path", "192.0.2.1", "[2001:db8::1]",
     "*.example.com", "-bad.example.com", "bad-.example.com", "a..example.com", ("x" * 64) + ".example.com", ("a." * 130) + "com",
     "web-02.instances.localhost", "instances.localhost", "example.123", "under_score.example.com"],
)  # fmt: skip
def test_invalid_domains_are_422(api, running, domain):
    assert_validation_error(api.post("instances/web-01/custom-domain", {"domain": domain}), ("body", "domain"))


@pytest.mark.parametrize(
    ("domain", "worded"),
    [("\u0080x.example.com", "this is not a valid domain name: use letters, digits and hyphens"),
     ("app\u3002.example.com", "this is not a valid domain name"),
     ("a..example.com", "cannot start with a dot or have two dots in a row"),
     (("x" * 64) + ".example.com", "each part between dots is at most 63 characters; xxxxxxxxxxxxxxxx… has 64")],
)  # fmt: skip
def test_invalid_domains_are_explained_without_the_codec_s_words(api, running, domain, worded):
    detail = assert_validation_error(api.post("instances/web-01/custom-domain", {"domain": domain}), ("body", "domain"))
    assert worded in detail[0]["msg"] and "codec" not in detail[0]["msg"] and "UnicodeError" not in detail[0]["msg"]


def test_idna_names_are_stored_in_punycode(api, running):
    assert attach(api, "Bücher.Example.COM.")["domain"] == "xn--bcher-kva.example.com"


def test_one_domain_per_instance_and_one_instance_per_domain(api, running, make_instance, other_api):
    attach(api)
    assert_error(api.post("instances/web-01/custom-domain", {"domain": "other.acme.example"}), 409, contains="remove it first")
    make_instance(instance_id="web-02", state="running")
    assert_error(api.post("instances/web-02/custom-domain", {"domain": "app.acme.example"}), 409, contains="another instance")
    # Another tenant is not blocked by a claim nobody has proven (tests/domains/test_domain_claims.py).
    InstanceFactory(tenant=other_api.tenant, instance_id="theirs-1", state="running")
    assert other_api.post("instances/theirs-1/custom-domain", {"domain": "app.acme.example"}).status_code == 202


def test_plan_without_custom_domains_is_402(api, tenant, running):
    SubscriptionPlan.objects.filter(pk=tenant.plan_id).update(feature_custom_domains=False)
    body = assert_error(api.post("instances/web-01/custom-domain", {"domain": "app.acme.example"}), 402)
    assert body["limit"] == "custom_domains"


def test_verification_succeeds_when_dns_is_right(api, running, dns_server):
    body = attach(api)
    configure(dns_server, body)
    checked = api.post("instances/web-01/custom-domain/check").json()
    assert checked["status"] == "active" and checked["error"] is None
    assert checked["resolved"]["CNAME"] == [HOST] and body["dns_records"][1]["value"] in checked["resolved"]["TXT"]


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ({"cname": None, "txt": False}, "NXDOMAIN"),
        ({"cname": "someone-else.example", "txt": True}, "wrong target"),
        ({"cname": HOST, "txt": False}, "missing TXT"),
    ],
)
def test_each_failure_reason(api, running, dns_server, setup, reason):
    body = attach(api)
    configure(dns_server, body, **setup)
    checked = api.post("instances/web-01/custom-domain/check").json()
    assert checked["status"] == "pending_dns" and reason in checked["error"]
    assert checked["next_check_at"] is not None


def test_a_records_must_be_the_edge(api, running, dns_server, settings):
    settings.EDGE_IP_ADDRESSES = ["203.0.113.10"]
    body = attach(api, "acme.example")
    configure(dns_server, body, cname=None)
    dns_server.set("acme.example", "A", "198.51.100.7")
    assert "wrong target" in api.post("instances/web-01/custom-domain/check").json()["error"]
    dns_server.set("acme.example", "A", "203.0.113.10")
    assert api.post("instances/web-01/custom-domain/check").json()["status"] == "active"


def test_background_checks_back_off_then_activate(api, running, dns_server):
    body = attach(api)
    assert check_custom_domains() == 1
    domain = CustomDomain.objects.get()
    first_delay = domain.next_check_at - domain.last_checked_at
    assert check_custom_domains() == 0  # not due yet
    CustomDomain.objects.update(next_check_at=timezone.now())
    check_custom_domains()
    domain.refresh_from_db()
    assert domain.next_check_at - domain.last_checked_at > first_delay  # backoff grows
    configure(dns_server, body)
    CustomDomain.objects.update(next_check_at=timezone.now())
    check_custom_domains()
    assert CustomDomain.objects.get().status == "active"


def test_gives_up_after_72_hours(api, running, dns_server):
    attach(api)
    CustomDomain.objects.update(created_at=timezone.now() - timedelta(hours=73))
    body = api.post("instances/web-01/custom-domain/check").json()
    assert body["status"] == "failed" and "NXDOMAIN" in body["error"]
    assert check_custom_domains() == 0


def test_a_silent_resolver_is_transient(api, running, dns_server):
    attach(api)
    dns_server.silent = True
    body = api.post("instances/web-01/custom-domain/check").json()
    assert body["status"] == "pending_dns" and "timed out" in body["error"]


def _ask(domain, remote="127.0.0.1"):
    return Client().get("/internal/tls/ask", {"domain": domain}, REMOTE_ADDR=remote)


def test_tls_ask_endpoint(api, running, dns_server, django_assert_max_num_queries):
    body = attach(api)
    assert _ask("app.acme.example").status_code == 404  # not verified yet
    configure(dns_server, body)
    api.post("instances/web-01/custom-domain/check")
    with django_assert_max_num_queries(1):
        assert _ask("app.acme.example").status_code == 200
    assert _ask("APP.acme.example.").status_code == 200
    assert _ask(HOST).status_code == 200  # an instance's own hostname
    assert _ask("nobody.instances.localhost").status_code == 404
    assert _ask("a.b.instances.localhost").status_code == 404
    assert _ask("evil.example").status_code == 404
    assert _ask("").status_code == 404
    assert dns_server.queries and all(q[0] != "evil.example" for q in dns_server.queries)  # no DNS for the ask


def test_tls_ask_is_reachable_only_from_the_edge(api, running, settings):
    settings.TLS_ASK_ALLOWED_IPS = ["10.0.0.5"]
    assert _ask(HOST, remote="127.0.0.1").status_code == 403
    assert _ask(HOST, remote="10.0.0.5").status_code == 200


def test_removal(api, running, dns_server):
    body = attach(api)
    configure(dns_server, body)
    api.post("instances/web-01/custom-domain/check")
    response = api.delete("instances/web-01/custom-domain")
    assert response.status_code == 202 and response.json()["status"] == "removing"
    assert _ask("app.acme.example").status_code == 404  # refused from the moment of removal
    run_jobs()
    assert_error(api.get("instances/web-01/custom-domain"), 404)
    assert api.get("instances/web-01").json()["custom_domain"] is None
    assert attach(api, "app.acme.example")["status"] == "pending_dns"  # free again


def test_domain_freed_when_the_instance_is_destroyed(api, running, make_instance):
    attach(api)
    api.delete("instances/web-01")
    run_jobs()
    make_instance(instance_id="web-09", state="running")
    assert api.post("instances/web-09/custom-domain", {"domain": "app.acme.example"}).status_code == 202


class TestDomainIsolation(TenantIsolationContract):
    endpoints = [
        ("GET", "instances/{id}/custom-domain", None),
        ("POST", "instances/{id}/custom-domain", {"domain": "x.example.org"}),
        ("DELETE", "instances/{id}/custom-domain", None),
        ("POST", "instances/{id}/custom-domain/check", None),
    ]

    def make_object(self, api):
        InstanceFactory(instance_id="domain-host", tenant=api.tenant, state="running")
        api.post("instances/domain-host/custom-domain", {"domain": "private.acme.example"})
        return {"id": "domain-host"}
