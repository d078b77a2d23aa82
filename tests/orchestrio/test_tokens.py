"""Token format, checksums, storage, expiry, revocation and every 401 variant."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from orchestrio import tokens
from orchestrio.models import ApiToken

from ..factories import ApiTokenFactory
from ..helpers import Api, assert_error


def test_generated_token_format_and_checksum():
    generated = tokens.generate("live")
    assert re.fullmatch(r"ork_live_[0-9A-Za-z]{38}", generated.plaintext)
    assert generated.prefix == generated.plaintext[:12]
    assert tokens.validate(generated.plaintext) == "live"
    assert tokens.generate("test").plaintext.startswith("ork_test_")


def test_tokens_are_random():
    assert len({tokens.generate("live").plaintext for _ in range(200)}) == 200


@pytest.mark.parametrize("mutate", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # checksum digit changed
    lambda t: t[:20] + ("x" if t[20] != "x" else "y") + t[21:],  # body changed
    lambda t: t[:-1],  # truncated
    lambda t: t.replace("ork_live_", "ork_prod_"),
    lambda t: t + "0",
])
def test_mistyped_token_rejected_by_checksum(mutate):
    with pytest.raises(tokens.TokenFormatError):
        tokens.validate(mutate(tokens.generate("live").plaintext))


def test_checksum_rejection_needs_no_database_query(api, django_assert_num_queries):
    bad = api.token[:-1] + ("A" if api.token[-1] != "A" else "B")
    with django_assert_num_queries(0):
        response = Api(bad).get("tenant")
    assert_error(response, 401, contains="checksum")


def test_only_the_hash_and_prefix_are_stored(api, tenant, owner):
    response = api.post("api-tokens", {"name": "ci", "mode": "live"})
    assert response.status_code == 201
    plaintext = response.json()["token"]
    row = ApiToken.objects.get(pk=response.json()["id"])
    assert row.token_hash == tokens.hash_token(plaintext)
    assert row.prefix == plaintext[:12]
    stored = " ".join(str(getattr(row, f.attname)) for f in ApiToken._meta.fields)
    assert plaintext not in stored
    assert plaintext[12:] not in stored


def test_valid_token_authenticates(api):
    response = api.get("tenant")
    assert response.status_code == 200
    assert response.json()["tenant_id"] == "acme-corp"


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "credentials were not provided"),
        ("Bearer", "malformed"),
        ("Basic dXNlcjpwYXNz", "malformed"),
        ("Bearer two words", "malformed"),
        ("Bearer not-a-token", "malformed"),
        ("Bearer ork_live_short", "malformed"),
    ],
)
def test_401_variants_without_a_token(anon_api, header, reason):
    headers = {"Authorization": header} if header else {}
    response = anon_api.get("tenant", headers=headers)
    assert_error(response, 401, contains=reason)
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_unknown_token_is_401(anon_api):
    response = Api(tokens.generate("live").plaintext).get("tenant")
    assert_error(response, 401, contains="unknown token")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_expired_token_is_401(tenant, owner):
    token = ApiTokenFactory(tenant=tenant, created_by=owner, expires_at=timezone.now() - timedelta(seconds=1))
    response = Api(token.plaintext).get("tenant")
    assert_error(response, 401, contains="expired")


def test_token_valid_until_expiry(tenant, owner):
    token = ApiTokenFactory(tenant=tenant, created_by=owner, expires_at=timezone.now() + timedelta(minutes=5))
    assert Api(token.plaintext).get("tenant").status_code == 200


def test_revocation_takes_effect_on_the_very_next_request(api, tenant, owner):
    victim = ApiTokenFactory(tenant=tenant, created_by=owner)
    victim_api = Api(victim.plaintext)
    assert victim_api.get("tenant").status_code == 200
    assert api.delete(f"api-tokens/{victim.pk}").status_code == 204
    assert_error(victim_api.get("tenant"), 401, contains="revoked")


def test_a_token_can_revoke_itself(api, token):
    assert api.delete(f"api-tokens/{token.pk}").status_code == 204
    assert_error(api.get("tenant"), 401, contains="revoked")


def test_a_token_request_reads_its_creator_only_where_it_is_used(api, token, owner, member_api):
    """The token lookup joins the tenant and its plan, not the creator (orchestrio/auth.py): the
    creator is read lazily, and a token still creates tokens as its creator and may revoke the
    tokens its creator made."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        assert api.get("tenant").status_code == 200
    token_query = next(q["sql"] for q in ctx.captured_queries if "orchestrio_apitoken" in q["sql"])
    assert "auth_user" not in token_query
    created = api.post("api-tokens", {"name": "child"}).json()
    assert ApiToken.objects.get(pk=created["id"]).created_by == owner
    # A member may revoke a token its creator made (its own), without the `tokens` capability.
    own = ApiToken.objects.get(pk=member_api.post("api-tokens", {"name": "mine"}).json()["id"])
    assert own.created_by.username == "member@example.com"
    assert member_api.delete(f"api-tokens/{own.pk}").status_code == 204
    orphan = ApiTokenFactory(tenant=token.tenant, created_by=None, role="owner")
    assert Api(orphan.plaintext).get("tenant").status_code == 200


def test_last_used_is_recorded_without_a_write_per_request(api, token, django_assert_num_queries):
    assert token.last_used_at is None
    api.get("tenant")
    token.refresh_from_db()
    first = token.last_used_at
    assert first is not None
    # Within the resolution window: authentication is a single SELECT, no UPDATE.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        api.get("api-tokens")
    assert not [q for q in ctx.captured_queries if q["sql"].lstrip().upper().startswith("UPDATE")]
    token.refresh_from_db()
    assert token.last_used_at == first


def test_last_used_advances_after_the_window(api, token, settings):
    api.get("tenant")
    token.refresh_from_db()
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now() - timedelta(minutes=5))
    api.get("tenant")
    token.refresh_from_db()
    assert timezone.now() - token.last_used_at < timedelta(seconds=30)
