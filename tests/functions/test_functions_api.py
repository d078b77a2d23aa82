"""The functions API's rules: limits, validation, tenancy, and what a response may carry."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.test.utils import override_settings

from orchestrio.models import SubscriptionPlan

from ..helpers import assert_error
from .conftest import PYTHON_HANDLER, create, deploy


@pytest.mark.django_db
def test_the_plan_limits_the_number_of_functions(api):
    plan = api.tenant.plan
    plan.max_functions = 1
    plan.save(update_fields=["max_functions"])
    create(api, slug="first")
    response = api.post("functions", {"slug": "second", "runtime": "python3.11", "code": PYTHON_HANDLER})
    body = assert_error(response, 402)
    assert body["limit"] == "functions" and body["plan"] == plan.pk
    assert SubscriptionPlan.objects.get(pk="team").max_functions == 100


@pytest.mark.django_db
def test_code_over_the_size_limit_is_refused(api):
    with override_settings(FUNCTIONS_MAX_CODE_BYTES=1000):
        response = api.post("functions", {"slug": "big", "runtime": "python3.11", "code": "x = 1\n" * 500})
        body = assert_error(response, 422)
        assert body["detail"][0]["loc"] == ["body", "code"] and "at most 1000" in body["detail"][0]["msg"]
        function = create(api, slug="small")
        response = api.patch(f"functions/{function['function_id']}", {"code": "#" * 1001})
        assert_error(response, 422)


@pytest.mark.django_db
def test_slug_rules_and_check_name(api, other_api):
    assert_error(api.post("functions", {"slug": "Bad_Slug", "runtime": "python3.11", "code": PYTHON_HANDLER}), 422)
    assert_error(api.post("functions", {"slug": "check-name", "runtime": "python3.11", "code": PYTHON_HANDLER}), 422)
    assert_error(api.post("functions", {"slug": "ok-slug", "runtime": "cobol", "code": PYTHON_HANDLER}), 422)
    assert api.get("functions/check-name/hello").json() == {"name": "hello", "available": True, "reason": None}
    create(api, slug="hello")
    # Slugs are public hostnames, unique on the installation: taken for everyone.
    assert other_api.get("functions/check-name/hello").json()["available"] is False
    assert_error(other_api.post("functions", {"slug": "hello", "runtime": "python3.11", "code": PYTHON_HANDLER}), 409)
    assert api.get("functions/check-name/No").json()["available"] is False


@pytest.mark.django_db
def test_env_var_names_are_checked(api):
    response = api.post("functions", {"slug": "envy", "runtime": "python3.11", "code": PYTHON_HANDLER, "env": {"ORCHESTRIO_X": "1"}})
    assert_error(response, 422)
    response = api.post("functions", {"slug": "envy", "runtime": "python3.11", "code": PYTHON_HANDLER, "env": {"1BAD": "1"}})
    assert_error(response, 422)
    function = create(api, slug="envy", env={"A": "1", "B": "2"})
    patched = api.patch(f"functions/{function['function_id']}", {"env": {"A": None, "C": "3"}}).json()
    assert patched["env_var_names"] == ["B", "C"]


@pytest.mark.django_db
def test_another_tenants_function_is_404_on_every_route(api, other_api):
    function = create(api)
    fid = function["function_id"]
    for method, path, body in [
        ("GET", f"functions/{fid}", None), ("PATCH", f"functions/{fid}", {"code": "x"}), ("DELETE", f"functions/{fid}", None),
        ("POST", f"functions/{fid}/deploy", None), ("POST", f"functions/{fid}/invoke", {}), ("GET", f"functions/{fid}/logs", None),
        ("GET", f"functions/{fid}/metrics", None), ("GET", f"functions/{fid}/env-vars", None), ("POST", f"functions/{fid}/rotate-api-key", None),
        ("GET", f"functions/{fid}/versions", None),
    ]:  # fmt: skip
        assert_error(other_api.request(method, path, body), 404)
    assert other_api.get("functions").json()["count"] == 0
    assert api.get("functions").json()["count"] == 1


@pytest.mark.django_db
def test_members_operate_but_do_not_delete_or_see_secrets(api, member_api):
    function = create(api, auth_mode="api_key")
    fid = function["function_id"]
    assert member_api.get(f"functions/{fid}").status_code == 200
    assert member_api.patch(f"functions/{fid}", {"idle_timeout_seconds": 60}).status_code == 200
    assert member_api.post(f"functions/{fid}/rotate-api-key").status_code == 403
    assert member_api.get(f"functions/{fid}/env-vars").status_code == 403
    assert member_api.delete(f"functions/{fid}").status_code == 403
    assert api.delete(f"functions/{fid}").status_code == 204
    assert api.get(f"functions/{fid}").status_code == 404


@pytest.mark.django_db
def test_an_undeployed_or_unknown_function_and_the_public_errors(api):
    create(api)
    response = Client().get("/fn/hello")
    assert response.status_code == 409 and "no deployed version" in json.loads(response.content)["detail"]
    assert response["Content-Security-Policy"] == "sandbox"
    assert Client().get("/fn/nobody-here").status_code == 404


@pytest.mark.django_db
def test_rotating_a_public_functions_key_is_refused(api):
    function = create(api)
    assert_error(api.post(f"functions/{function['function_id']}/rotate-api-key"), 400)
    switched = api.patch(f"functions/{function['function_id']}", {"auth_mode": "api_key"})
    assert switched.json()["api_key"].startswith("fnk_") and switched["Cache-Control"] == "no-store"


def test_the_functions_domain_must_not_cover_the_console_or_instances():
    from functions.checks import check_functions_domain

    with override_settings(FUNCTIONS_DOMAIN="", PUBLIC_URL="https://console.example.com"):
        assert check_functions_domain() == []
    with override_settings(FUNCTIONS_DOMAIN="fn.example.net", PUBLIC_URL="https://console.example.com", BASE_DOMAIN="instances.example.org", GATEWAY_HOST="gw.example.org"):
        assert check_functions_domain() == []
    with override_settings(FUNCTIONS_DOMAIN="example.com", PUBLIC_URL="https://console.example.com"):
        assert [e.id for e in check_functions_domain()] == ["orchestrio.functions.E001"]
    with override_settings(FUNCTIONS_DOMAIN="fn.instances.example.org", BASE_DOMAIN="instances.example.org", PUBLIC_URL="https://console.example.com"):
        assert [e.id for e in check_functions_domain()] == ["orchestrio.functions.E001"]


@pytest.mark.django_db
def test_the_list_costs_the_same_queries_for_one_function_or_many(api, django_assert_max_num_queries):
    plan = api.tenant.plan
    plan.max_functions = None
    plan.save(update_fields=["max_functions"])
    create(api, slug="one")
    with django_assert_max_num_queries(12) as one:
        assert api.get("functions").json()["count"] == 1
    queries_for_one = len(one.captured_queries)  # the test client resets them on the next request
    for index in range(5):
        create(api, slug=f"more-{index}")
    with django_assert_max_num_queries(queries_for_one):
        assert api.get("functions").json()["count"] == 6


@pytest.mark.django_db
def test_the_admin_shows_functions_without_secrets(api, admin_client):
    function = create(api, slug="admin-view", auth_mode="api_key", env={"SECRET_NAME": "admin-must-not-see"})
    from functions.models import Function

    pk = Function.objects.get(function_id=function["function_id"]).pk
    page = admin_client.get(f"/admin/functions/function/{pk}/change/")
    assert page.status_code == 200 and b"admin-view" in page.content
    assert b"admin-must-not-see" not in page.content and function["api_key"].encode() not in page.content
    assert admin_client.get("/admin/functions/function/").status_code == 200


def test_logs_are_kept_to_their_limit(tmp_path):
    from functions import runtime

    with override_settings(FUNCTIONS_LOCAL_DIR=tmp_path, FUNCTIONS_LOG_MAX_BYTES=1000):
        path = runtime.log_path(7)
        path.parent.mkdir(parents=True)
        path.write_text("".join(f"line {n:04d}\n" for n in range(300)))  # 3,000 bytes
        runtime.trim_log(7)
        kept = path.read_text().splitlines()
        assert path.stat().st_size <= 500 and kept[-1] == "line 0299" and kept[0].startswith("line ")
        assert runtime.read_log(7, tail=3) == ["line 0297", "line 0298", "line 0299"]


@pytest.mark.django_db
@pytest.mark.sandbox
def test_the_gateway_host_serves_functions_sandboxed(api):
    function = create(api)
    deploy(api, function["function_id"])
    with override_settings(GATEWAY_HOST="gw.example.net", ALLOWED_HOSTS=["testserver", "gw.example.net"]):
        response = Client().get("/fn/hello/gw", HTTP_HOST="gw.example.net")
        assert response.status_code == 200 and json.loads(response.content)["path"] == "/gw"
        assert response["Content-Security-Policy"] == "sandbox"
        assert Client().get("/api/v1/functions", HTTP_HOST="gw.example.net").status_code == 404  # nothing of the console there


def test_metrics_give_latency_percentiles_from_a_merged_histogram(api):
    """Durations recorded as the invoke path records them, in two flushes (two batches, merged into
    the minute's row): p50/p95/p99 within one bucket (2^¼, 19 %) of the true values."""
    from django.test import TestCase

    from functions import jobs, metrics
    from functions.models import Function

    def flush():
        with TestCase.captureOnCommitCallbacks(execute=True):  # as the periodic job's commit would
            jobs.flush_function_metrics()

    fid = create(api)["function_id"]
    pk = Function.objects.get(function_id=fid).pk
    for ms in range(10, 510, 10):  # 10, 20 … 500 ms
        metrics.record(pk, duration_ms=ms, error=False, cold=False)
    flush()
    for ms in range(510, 1010, 10):  # 510 … 1000 ms
        metrics.record(pk, duration_ms=ms, error=ms == 1000, cold=False)
    flush()
    body = api.get(f"functions/{fid}/metrics").json()
    totals = body["totals"]
    assert totals["count"] == 100 and totals["errors"] == 1
    for name, true in (("p50_ms", 500), ("p95_ms", 950), ("p99_ms", 990)):
        assert true / 2**0.25 <= totals[name] <= true * 2**0.25, (name, totals[name])
    assert all(point["p50_ms"] is not None for point in body["points"])
    empty = api.get(f"functions/{create(api, slug='no-calls')['function_id']}/metrics").json()["totals"]
    assert empty["count"] == 0 and empty["p50_ms"] is None
