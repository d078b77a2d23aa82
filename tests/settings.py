"""Settings for the test suite: the production settings module with test-only adjustments.

With DATABASE_URL / REDIS_URL in the environment (as in CI) the suite uses PostgreSQL and Redis;
without, SQLite and the embedded in-memory Redis.
"""

import os
import tempfile
from urllib.parse import urlsplit, urlunsplit

# Django's live_server with Playwright's sync API (browser tests).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
os.environ.setdefault("SECRET_KEY", "test-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz")
os.environ.setdefault("DEBUG", "0")
if "ORCHESTRIO_VAR_DIR" not in os.environ:
    os.environ["ORCHESTRIO_VAR_DIR"] = tempfile.mkdtemp(prefix="orchestrio-test-")
    # Traversable (not listable), as an installation's var/ is: the sandbox of a local instance is
    # started as the instance's own uid, which must reach its directory to bind it.
    os.chmod(os.environ["ORCHESTRIO_VAR_DIR"], 0o711)

# pytest-xdist (`make test` runs the suite in parallel, docs/testing.md): every worker (gw0, gw1…)
# is a process of its own with a test database of its own (pytest-django: test_<name>_gw0…) and,
# set here, its own var/ (local instances, their sandboxes, the SQLite file), Redis database and
# sandbox uids, so that no worker's cleanup (a Redis flush, the leftover-process check) touches
# another's. The controller made the var/ directory above; its workers inherit it and each uses a
# subdirectory. Child processes the tests start get these through their environment.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
WORKER_INDEX = int(XDIST_WORKER.removeprefix("gw")) if XDIST_WORKER.startswith("gw") else 0
if XDIST_WORKER and os.path.basename(os.environ["ORCHESTRIO_VAR_DIR"]) != XDIST_WORKER:
    _worker_var = os.path.join(os.environ["ORCHESTRIO_VAR_DIR"], XDIST_WORKER)
    os.makedirs(_worker_var, exist_ok=True)
    os.chmod(_worker_var, 0o711)
    os.environ["ORCHESTRIO_VAR_DIR"] = _worker_var
    # Instance n runs as uid LOCAL_SANDBOX_UID_BASE+n, and every worker's database numbers its
    # instances from 1: a block of uids per worker, so that two workers' instances never share one.
    os.environ["LOCAL_SANDBOX_UID_BASE"] = str(int(os.environ.get("LOCAL_SANDBOX_UID_BASE") or 2_000_000) + WORKER_INDEX * 100_000)
    os.environ["FUNCTIONS_LOCAL_UID_BASE"] = str(int(os.environ.get("FUNCTIONS_LOCAL_UID_BASE") or 4_000_000) + WORKER_INDEX * 100_000)
# moto loads this short AMI list instead of its full catalogue (seconds per test).
os.environ.setdefault("MOTO_AMIS_PATH", os.path.join(os.path.dirname(__file__), "instances", "moto_amis.json"))
os.environ.setdefault("ENCRYPTION_KEYS", "dGVzdC1vbmx5LWZlcm5ldC1rZXktMDEyMzQ1Njc4OWE=")
# DEBUG is off, so the production settings must all be there (orchestrio/settings.py, "Start-up checks").
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1,[::1],.localhost")
os.environ.setdefault("PUBLIC_URL", "http://127.0.0.1:8000")

from orchestrio.settings import *  # noqa: E402,F403
from orchestrio.settings import CACHES, DATABASES, RQ_QUEUES, REDIS_URL, VAR_DIR  # noqa: E402

TESTING = True

if REDIS_URL:
    # Never flush a developer's working Redis database: the suite uses database 15 (pytest-xdist's
    # worker gw1 database 14, gw2 13…: every test flushes its worker's database).
    parts = urlsplit(REDIS_URL)
    _redis_db = 15 - WORKER_INDEX
    _configured_db = int(parts.path.strip("/") or 0)
    if _redis_db < 1 or _redis_db == _configured_db:
        raise RuntimeError(
            f"pytest-xdist worker {XDIST_WORKER} would use Redis database {_redis_db}, which is REDIS_URL's own "
            "or out of range: run with fewer workers (-n) or point REDIS_URL at database 0"
        )
    REDIS_URL = urlunsplit((parts.scheme, parts.netloc, f"/{_redis_db}", parts.query, parts.fragment))
    CACHES["default"]["LOCATION"] = REDIS_URL
    for queue in RQ_QUEUES.values():
        queue["URL"] = REDIS_URL

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not memory: tests that start real server and worker processes share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}

ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1", "[::1]", ".localhost"]
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
# Plain HTTP here: browsers refuse `__Host-` cookies that are not Secure.
SESSION_COOKIE_NAME = "sessionid"
CSRF_COOKIE_NAME = "csrftoken"
SECURE_HSTS_SECONDS = 0
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# As in production: tenants' outbound URLs may not reach loopback. The fixtures whose receivers
# (alert webhooks, the OIDC issuer) listen on loopback turn it on for their tests only.
OUTBOUND_ALLOW_LOOPBACK = False
WHITENOISE_USE_FINDERS = True
STATIC_ROOT = None

# Generous defaults so ordinary tests never trip a limit; rate-limit tests set tiny ones.
RATE_LIMITS = {name: "10000/m" for name in ("write", "lifecycle", "domain_read", "read", "public", "auth_failure", "gateway", "login")}
OIDC_REFETCH_INTERVAL_SECONDS = 1

LOCAL_STOP_GRACE_SECONDS = 2
INSTANCE_READY_TIMEOUT_SECONDS = 20
OPERATION_LEASE_SECONDS = 3
TASK_POLL_SECONDS = 0.05
DEPLOY_PROVISION_TIMEOUT_SECONDS = 20
DEPLOY_HEALTH_TIMEOUT_SECONDS = 3
DEPLOY_HEALTH_SUCCESSES = 2
DEPLOY_POLL_SECONDS = 0.05
TASK_FOLLOW_GRACE_SECONDS = 10
# A followed app log ends after 2 s in tests (schemathesis asks for up to 300), polled often.
APP_LOG_FOLLOW_MAX_SECONDS = 2
APP_LOG_FOLLOW_POLL_SECONDS = 0.2

LOGGING["root"]["level"] = "WARNING"  # noqa: F405
LOGGING["loggers"]["django"]["level"] = "ERROR"  # noqa: F405
