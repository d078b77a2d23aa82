"""The PostgreSQL backend's connection health check (orchestrio/postgresql/base.py): no round trip
for a connection that has just answered, the real check for one idle longer, and a connection the
server has closed is replaced before the request's first query, however recently it answered."""

from __future__ import annotations

import select
import time
from unittest import mock

import psycopg
import pytest
from django.db import connection

from orchestrio.postgresql.base import HEALTH_CHECK_BYPASS_SECONDS

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


@pytest.fixture
def server_checks():
    """Counts the round trips Django's own check (`SELECT 1` on a raw psycopg cursor) makes."""
    connection.ensure_connection()
    with mock.patch.object(connection.connection, "cursor", wraps=connection.connection.cursor) as cursor:
        yield cursor


def test_health_checks_are_on():
    assert connection.settings_dict["CONN_HEALTH_CHECKS"] is True
    assert connection.settings_dict["ENGINE"] == "orchestrio.postgresql"


def test_a_connection_that_has_just_answered_is_not_asked_again(server_checks):
    _backend_pid()
    server_checks.reset_mock()
    assert connection.is_usable()
    assert server_checks.call_count == 0


def test_a_connection_idle_for_longer_than_the_window_is_asked(server_checks):
    _backend_pid()
    connection.last_answered_at -= HEALTH_CHECK_BYPASS_SECONDS + 0.1
    server_checks.reset_mock()
    assert connection.is_usable()
    assert server_checks.call_count == 1


def test_a_new_connection_is_asked_before_it_has_answered(server_checks):
    connection.last_answered_at = None
    assert connection.is_usable()
    assert server_checks.call_count == 1


def test_a_failed_query_does_not_count_as_an_answer():
    _backend_pid()
    before = connection.last_answered_at
    time.sleep(0.01)
    with pytest.raises(Exception), connection.cursor() as cursor:
        cursor.execute("SELECT no_such_column FROM no_such_table")
    assert connection.last_answered_at == before


def test_a_connection_the_server_closed_is_replaced_before_the_next_request_uses_it():
    old_pid = _backend_pid()
    with psycopg.connect(**connection.get_connection_params() | {"autocommit": True}) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [old_pid])
    poller = select.poll()
    poller.register(connection.connection.pgconn.socket, select.POLLIN)
    assert poller.poll(5000), "the server did not close the connection"
    # Well inside the window: only the socket tells that the connection is gone.
    connection.last_answered_at = time.monotonic()
    connection.health_check_done = False  # as at the start of a request
    assert _backend_pid() != old_pid


# --- timestamptz values through psycopg's C loader ------------------------------------------------

_TIMESTAMPS = [
    "0001-01-03 00:00:00+00", "9999-12-30 23:59:59.999999+00", "2026-11-30 16:30:28.891189+00", "2026-11-30 10:00:00-08",
    "2026-03-29 00:59:59.5+00", "2026-03-29 01:00:00+00", "2026-10-25 00:30:00+00", "2026-10-25 01:30:00+00", "1970-01-01 00:00:00+00",
]  # fmt: skip


def _read(context, timezone_name: str) -> list:
    params = connection.get_connection_params() | {"context": context, "autocommit": True, "options": f"-c TimeZone={timezone_name}"}
    params.pop("cursor_factory", None)
    with psycopg.connect(**params) as raw:
        values = ", ".join(f"'{value}'::timestamptz" for value in _TIMESTAMPS)
        return list(raw.execute(f"SELECT {values}, NULL::timestamptz").fetchone())


@pytest.mark.parametrize("timezone_name", ["UTC", "Europe/Paris", "America/St_Johns"])
def test_timestamps_read_exactly_as_djangos_loader_reads_them(timezone_name):
    from datetime import timezone
    from zoneinfo import ZoneInfo

    from django.db.backends.postgresql.psycopg_any import get_adapters_template

    from orchestrio.postgresql.base import _adapters

    tz = timezone.utc if timezone_name == "UTC" else ZoneInfo(timezone_name)
    djangos = _read(get_adapters_template(True, tz), timezone_name)
    ours = _read(_adapters(get_adapters_template(True, tz), tz), timezone_name)
    assert ours == djangos
    assert [v.tzinfo for v in ours[:-1]] == [v.tzinfo for v in djangos[:-1]] == [tz] * len(_TIMESTAMPS)
    assert [v.fold for v in ours[:-1]] == [v.fold for v in djangos[:-1]]
    assert [v.utcoffset() for v in ours[:-1]] == [v.utcoffset() for v in djangos[:-1]]
    assert ours[-1] is None


def test_the_connection_reads_timestamps_with_the_c_loader():
    from psycopg.postgres import types
    from psycopg.pq import Format

    from orchestrio.postgresql.base import _PARSER, FastTzLoader

    assert psycopg.pq.__impl__ in ("binary", "c") and _PARSER.__module__.startswith(("psycopg_binary", "psycopg_c"))
    connection.ensure_connection()
    loader = connection.connection.adapters.get_loader(types["timestamptz"].oid, Format.TEXT)
    assert issubclass(loader, FastTzLoader) and loader.timezone is connection.timezone
    with connection.cursor() as cursor:
        cursor.execute("SELECT '2026-11-30 16:30:28.891189+00'::timestamptz")
        value = cursor.fetchone()[0]
    assert value.isoformat() == "2026-11-30T16:30:28.891189+00:00" and value.tzinfo is connection.timezone
