"""Custom-domain claims across tenants (issue 14, finding 9: squatting).

A name is claimed by the first tenant to prove it owns it (the TXT record with its own token), not
the first to ask. Several tenants may hold pending claims on one name, each with its own token;
when one verifies, it is the only live one and the others are ended with a reason their owners can
read. Unverified claims expire. A name that is active for someone else answers 409 with nothing
about who holds it. The edge (`/internal/tls/ask`) and the routing by Host see active names only.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.test import Client
from django.utils import timezone

from gateway.origin import classify
from domains.jobs import check_custom_domains
from domains.models import CustomDomain

from ..factories import InstanceFactory
from ..helpers import assert_error
from .dns_fixture import dns_server  # noqa: F401 - fixture

NAME = "app.shared.example"


@pytest.fixture
def theirs(other_api):
    return InstanceFactory(tenant=other_api.tenant, instance_id="theirs-1", state="running")


def claim(api, instance_id: str, name: str = NAME) -> dict:
    response = api.post(f"instances/{instance_id}/custom-domain", {"domain": name})
    assert response.status_code == 202, response.content
    return response.json()


def token_of(body: dict) -> str:
    return next(r["value"] for r in body["dns_records"] if r["type"] == "TXT")


def prove(dns, body: dict, instance_id: str) -> None:
    """The name's DNS as its real owner would set it up for `instance_id`'s claim."""
    dns.set(body["domain"], "CNAME", f"{instance_id}.instances.localhost.")
    dns.set(f"_orchestrio-challenge.{body['domain']}", "TXT", f'"{token_of(body)}"')


def check(api, instance_id: str) -> dict:
    response = api.post(f"instances/{instance_id}/custom-domain/check")
    assert response.status_code == 200, response.content
    return response.json()


def _ask(name: str) -> int:
    return Client().get("/internal/tls/ask", {"domain": name}, REMOTE_ADDR="127.0.0.1").status_code


def test_another_tenant_can_claim_a_name_left_pending(api, running, other_api, theirs):
    mine = claim(api, "web-01")
    their = claim(other_api, "theirs-1")
    assert their["status"] == "pending_dns"
    assert token_of(their) != token_of(mine), "each claim has its own token"
    # Each tenant sees only its own claim.
    assert token_of(api.get("instances/web-01/custom-domain").json()) == token_of(mine)
    assert token_of(other_api.get("instances/theirs-1/custom-domain").json()) == token_of(their)
    assert token_of(mine) not in json.dumps(other_api.get("instances/theirs-1/custom-domain").json())


def test_a_failed_claim_blocks_nobody(api, running, other_api, theirs, dns_server):
    claim(api, "web-01")
    CustomDomain.objects.update(created_at=timezone.now() - timedelta(hours=100))
    assert check(api, "web-01")["status"] == "failed"
    assert claim(other_api, "theirs-1")["status"] == "pending_dns"


def test_whoever_proves_the_txt_first_wins(api, running, other_api, theirs, dns_server):
    first_to_ask = claim(api, "web-01")
    second_to_ask = claim(other_api, "theirs-1")
    prove(dns_server, second_to_ask, "theirs-1")

    # The first to ask has the wrong TXT (and CNAME): still pending, not active.
    assert check(api, "web-01")["status"] == "pending_dns"
    won = check(other_api, "theirs-1")
    assert won["status"] == "active"
    assert CustomDomain.objects.filter(domain=NAME, status="active", removed_at__isnull=True).count() == 1

    # The other claim is ended, with a reason its owner can read (on the claim and in the log).
    ended = api.get("instances/web-01/custom-domain").json()
    assert ended["status"] == "failed" and "another account" in ended["error"]
    assert ended["next_check_at"] is None
    logs = json.dumps(api.get("instances/web-01/logs").json())
    assert "another account" in logs
    # ... and nothing about who holds it (`resolved` is public DNS, what anyone can look up).
    for marker in (other_api.tenant.pk, "theirs-1"):
        assert marker not in ended["error"] and marker not in logs

    # Checking the ended claim again does not take the name back, nor touch the winner.
    dns_server.set(f"_orchestrio-challenge.{NAME}", "TXT", f'"{token_of(first_to_ask)}"', f'"{token_of(second_to_ask)}"')
    assert check(api, "web-01")["status"] == "failed"
    assert check_custom_domains() == 0
    assert other_api.get("instances/theirs-1/custom-domain").json()["status"] == "active"


def test_at_a_zone_apex_two_proofs_still_make_one_winner(api, running, other_api, theirs, dns_server, settings):
    """The edge's A records serve every instance, so both claims can pass DNS: the first to be
    checked wins, the second is ended, never a second active row."""
    settings.EDGE_IP_ADDRESSES = ["203.0.113.10"]
    mine, their = claim(api, "web-01", "shared.example"), claim(other_api, "theirs-1", "shared.example")
    dns_server.set("shared.example", "A", "203.0.113.10")
    dns_server.set("_orchestrio-challenge.shared.example", "TXT", f'"{token_of(mine)}"', f'"{token_of(their)}"')
    assert check(other_api, "theirs-1")["status"] == "active"
    assert check(api, "web-01")["status"] == "failed"
    assert CustomDomain.objects.filter(domain="shared.example", status="active").count() == 1


def test_409_for_an_active_name_says_nothing_about_its_holder(api, running, other_api, theirs, dns_server, make_instance):
    body = claim(other_api, "theirs-1")
    prove(dns_server, body, "theirs-1")
    assert check(other_api, "theirs-1")["status"] == "active"

    refused = api.post("instances/web-01/custom-domain", {"domain": NAME.upper() + "."})
    assert_error(refused, 409)
    assert refused.json() == {"detail": "this domain is already in use"}
    # Within one tenant the holder is no secret: the message names the instance.
    InstanceFactory(tenant=other_api.tenant, instance_id="theirs-2", state="running")
    assert_error(other_api.post("instances/theirs-2/custom-domain", {"domain": NAME}), 409, contains="theirs-1")


def test_one_tenant_cannot_claim_one_name_twice(api, running, make_instance):
    claim(api, "web-01")
    make_instance(instance_id="web-02", state="running")
    assert_error(api.post("instances/web-02/custom-domain", {"domain": NAME}), 409, contains="web-01")


def test_a_claim_being_removed_does_not_hold_the_name_within_the_tenant(api, running, make_instance):
    claim(api, "web-01")
    api.delete("instances/web-01")  # its claim is `removing` until the destroy job has run
    make_instance(instance_id="web-02", state="running")
    assert claim(api, "web-02")["status"] == "pending_dns"


def test_unverified_claims_expire(api, running, other_api, theirs, dns_server, settings):
    settings.DOMAIN_VERIFY_HOURS = 2
    claim(api, "web-01")
    CustomDomain.objects.update(created_at=timezone.now() - timedelta(hours=3), next_check_at=timezone.now())
    assert check_custom_domains() == 1
    expired = api.get("instances/web-01/custom-domain").json()
    assert expired["status"] == "failed" and "2 h" in expired["error"] and expired["next_check_at"] is None
    assert check_custom_domains() == 0  # no more background checks

    # Another tenant proves the name; the expired claim does not stand in its way.
    body = claim(other_api, "theirs-1")
    prove(dns_server, body, "theirs-1")
    assert check(other_api, "theirs-1")["status"] == "active"


def test_the_edge_and_host_routing_see_active_names_only(api, running, other_api, theirs, dns_server):
    claim(api, "web-01")
    body = claim(other_api, "theirs-1")
    assert _ask(NAME) == 404 and instance_for_host(NAME) is None  # two pending claims
    CustomDomain.objects.filter(instance__instance_id="web-01").update(status="failed")
    assert _ask(NAME) == 404 and instance_for_host(NAME) is None  # a failed and a pending one

    prove(dns_server, body, "theirs-1")
    check(other_api, "theirs-1")
    assert _ask(NAME) == 200 and instance_for_host(NAME) == "theirs-1"

    other_api.delete("instances/theirs-1/custom-domain")  # removing: no longer served
    assert _ask(NAME) == 404 and instance_for_host(NAME) is None


def instance_for_host(host: str) -> str | None:
    """The instance a request with this Host header is routed to, if any (gateway/origin.py)."""
    return classify(host).instance_id


def test_the_database_allows_one_active_claim_per_name(api, running, other_api, theirs):
    claim(api, "web-01")
    claim(other_api, "theirs-1")
    CustomDomain.objects.filter(instance__instance_id="web-01").update(status="active")
    with pytest.raises(IntegrityError), transaction.atomic():
        CustomDomain.objects.filter(instance__instance_id="theirs-1").update(status="active")


def test_removing_a_claim_leaves_the_other_tenants_claim_alone(api, running, other_api, theirs, dns_server):
    claim(api, "web-01")
    body = claim(other_api, "theirs-1")
    assert api.delete("instances/web-01/custom-domain").status_code == 202
    assert other_api.get("instances/theirs-1/custom-domain").json()["status"] == "pending_dns"
    prove(dns_server, body, "theirs-1")
    assert check(other_api, "theirs-1")["status"] == "active"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_claims_proven_at_the_same_moment_make_one_winner(dns_server, settings):
    """At an apex every claim can pass DNS; checks racing on PostgreSQL still leave one active."""
    import threading

    from django.db import connection

    from domains.services import domain_attach, domain_check
    from orchestrio.tenancy import Actor

    from ..factories import TenantFactory

    settings.EDGE_IP_ADDRESSES = ["203.0.113.10"]
    claims = []
    for i in range(6):
        instance = InstanceFactory(tenant=TenantFactory(id=f"racer-{i}"), instance_id=f"racer-{i}-web", state="running")
        claims.append(domain_attach(instance=instance, domain="race.example", actor=Actor.system("test")))
    dns_server.set("race.example", "A", "203.0.113.10")
    dns_server.set("_orchestrio-challenge.race.example", "TXT", *(f'"{c.verification_token}"' for c in claims))

    barrier = threading.Barrier(len(claims))
    errors = []

    def check_one(pk: int) -> None:
        try:
            barrier.wait(timeout=10)
            domain_check(pk)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=check_one, args=(c.pk,)) for c in claims]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    statuses = sorted(CustomDomain.objects.filter(domain="race.example").values_list("status", flat=True))
    assert statuses == ["active"] + ["failed"] * 5, statuses
