"""CompiledQuery: a queryset compiled once and run with new values must answer exactly what the
ORM answers for those values."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from orchestrio.db import CompiledQuery
from orchestrio.models import ApiToken

from ..factories import ApiTokenFactory

BY_NAME = CompiledQuery(ApiToken, lambda name, tenant_id: ApiToken.objects.filter(name=name, tenant_id=tenant_id).values("pk", "name", "created_at", "revoked_at", "role").order_by("pk"))


@pytest.mark.django_db
def test_same_rows_as_the_orm_for_each_new_value(tenant):
    ApiTokenFactory(tenant=tenant, name="alpha")
    second = ApiTokenFactory(tenant=tenant, name="beta")
    ApiToken.objects.filter(pk=second.pk).update(revoked_at=timezone.now() - timedelta(hours=1))
    for name in ("alpha", "beta", "gamma", "alpha"):
        expected = list(ApiToken.objects.filter(name=name, tenant_id=tenant.pk).values("pk", "name", "created_at", "revoked_at", "role").order_by("pk"))
        assert BY_NAME.rows(name=name, tenant_id=tenant.pk) == expected
    row = BY_NAME.row(name="beta", tenant_id=tenant.pk)
    assert row["revoked_at"].tzinfo is not None  # converted as the ORM does: aware datetimes
    assert BY_NAME.row(name="gamma", tenant_id=tenant.pk) is None


@pytest.mark.django_db
def test_none_compiles_to_is_null_separately(tenant):
    token = ApiTokenFactory(tenant=tenant, name="alpha")
    by_prefix = CompiledQuery(ApiToken, lambda name, prefix: ApiToken.objects.filter(name=name, prefix=prefix).values("pk"))
    assert by_prefix.rows(name=None, prefix=token.prefix) == []  # name IS NULL
    assert by_prefix.rows(name="alpha", prefix=token.prefix) == [{"pk": token.pk}]
    assert by_prefix.rows(name=None, prefix=token.prefix) == []


@pytest.mark.django_db
@pytest.mark.parametrize("lookup", ["in", "any_of"])
def test_list_parameters_compile_once_per_length(tenant, lookup):
    """`any_of` is `IN (…)` on SQLite and `= ANY(array)` on PostgreSQL: the same rows either way."""
    for name in ("a", "b", "c", "d"):
        ApiTokenFactory(tenant=tenant, name=name)
    assert list(ApiToken.objects.filter(**{f"name__{lookup}": ["d", "b", "x"]}).values_list("name", flat=True).order_by("name")) == ["b", "d"]
    by_names = CompiledQuery(ApiToken, lambda names, tenant_id: ApiToken.objects.filter(**{f"name__{lookup}": names}, tenant_id=tenant_id).values("name").order_by("name"))
    assert by_names.rows(names=["a", "c"], tenant_id=tenant.pk) == [{"name": "a"}, {"name": "c"}]
    assert by_names.rows(names=["d", "b"], tenant_id=tenant.pk) == [{"name": "b"}, {"name": "d"}]  # same length, new values
    assert by_names.rows(names=["b", "c", "x"], tenant_id=tenant.pk) == [{"name": "b"}, {"name": "c"}]  # another length
    assert by_names.rows(names=["a"], tenant_id="no-such-tenant") == []
    with pytest.raises(ValueError, match="empty list"):
        by_names.rows(names=[], tenant_id=tenant.pk)


@pytest.mark.django_db
def test_a_parameter_not_compared_exactly_is_refused(tenant):
    contains = CompiledQuery(ApiToken, lambda name: ApiToken.objects.filter(name__contains=name).values("pk"))
    with pytest.raises(ValueError, match="not compared exactly"):
        contains.rows(name="alp")


@pytest.mark.django_db
def test_model_from_row_with_some_fields_in_any_order_defers_the_rest(tenant):
    from orchestrio.db import model_from_row

    token = ApiTokenFactory(tenant=tenant, name="partial")
    row = ApiToken.objects.filter(pk=token.pk).values("role", "name", "id", "created_at").get()
    built = model_from_row(ApiToken, row, names=("role", "name", "id", "created_at"))
    assert (built.pk, built.name, built.role, built.created_at) == (token.pk, "partial", token.role, token.created_at)
    assert "prefix" in built.get_deferred_fields()
    with pytest.raises(ValueError, match="not fields of ApiToken"):
        model_from_row(ApiToken, row, names=("role", "nope"))


@pytest.mark.django_db
def test_count_and_pages_equal_the_orms(tenant):
    for name in ("e", "b", "d", "a", "c"):
        ApiTokenFactory(tenant=tenant, name=name)
    ApiTokenFactory(name="z")  # another tenant's

    def orm(tenant_id):
        return ApiToken.objects.filter(tenant_id=tenant_id).values("name").order_by("name", "pk")

    names = CompiledQuery(ApiToken, orm)
    assert names.count(tenant_id=tenant.pk) == orm(tenant.pk).count() == 5
    assert names.count(tenant_id="no-such-tenant") == 0
    for limit, offset in ((2, 0), (2, 2), (2, 4), (3, 4), (10, 0), (1, 5), (5, 50)):
        assert names.page(limit, offset, tenant_id=tenant.pk) == list(orm(tenant.pk)[offset : offset + limit]), (limit, offset)
    with pytest.raises(ValueError, match="unordered"):
        CompiledQuery(ApiToken, lambda tenant_id: ApiToken.objects.filter(tenant_id=tenant_id).values("name").order_by()).page(2, tenant_id=tenant.pk)
    with pytest.raises(ValueError, match="sliced"):
        CompiledQuery(ApiToken, lambda tenant_id: orm(tenant_id)[:2]).count(tenant_id=tenant.pk)


@pytest.mark.django_db
def test_model_loader_runs_init_signals_when_something_listens(tenant):
    """Building a model without Model.__init__ is only for models nothing observes being built."""
    from django.db.models.signals import post_init

    from orchestrio.db import model_from_row

    token = ApiTokenFactory(tenant=tenant, name="watched")
    row = ApiToken.objects.filter(pk=token.pk).values("id", "name").get()
    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance)

    post_init.connect(receiver, sender=ApiToken)
    try:
        built = model_from_row(ApiToken, row, names=("id", "name"))
    finally:
        post_init.disconnect(receiver, sender=ApiToken)
    assert seen == [built] and built.name == "watched"
    unobserved = model_from_row(ApiToken, row, names=("id", "name"))
    assert seen == [built] and (unobserved.pk, unobserved.name, unobserved._state.adding, unobserved._state.db) == (token.pk, "watched", False, "default")
    assert unobserved.get_deferred_fields() >= {"prefix", "role"} and unobserved.role == token.role  # deferred fields still load


@pytest.mark.postgres
@pytest.mark.django_db
def test_hot_queries_are_prepared_statements_on_postgresql(api, tenant):
    """DATABASE_PREPARED_STATEMENTS (on): after a few requests, the token lookup and the instance
    read run as prepared statements on the connection (PostgreSQL plans them once)."""
    from django.db import connection

    from ..factories import InstanceFactory

    InstanceFactory(tenant=tenant, instance_id="web-01")
    for _ in range(7):
        assert api.get("instances/web-01").status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert any('FROM "orchestrio_apitoken"' in sql for sql in prepared), prepared
    assert any('FROM "instances_instance"' in sql and "LEFT OUTER JOIN" in sql for sql in prepared), prepared
