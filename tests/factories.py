from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from orchestrio import tokens
from orchestrio.choices import Role
from orchestrio.models import ApiToken, Membership, Tenant


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}@example.com")
    email = factory.SelfAttribute("username")
    password = factory.PostGenerationMethodCall("set_password", "correct horse battery staple")

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):  # noqa: N805
        if create:
            obj.save()


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant

    id = factory.Sequence(lambda n: f"tenant-{n:03d}")
    name = factory.LazyAttribute(lambda o: o.id.replace("-", " ").title())
    plan_id = "pro"


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    tenant = factory.SubFactory(TenantFactory)
    role = Role.OWNER


class ApiTokenFactory(factory.django.DjangoModelFactory):
    """A real token; the plaintext is on `.plaintext` (only factories know it)."""

    class Meta:
        model = ApiToken

    tenant = factory.SubFactory(TenantFactory)
    name = factory.Sequence(lambda n: f"token {n}")
    mode = "live"
    role = Role.OWNER

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        generated = tokens.generate(kwargs.get("mode", "live"))
        kwargs.setdefault("prefix", generated.prefix)
        kwargs.setdefault("token_hash", generated.sha256)
        obj = super()._create(model_class, *args, **kwargs)
        obj.plaintext = generated.plaintext
        return obj


class InstanceFactory(factory.django.DjangoModelFactory):
    """An instance row in any state, without a machine (for API and state-machine tests)."""

    class Meta:
        model = "instances.Instance"

    instance_id = factory.Sequence(lambda n: f"inst-{n:04d}")
    tenant = factory.SubFactory(TenantFactory)
    blueprint = factory.LazyFunction(lambda: __import__("instances.models", fromlist=["Blueprint"]).Blueprint.objects.get(name="OpenClaw", tenant=None))
    plan_id = "openclaw-basic"
    region_id = "local"
    provider = "local"
    instance_type = "t3.small"
    state = "running"
    agent_key_encrypted = factory.LazyFunction(lambda: __import__("orchestrio.crypto", fromlist=["encrypt"]).encrypt("oak_test_key"))
