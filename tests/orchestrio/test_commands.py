from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from orchestrio.models import ActivityEvent, ApiToken, Membership, Tenant

from ..helpers import Api


def test_createtenant_with_token_prints_it_last(db):
    out = io.StringIO()
    call_command("createtenant", "newco", "--owner", "Boss@NewCo.example", "--plan", "team", "--token", stdout=out)
    lines = out.getvalue().strip().splitlines()
    token = lines[-1]
    assert token.startswith("ork_live_")
    tenant = Tenant.objects.get(pk="newco")
    assert tenant.plan_id == "team"
    owner = Membership.objects.get(tenant=tenant)
    assert owner.role == "owner" and owner.user.username == "boss@newco.example"
    body = Api(token).get("tenant").json()
    assert body["tenant_id"] == "newco" and body["plan"] == "team"
    assert ActivityEvent.objects.filter(tenant=tenant, action="tenant.create", actor_label="cli:createtenant").exists()
    assert ApiToken.objects.get(tenant=tenant).created_by == owner.user


def test_createtenant_without_token_prints_no_token(db):
    out = io.StringIO()
    call_command("createtenant", "plain-co", "--owner", "a@plain.example", stdout=out)
    assert "ork_" not in out.getvalue()
    assert Tenant.objects.get(pk="plain-co").plan_id == "starter"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Bad_Id", "--owner", "a@b.example"], "lowercase"),
        (["ab", "--owner", "a@b.example"], "3–63"),
        (["good-id", "--owner", "a@b.example", "--plan", "platinum"], "unknown plan"),
    ],
)
def test_createtenant_rejects_bad_input(db, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("createtenant", *args, stdout=io.StringIO())


def test_createtenant_taken_id(db):
    call_command("createtenant", "taken", "--owner", "a@b.example", stdout=io.StringIO())
    with pytest.raises(CommandError, match="taken"):
        call_command("createtenant", "taken", "--owner", "c@d.example", stdout=io.StringIO())


def test_seeddemo_prints_login_and_test_token_once(db):
    out = io.StringIO()
    call_command("seeddemo", stdout=out)
    text = out.getvalue()
    assert "demo@example.com" in text
    token = next(word for word in text.split() if word.startswith("ork_test_"))
    assert Api(token).get("tenant").json()["tenant_id"] == "demo"
    again = io.StringIO()
    call_command("seeddemo", stdout=again)
    assert "ork_test_" not in again.getvalue() and "exists" in again.getvalue()
    assert Tenant.objects.filter(pk="demo").count() == 1
