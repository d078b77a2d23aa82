"""Persistent PostgreSQL connections with Django's own health check: the settings keep them, and a
connection the server has closed is replaced before the next request's first query (so a database
restart, `pg_terminate_backend` or an idle timeout costs no failed request)."""

from __future__ import annotations

import select

import psycopg
import pytest
from django.db import connection

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def test_connections_persist_with_djangos_backend_and_health_checks():
    assert connection.settings_dict["ENGINE"] == "django.db.backends.postgresql"
    assert connection.settings_dict["CONN_HEALTH_CHECKS"] is True
    assert connection.settings_dict["CONN_MAX_AGE"] > 0


def test_a_connection_the_server_closed_is_replaced_before_the_next_request_uses_it():
    old_pid = _backend_pid()
    with psycopg.connect(**connection.get_connection_params() | {"autocommit": True}) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [old_pid])
    poller = select.poll()
    poller.register(connection.connection.pgconn.socket, select.POLLIN)
    assert poller.poll(5000), "the server did not close the connection"
    connection.health_check_done = False  # as at the start of a request (request_started)
    connection.close_if_unusable_or_obsolete()
    assert _backend_pid() != old_pid
