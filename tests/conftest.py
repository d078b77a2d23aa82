from __future__ import annotations

import os
import shutil

import pytest
from django.conf import settings
from django.db import connection

from .factories import ApiTokenFactory, MembershipFactory, TenantFactory, UserFactory
from .helpers import Api

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)


def pytest_sessionstart(session):
    from . import logscan

    logscan.install()


def _after_all_last(config, items):
    """The log scan runs after everything else, over everything else's logs. A pytest-xdist worker
    does not run it (it sees only its own share of the run, and others may still be running):
    the controller does, once every worker has sent it its logs (LogScanController)."""
    last = [item for item in items if item.get_closest_marker("after_all")]
    items[:] = [item for item in items if not item.get_closest_marker("after_all")] + last
    if last and _is_xdist_worker(config):
        del items[-len(last):]
        config.hook.pytest_deselected(items=last)
        config.workeroutput["after_all"] = [[item.nodeid, list(item.location)] for item in last]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    """`-n auto` (`make test`): a worker per core this process may use and one more, at most 8:
    each has a Redis database of its own (tests/settings.py: 15, 14…) and its share of PostgreSQL's
    connections. The suite mostly waits (for agents, sandboxes, browsers, sockets): on 2 cores, 2
    workers kept 1.2 cores busy and took 10:16; 3 workers 8:42 (README.md, "Tests")."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cores + 1))


def _is_xdist_worker(config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config):
    if getattr(config.option, "dist", "no") != "no" and not _is_xdist_worker(config) and not config.option.collectonly:
        config.pluginmanager.register(LogScanController(), "orchestrio-logscan-controller")


def pytest_sessionfinish(session):
    if _is_xdist_worker(session.config) and "after_all" in session.config.workeroutput:
        from . import logscan

        session.config.workeroutput["logscan"] = logscan.export()


class LogScanController:
    """The session-wide log scan (tests/security/test_no_secrets_in_logs.py) under pytest-xdist: every
    worker sends what it kept when it finishes; when all have, the controller scans all of it and
    reports the after_all test's result (a failure fails the run, as the test itself would)."""

    def __init__(self) -> None:
        self.outputs: dict[str, dict | None] = {}
        self.after_all: dict[str, list] = {}

    def pytest_testnodedown(self, node, error):
        output = getattr(node, "workeroutput", None) or {}
        for nodeid, location in output.get("after_all", []):
            self.after_all[nodeid] = tuple(location)
        # A worker that crashed took what it kept with it: the scan is incomplete, and fails.
        self.outputs[node.gateway.id] = output.get("logscan") if error is None else None

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session):
        result = yield  # every worker is done (an interrupted run, -x, raises here: no scan)
        if self.after_all:
            from . import logscan

            hits = logscan.scan_workers(self.outputs)
            session.testscollected += len(self.after_all)  # the workers deselected them: progress stays at 100%
            for nodeid, location in self.after_all.items():
                self._report(session.config.hook, nodeid, location, hits)
        return result

    def _report(self, hook, nodeid, location, hits):
        import time

        hook.pytest_runtest_logstart(nodeid=nodeid, location=location)
        now = time.time()
        for when in ("setup", "call", "teardown"):
            failed = when == "call" and bool(hits)
            longrepr = f"secrets in the logs of the workers {', '.join(sorted(self.outputs))}:\n" + "\n".join(hits[:20]) if failed else None
            report = pytest.TestReport(nodeid, location, {}, "failed" if failed else "passed", longrepr, when, start=now, stop=now)
            hook.pytest_runtest_logreport(report=report)  # a failure counts in session.testsfailed
        hook.pytest_runtest_logfinish(nodeid=nodeid, location=location)


def _sandbox_enabled() -> bool:
    from instances.providers.sandbox import support

    return support().enabled


def pytest_report_header(config):
    from instances.providers.sandbox import support

    db = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    redis = "Redis at REDIS_URL" if settings.REDIS_URL else "embedded in-memory Redis"
    browser = CHROMIUM or "NOT INSTALLED: browser tests will be skipped (apt-get install -y chromium)"
    sandbox = support()
    return [
        f"orchestrio: database={db}, queue={redis}, chromium={browser}, CI={IN_CI}",
        f"orchestrio: local sandbox={sandbox.mode if sandbox.enabled else 'OFF'} ({sandbox.reason})",
    ]


@pytest.hookimpl(trylast=True)  # after -k/-m deselection (and any reordering plugin)
def pytest_collection_modifyitems(config, items):
    _after_all_last(config, items)
    is_postgres = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
    for item in items:
        if item.get_closest_marker("postgres") and not is_postgres:
            if IN_CI:
                item.add_marker(pytest.mark.xfail(reason="CI must run PostgreSQL tests on PostgreSQL", run=False, strict=True))
            else:
                item.add_marker(pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL; CI always does)"))
        if item.get_closest_marker("sandbox") and not _sandbox_enabled():
            if IN_CI:
                item.add_marker(pytest.mark.xfail(reason="CI must run the sandbox tests (root and bubblewrap)", run=False, strict=True))
            else:
                item.add_marker(pytest.mark.skip(reason="needs the sandbox: run as root with bubblewrap installed (apt-get install bubblewrap)"))
        if item.get_closest_marker("browser") and not CHROMIUM:
            if IN_CI:
                item.add_marker(pytest.mark.xfail(reason="CI must run browser tests (chromium missing)", run=False, strict=True))
            else:
                item.add_marker(pytest.mark.skip(reason="Chromium not installed: apt-get install -y chromium"))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not CHROMIUM:
        terminalreporter.write_line(
            "NOTE: browser tests were SKIPPED because Chromium is not installed (apt-get install -y chromium).",
            yellow=True,
        )


@pytest.fixture(scope="session", autouse=True)
def _no_lingering_database_sessions(django_db_setup, django_db_blocker):
    """Server and worker processes the tests started have exited, but PostgreSQL may not have
    noticed all their sessions yet when the test database is dropped: wait for them (briefly),
    then end any that remain, so the teardown does not fail."""
    yield
    if connection.vendor != "postgresql":
        return
    import time

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        deadline = time.monotonic() + 5
        while True:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
            if cursor.fetchone()[0] == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")


@pytest.fixture(autouse=True)
def _log_scan():
    from . import logscan

    logscan.attach()


@pytest.fixture(autouse=True)
def _fresh_process_slots():
    """Every test starts with none of this process's long-lived slots held: the test client
    closes a streaming response only when the test reads it to the end (a WSGI server always
    closes it), so a proxied request whose body a test ignores would keep its slot."""
    from orchestrio import longpoll

    with longpoll._lock:
        longpoll._held_here = 0
        longpoll._held_by_tenant.clear()
    yield


@pytest.fixture(autouse=True)
def _clean_redis():
    """Every test starts with an empty queue, cache and rate-limit counters."""
    from gateway import traffic
    from orchestrio.redis import get_redis

    get_redis().flushdb()
    traffic._started_noted.clear()  # what this process remembers writing there (its throttle)
    yield


@pytest.fixture(autouse=True)
def _catalogue(request):
    """Transactional tests flush the database; put the seeded catalogue back."""
    marker = request.node.get_closest_marker("django_db")
    transactional = (marker is not None and marker.kwargs.get("transaction")) or any(
        name in request.fixturenames for name in ("transactional_db", "live_server")
    )
    if transactional:
        request.getfixturevalue("transactional_db")
        from billing import catalogue as billing_catalogue
        from orchestrio.models import SubscriptionPlan
        from instances import catalogue as instance_catalogue
        from instances.models import Blueprint, InstancePlan, Region

        billing_catalogue.seed(SubscriptionPlan)
        instance_catalogue.seed(InstancePlan, Region, Blueprint)
        from runtime import catalogue as runtime_catalogue
        from runtime.models import LanguageModel

        runtime_catalogue.seed(LanguageModel)
    yield


@pytest.fixture(autouse=True)
def _no_leftover_processes():
    """Every instance process a test started is gone when it ends (and none is left at all)."""
    yield
    from django.conf import settings as django_settings

    from instances.providers.local import LocalProvider, process_state

    provider = LocalProvider(django_settings.LOCAL_PROVIDER_DIR)
    machines = provider.list_machines("")
    if machines:
        # All at once: an instance that a test's worker process started (and left to pid 1 when it
        # stopped) is reaped only when pid 1 gets to it, so each destroy may wait out its whole
        # stop grace; one after another, eight took 16 s.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(len(machines), 16)) as pool:
            list(pool.map(lambda machine: provider.destroy_orphan(machine, ""), machines))
    assert not [m for m in provider.list_machines("") if process_state(m.provider_data.get("pid"), None)]


@pytest.fixture(autouse=True)
def _no_leftover_function_runtimes():
    """Every function runtime a test started (functions/runtime.py) is stopped and its files removed."""
    yield
    import shutil
    from pathlib import Path

    from django.conf import settings as django_settings

    from functions import runtime

    base = Path(django_settings.FUNCTIONS_LOCAL_DIR)
    for directory in base.iterdir() if base.exists() else []:
        if directory.name.isdigit():
            runtime.remove(int(directory.name))
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def owner(db):
    return UserFactory()


@pytest.fixture
def tenant(db, owner):
    tenant = TenantFactory(id="acme-corp", name="Acme Corp")
    MembershipFactory(user=owner, tenant=tenant, role="owner")
    return tenant


@pytest.fixture
def token(tenant, owner):
    return ApiTokenFactory(tenant=tenant, created_by=owner, role="owner")


@pytest.fixture
def api(tenant, token, owner):
    return Api(token.plaintext, tenant=tenant, user=owner)


@pytest.fixture
def other_api(db):
    """A second tenant with its own owner and token: it must never see the first one's objects."""
    user = UserFactory(username="mallory@example.org")
    tenant = TenantFactory(id="other-corp", name="Other Corp")
    MembershipFactory(user=user, tenant=tenant, role="owner")
    token = ApiTokenFactory(tenant=tenant, created_by=user, role="owner")
    return Api(token.plaintext, tenant=tenant, user=user)


@pytest.fixture
def anon_api(db):
    return Api(None)


@pytest.fixture
def member_api(tenant):
    user = UserFactory(username="member@example.com")
    MembershipFactory(user=user, tenant=tenant, role="member")
    token = ApiTokenFactory(tenant=tenant, created_by=user, role="member")
    return Api(token.plaintext, tenant=tenant, user=user)


@pytest.fixture
def queries(django_assert_max_num_queries):
    return django_assert_max_num_queries


@pytest.fixture
def is_postgres():
    return connection.vendor == "postgresql"
