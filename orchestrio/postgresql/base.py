"""Django's PostgreSQL backend, with a connection health check that costs no round trip when it
need not.

With `CONN_HEALTH_CHECKS` Django sends `SELECT 1` before the first query of every request that
reuses a connection: on loopback that round trip cost as much as the API request's token lookup
(docs/BENCHMARKS.md). As HikariCP does (`aliveBypassWindowMs`), a connection that answered a
query within the last `HEALTH_CHECK_BYPASS_SECONDS` is taken as alive without asking, unless its
socket has something to read: an idle connection is never sent anything, so a readable socket
means the server has closed it (a restart, `pg_terminate_backend`, an idle timeout) or said
something unasked, and then the real check runs. A connection idle for longer (where a failover or
a dropped route could have left it half-open without a word) always gets the real check.
"""

from __future__ import annotations

import select
import time

from django.db.backends.postgresql import base

HEALTH_CHECK_BYPASS_SECONDS = 0.5


def _note_answer(execute, sql, params, many, context):
    result = execute(sql, params, many, context)
    context["connection"].last_answered_at = time.monotonic()
    return result


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.last_answered_at: float | None = None  # when a query last came back without error
        self.execute_wrappers.append(_note_answer)

    def connect(self) -> None:
        self.last_answered_at = None
        super().connect()

    def is_usable(self) -> bool:
        if self.connection is None or self.connection.closed:
            return False
        answered = self.last_answered_at
        if answered is not None and time.monotonic() - answered < HEALTH_CHECK_BYPASS_SECONDS and not self._socket_has_input():
            return True
        return super().is_usable()

    def _socket_has_input(self) -> bool:
        try:
            poller = select.poll()
            poller.register(self.connection.pgconn.socket, select.POLLIN | select.POLLPRI)
            return bool(poller.poll(0))
        except (OSError, ValueError, self.Database.Error):
            return True  # no socket to look at: ask the server
