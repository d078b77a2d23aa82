"""Orchestrio settings: every value comes from the environment (12-factor).

The defaults are the embedded development setup that `make run` uses: SQLite under `var/`, the
local provider, and an in-process queue (no Redis server). Production sets `DEBUG` off and
provides `SECRET_KEY`, `ENCRYPTION_KEYS`, `DATABASE_URL`, `REDIS_URL`, `ALLOWED_HOSTS` and `PUBLIC_URL`; see
`docs/configuration.md` for the whole list.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("ORCHESTRIO_VAR_DIR", BASE_DIR / "var"))


def env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), not {value!r}")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


# --- Core ---------------------------------------------------------------------------------------

DEBUG = env_bool("DEBUG", False)

_DEV_SECRET_KEY = "dev-insecure-only-for-DEBUG-never-in-production-0123456789abcdefghij"
SECRET_KEY = env("SECRET_KEY") or (_DEV_SECRET_KEY if DEBUG else "")  # unset in production: see "Start-up checks"

ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", ".localhost"] if DEBUG else []
)
PUBLIC_URL = (env("PUBLIC_URL", "http://127.0.0.1:8000") or "").rstrip("/")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [PUBLIC_URL])
BASE_DOMAIN = env("BASE_DOMAIN", "instances.localhost")
# The gateway's own hostname (production: `gateway.example-instances.net`, no scheme or port). It
# serves /gateway/… and /tunnel/… only, never the console, the API or the admin; unset, the
# proxies are served on the console's host alone (sandboxed, as there). See docs/gateway.md.
GATEWAY_HOST = (env("GATEWAY_HOST", "") or "").strip().lower().rstrip(".")
if GATEWAY_HOST and not re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", GATEWAY_HOST):
    raise ImproperlyConfigured(f"GATEWAY_HOST must be a hostname (no scheme, port or path), not {GATEWAY_HOST!r}")
if GATEWAY_HOST and GATEWAY_HOST not in ALLOWED_HOSTS:
    ALLOWED_HOSTS.append(GATEWAY_HOST)
DENY_DIRECT_IP = env_bool("DENY_DIRECT_IP", False)
# Number of reverse proxies in front of the web processes whose X-Forwarded-For we trust.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_rq",
    # The apps in their layers' order (docs/architecture.md): each one's AppConfig.ready registers
    # its hooks with the apps below it, in this order.
    "orchestrio.apps.OrchestrioConfig",
    "instances",
    "tasks",
    "gateway",
    "domains",
    "fleet",
    "runtime",
    "deployments",
    "functions",
    "addons",
    "billing",
]

MIDDLEWARE = [
    "orchestrio.metrics.MetricsMiddleware",  # first: times everything below; absent unless METRICS_ENABLED
    "orchestrio.middleware.DenyDirectIPMiddleware",
    "functions.middleware.FunctionMiddleware",  # before the gateway's: /fn/<slug> and <slug>.FUNCTIONS_DOMAIN
    "gateway.middleware.InstanceHostMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "orchestrio.middleware.RequestLimitsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "orchestrio.middleware.SecurityHeadersMiddleware",
    "orchestrio.middleware.ApiErrorMiddleware",
    "orchestrio.debugpages.DebugNotFoundPageMiddleware",  # DEBUG only: the console's 404, not Django's technical page
]

ROOT_URLCONF = "orchestrio.urls"
WSGI_APPLICATION = "orchestrio.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "orchestrio.context_processors.console",
                "instances.pages.tabs",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------------

DATABASE_URL = env("DATABASE_URL", f"sqlite:///{VAR_DIR / 'orchestrio.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # Connections persist as on PostgreSQL (CONN_MAX_AGE above): opening one per request, with its
    # PRAGMAs, cost more than the rest of a small API request's database work.
    DATABASES["default"]["OPTIONS"] = {
        # BEGIN IMMEDIATE takes the write lock at the start of every transaction, so the
        # embedded mode's threads serialise their writes instead of failing to upgrade a lock.
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool("DATABASE_PREPARED_STATEMENTS", True):
    # Server-side binding, and psycopg prepares a query after its 5th run on a connection: the
    # hot reads (token, instance, route) are joins whose planning took 1-1.5 ms against 0.1 ms to
    # execute. Off (DATABASE_PREPARED_STATEMENTS=0) behind a transaction-mode PgBouncer without
    # max_prepared_statements.
    DATABASES["default"]["OPTIONS"] = {"server_side_binding": True, "prepare_threshold": 5}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, cache, queue ------------------------------------------------------------------------

# Unset: the embedded mode. Queue, cache and rate-limit counters live in an in-memory Redis
# (fakeredis) inside the one `manage.py serve` process. See docs/configuration.md.
REDIS_URL = env("REDIS_URL")
EMBEDDED_REDIS = not REDIS_URL

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "orchestrio",
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "orchestrio.redis.EmbeddedRedisCache",
            "LOCATION": "embedded",
            "KEY_PREFIX": "orchestrio",
        }
    }

# Embedded mode: django-rq takes its connection from the cache above (its USE_REDIS_CACHE
# option), so the queue, the scheduler and the workers share the one in-memory Redis.
_QUEUE_CONNECTION = {"URL": REDIS_URL} if REDIS_URL else {"USE_REDIS_CACHE": "default"}
RQ_QUEUES = {
    "default": {**_QUEUE_CONNECTION, "DEFAULT_TIMEOUT": 900},
    "periodic": {**_QUEUE_CONNECTION, "DEFAULT_TIMEOUT": 600},
}
RQ = {"COMMIT_MODE": "auto"}
RQ_SHOW_ADMIN_LINK = True

# --- Auth and sessions --------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = ["orchestrio.backends.EmailBackend"]
LOGIN_URL = "console:login"
LOGIN_REDIRECT_URL = "console:home"
LOGOUT_REDIRECT_URL = "console:login"

# --- Console --------------------------------------------------------------------------------------

# Every console page that shows state re-fetches its server-rendered fragments this often (seconds;
# static/console/live.js, docs/console.md "Live updates"); paused while the tab is hidden.
CONSOLE_LIVE_INTERVAL_SECONDS = env_int("CONSOLE_LIVE_INTERVAL_SECONDS", 3)
if CONSOLE_LIVE_INTERVAL_SECONDS < 1:
    raise ImproperlyConfigured("CONSOLE_LIVE_INTERVAL_SECONDS must be at least 1")

# --- Internationalisation and static files ------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# collectstatic's target in production; development serves from the source folders instead.
STATIC_ROOT = None if DEBUG else Path(env("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
# Development serves static files straight from the source folders; production runs collectstatic.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# --- Security -----------------------------------------------------------------------------------

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# The console's 403 page in its layout (Django's own is unstyled under the console's CSP).
CSRF_FAILURE_VIEW = "orchestrio.views.csrf_failure"
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    # Health checks from load balancers, Prometheus and the edge proxy's TLS question arrive over
    # plain HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^health$", r"^metrics$", r"^internal/"]
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # A browser takes a `__Host-` cookie only from this very host, Secure, for `/`, without a
    # Domain: a sibling host (an instance's `<id>.<BASE_DOMAIN>` under the console's parent
    # domain, whose pages tenants write) cannot plant a session or CSRF cookie that the console
    # would read as its own (docs/gateway.md, "Origins").
    SESSION_COOKIE_NAME = "__Host-sessionid"
    CSRF_COOKIE_NAME = "__Host-csrftoken"
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if TRUSTED_PROXY_COUNT else None

# --- REST framework and OpenAPI -----------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "orchestrio.auth.ApiTokenAuthentication",
        "orchestrio.auth.ConsoleSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["orchestrio.api.permissions.IsTenantMember"],
    "DEFAULT_THROTTLE_CLASSES": ["orchestrio.api.ratelimit.EndpointRateThrottle"],
    "DEFAULT_PAGINATION_CLASS": "orchestrio.api.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["orchestrio.api.filters.FilterBackend"],
    "DEFAULT_RENDERER_CLASSES": ["orchestrio.api.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["orchestrio.api.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "orchestrio.api.exceptions.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "orchestrio.api.schema.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "DATETIME_FORMAT": "%Y-%m-%dT%H:%M:%S.%fZ",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Orchestrio API",
    "DESCRIPTION": (
        "Control plane for hosted per-tenant instances. Authenticate with "
        "`Authorization: Bearer ork_live_…`. Errors follow one shape: `{\"detail\": …}`; "
        "validation errors are 422 with `detail` a list of `{loc, msg, type}`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and ReDoc assets are served from this host (drf-spectacular-sidecar), not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "ENUM_NAME_OVERRIDES": {
        "TokenModeEnum": "orchestrio.choices.TokenMode",
        "RoleEnum": "orchestrio.choices.Role",
        "InvitationStatusEnum": "orchestrio.choices.InvitationStatus",
        "InstanceProviderEnum": "instances.choices.Provider",
        "GatewayProviderEnum": "gateway.choices.GatewayProvider",
        "AppHealthEnum": "gateway.choices.AppHealth",
        "AppHealthSourceEnum": "gateway.choices.AppHealthSource",
        "OperationStatusEnum": "instances.choices.OperationStatus",
        "OperationKindEnum": "instances.choices.OperationKind",
        "FleetRequestStatusEnum": "fleet.choices.RequestStatus",
        "FleetRequestKindEnum": "fleet.choices.RequestKind",
        "StatsWindowEnum": "instances.choices.StatWindow",
        "StatResolutionEnum": "instances.choices.StatResolution",
        "AddOnStatusEnum": "addons.choices.AddOnStatus",
        "AddOnPlanEnum": "addons.choices.AddOnPlan",
        "AddOnEngineEnum": "addons.choices.Engine",
        "FunctionRuntimeEnum": "functions.choices.Runtime",
        "FunctionAuthModeEnum": "functions.choices.AuthMode",
        "FunctionVersionStatusEnum": "functions.choices.VersionStatus",
        "FunctionRequestMethodEnum": "functions.choices.RequestMethod",
    },
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums"],
}

# --- Input limits (docs/configuration.md) -------------------------------------------------------

# Request bodies larger than this are 413 before any view reads them: API JSON, console forms,
# Stripe's webhook. The gateway and the tunnel stream bodies to the instance and are not capped by
# it (orchestrio.middleware.RequestLimitsMiddleware).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("REQUEST_MAX_BODY_BYTES", 1024 * 1024)
# JSON (API bodies, console JSON fields, fetched OIDC documents) nested deeper than this is 422.
API_MAX_JSON_DEPTH = env_int("API_MAX_JSON_DEPTH", 32)
# An instance's or a deployment's config, as JSON.
CONFIG_MAX_BYTES = env_int("CONFIG_MAX_BYTES", 64 * 1024)

# --- Rate limits (per token or user, per endpoint, per minute) -----------------------------------

RATELIMIT_ENABLE = env_bool("RATELIMIT_ENABLE", True)
# Endpoint classes from the API contract. Each endpoint keeps its own counter at its class's rate;
# on top, every caller has a per-minute ceiling from its tenant's subscription plan.
RATE_LIMITS = {
    "write": env("RATE_LIMIT_WRITE", "10/m"),
    "lifecycle": env("RATE_LIMIT_LIFECYCLE", "20/m"),
    "domain_read": env("RATE_LIMIT_DOMAIN_READ", "30/m"),
    "read": env("RATE_LIMIT_READ", "60/m"),
    "public": env("RATE_LIMIT_PUBLIC", "120/m"),
    "auth_failure": env("RATE_LIMIT_AUTH_FAILURE", "30/m"),
    "gateway": env("RATE_LIMIT_GATEWAY", "600/m"),
    # Console login and signup POSTs per client IP (and login per username): a brute-force guard.
    "login": env("RATE_LIMIT_LOGIN", "10/m"),
}

# --- Long-lived requests (orchestrio/longpoll.py; docs/operations.md, "Long polls") ---------------

# Open long polls and streams at once, per principal (API token or console user) and per tenant,
# across every web process; beyond either, 429.
LONG_POLL_MAX_PER_PRINCIPAL = env_int("LONG_POLL_MAX_PER_PRINCIPAL", 4)
LONG_POLL_MAX_PER_TENANT = env_int("LONG_POLL_MAX_PER_TENANT", 8)
# Threads of each web process that long-lived requests never hold: /health, the console and every
# other request are served on them. A process holds at most (its threads - this) long polls.
LONG_POLL_RESERVED_THREADS = env_int("LONG_POLL_RESERVED_THREADS", 4)
# A slot's lease in Redis, renewed while its request waits: how long a killed process's slots
# stay taken.
LONG_POLL_LEASE_SECONDS = env_int("LONG_POLL_LEASE_SECONDS", 30)
# Proxied requests in progress at once per tenant and web process (0: half of what long-lived
# requests may hold there). A proxied request holds its thread until the instance has answered.
PROXY_MAX_PER_TENANT = env_int("PROXY_MAX_PER_TENANT", 0)
if LONG_POLL_LEASE_SECONDS < 15:
    raise ImproperlyConfigured("LONG_POLL_LEASE_SECONDS must be at least 15: a wait renews its lease every few seconds")

# --- Product settings ---------------------------------------------------------------------------

DEFAULT_REGION = env("DEFAULT_REGION", "local")
# Each instance's app logs (its stdout/stderr, kept by its agent on the instance): the ring
# buffer's size on disk (docs/observability.md).
APP_LOG_MAX_BYTES = env_int("APP_LOG_MAX_BYTES", 1024 * 1024)
# How often a followed app log (`?follow=true`) asks the agent for new lines.
APP_LOG_FOLLOW_POLL_SECONDS = float(env("APP_LOG_FOLLOW_POLL_SECONDS", "1"))
# The longest a follow stays open, whatever its `timeout` asks (1–300 s): it holds a thread.
APP_LOG_FOLLOW_MAX_SECONDS = env_int("APP_LOG_FOLLOW_MAX_SECONDS", 300)
# Each running instance's stats (docs/observability.md "Stats"): asked of its agent this often
# (one point a minute; points kept a day, then one an hour for 30 days), at most this many at
# once, each within this timeout.
STATS_SAMPLE_SECONDS = env_int("STATS_SAMPLE_SECONDS", 60)
STATS_SAMPLE_CONCURRENCY = env_int("STATS_SAMPLE_CONCURRENCY", 32)
STATS_SAMPLE_TIMEOUT_SECONDS = float(env("STATS_SAMPLE_TIMEOUT_SECONDS", "3"))
# The agent runtime (docs/agent.md): how long a chat waits for the instance's reply, and how the
# metering job reads the agents' usage counters (every AGENT_USAGE_SECONDS, concurrently).
CHAT_TIMEOUT_SECONDS = float(env("CHAT_TIMEOUT_SECONDS", "60"))
AGENT_USAGE_SECONDS = env_int("AGENT_USAGE_SECONDS", 300)
AGENT_USAGE_CONCURRENCY = env_int("AGENT_USAGE_CONCURRENCY", 32)
AGENT_USAGE_TIMEOUT_SECONDS = float(env("AGENT_USAGE_TIMEOUT_SECONDS", "5"))
# A fleet request (POST /api/v1/requests) creates or returns at most this many instances (docs/fleet.md).
FLEET_REQUEST_MAX_COUNT = env_int("FLEET_REQUEST_MAX_COUNT", 100)
# A fleet batch's bootstrap key (shared by its machines until each has its own) is erased this
# long after the batch began at the latest (docs/fleet.md "One fleet call per batch").
FLEET_BOOTSTRAP_KEY_SECONDS = env_int("FLEET_BOOTSTRAP_KEY_SECONDS", 900)
ENABLED_PROVIDERS = env_list("ENABLED_PROVIDERS", ["local"])
IDEMPOTENCY_KEY_TTL_HOURS = 24
# A request holding an idempotency key longer than this is presumed dead; the key may be retried.
IDEMPOTENCY_LOCK_SECONDS = env_int("IDEMPOTENCY_LOCK_SECONDS", 120)
# Team invitations (orchestrio/services.py, docs/roles.md): a link valid this many days by default
# (an invitation may ask for 1 to 30), sent through Django's email backend. Development prints the
# mail on the console (the terminal of `make run`); production sends it by SMTP (EMAIL_HOST...).
INVITATION_DEFAULT_DAYS = 7
EMAIL_BACKEND = env(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend" if DEBUG else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = 10  # an SMTP server that hangs must not hold a console request for long
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "Orchestrio <no-reply@localhost>")
# API tokens record last use at most once per this many seconds (no write on every request).
TOKEN_LAST_USED_RESOLUTION_SECONDS = 60
# Outbound requests to URLs a tenant controls (alert webhooks, OIDC issuers and key sets) go only
# to public addresses, checked when the URL is set and again at every connection
# (orchestrio/outbound.py). Loopback, and plain http:// to it, only for development.
OUTBOUND_ALLOW_LOOPBACK = env_bool("OUTBOUND_ALLOW_LOOPBACK", DEBUG)
# Networks (CIDRs) the operator opens to every tenant's outbound URLs, e.g. an identity provider
# on the private network. Empty: none.
OUTBOUND_ALLOWED_NETWORKS = env_list("OUTBOUND_ALLOWED_NETWORKS", [])
for _network in OUTBOUND_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError as _exc:
        raise ImproperlyConfigured(f"OUTBOUND_ALLOWED_NETWORKS: {_network!r} is not a network (e.g. 10.20.0.0/16)") from _exc
for _old, _new in (("OIDC_ALLOW_HTTP_LOOPBACK", "OUTBOUND_ALLOW_LOOPBACK"), ("OIDC_ALLOW_PRIVATE_ISSUERS", "OUTBOUND_ALLOWED_NETWORKS")):
    if os.environ.get(_old):
        raise ImproperlyConfigured(f"{_old} is gone: use {_new} (docs/configuration.md)")
OIDC_CACHE_SECONDS = env_int("OIDC_CACHE_SECONDS", 3600)
OIDC_REFETCH_INTERVAL_SECONDS = env_int("OIDC_REFETCH_INTERVAL_SECONDS", 30)
OIDC_FETCH_TIMEOUT_SECONDS = float(env("OIDC_FETCH_TIMEOUT_SECONDS", "5"))

# Instances
LOCAL_PROVIDER_DIR = Path(env("LOCAL_PROVIDER_DIR", str(VAR_DIR / "instances")))
LOCAL_STOP_GRACE_SECONDS = float(env("LOCAL_STOP_GRACE_SECONDS", "5"))
# The sandbox (instances/providers/sandbox.py): on wherever it can be (root, bubblewrap); 0 turns
# it off, and then tenant commands are refused. Instance n runs as uid/gid LOCAL_SANDBOX_UID_BASE+n.
LOCAL_SANDBOX = env_bool("LOCAL_SANDBOX", True)
LOCAL_SANDBOX_UID_BASE = env_int("LOCAL_SANDBOX_UID_BASE", 2_000_000)

# Add-ons (docs/addons.md): the local engine's clusters and servers, one directory each; add-on n
# runs as uid/gid ADDONS_LOCAL_UID_BASE+n (its own, like an instance's) when the control plane is root.
ADDONS_LOCAL_DIR = Path(env("ADDONS_LOCAL_DIR", str(VAR_DIR / "addons")))
ADDONS_LOCAL_UID_BASE = env_int("ADDONS_LOCAL_UID_BASE", 3_000_000)
# Where PostgreSQL's initdb/pg_ctl/postgres live (empty: the newest /usr/lib/postgresql/*/bin).
ADDONS_POSTGRES_BIN = env("ADDONS_POSTGRES_BIN", "")
ADDONS_REDIS_SERVER = env("ADDONS_REDIS_SERVER", "redis-server")
ADDONS_START_TIMEOUT_SECONDS = float(env("ADDONS_START_TIMEOUT_SECONDS", "30"))
# Add-ons of instances on AWS (docs/addons.md, "On AWS"): RDS PostgreSQL and ElastiCache Redis.
# The versions offered (the first is the default), where the databases go (an operator's subnet
# groups and security groups; else the instance's blueprint's subnets and groups), and how the
# operation's job follows AWS: a look every ADDONS_AWS_POLL_SECONDS (the poll sweep), failing
# the operation past ADDONS_AWS_WAIT_TIMEOUT_SECONDS.
ADDONS_AWS_POSTGRES_VERSIONS = env_list("ADDONS_AWS_POSTGRES_VERSIONS", ["16", "17", "15"])
ADDONS_AWS_REDIS_VERSIONS = env_list("ADDONS_AWS_REDIS_VERSIONS", ["7.1", "7.0", "6.2"])
ADDONS_AWS_DB_SUBNET_GROUP = env("ADDONS_AWS_DB_SUBNET_GROUP", "")
ADDONS_AWS_CACHE_SUBNET_GROUP = env("ADDONS_AWS_CACHE_SUBNET_GROUP", "")
ADDONS_AWS_SECURITY_GROUP_IDS = env_list("ADDONS_AWS_SECURITY_GROUP_IDS", [])
ADDONS_AWS_SIZES: dict = {}  # overrides of addons.aws.SIZES, by engine and plan
ADDONS_AWS_POLL_SECONDS = env_int("ADDONS_AWS_POLL_SECONDS", 15)
ADDONS_AWS_WAIT_TIMEOUT_SECONDS = env_int("ADDONS_AWS_WAIT_TIMEOUT_SECONDS", 3600)
# Add-on backups (docs/addons.md "Backups"): in S3 (boto3's credential chain) when a bucket is set,
# at ADDONS_BACKUP_S3_ENDPOINT_URL when that is set (MinIO, a moto server), else in a local directory.
ADDONS_BACKUP_DIR = Path(env("ADDONS_BACKUP_DIR", str(VAR_DIR / "backups")))
ADDONS_BACKUP_S3_BUCKET = env("ADDONS_BACKUP_S3_BUCKET", "")
ADDONS_BACKUP_S3_ENDPOINT_URL = env("ADDONS_BACKUP_S3_ENDPOINT_URL", "")
ADDONS_BACKUP_S3_REGION = env("ADDONS_BACKUP_S3_REGION", "")
ADDONS_BACKUP_S3_PREFIX = env("ADDONS_BACKUP_S3_PREFIX", "addon-backups/")
# How long a download URL works (an S3 presigned URL, or the local store's signed URL).
ADDONS_BACKUP_DOWNLOAD_SECONDS = env_int("ADDONS_BACKUP_DOWNLOAD_SECONDS", 600)
# The scheduler's sweep: due automatic backups, then retention (expired backups deleted).
ADDONS_BACKUP_SWEEP_SECONDS = env_int("ADDONS_BACKUP_SWEEP_SECONDS", 300)
ADDONS_BACKUP_TIMEOUT_SECONDS = env_int("ADDONS_BACKUP_TIMEOUT_SECONDS", 1800)
# A create/start waits this long for the instance's health endpoint before failing.
INSTANCE_READY_TIMEOUT_SECONDS = env_int("INSTANCE_READY_TIMEOUT_SECONDS", 120)
INSTANCE_READY_CHECK = env_bool("INSTANCE_READY_CHECK", True)
# A job waits this long in place for what an instance must do next (its health path, a task's
# end); after that it hands the wait to a periodic sweep and frees its worker, so one tenant's
# slow instance never holds the workers everyone shares (docs/operations.md, "Queues and workers").
JOB_INLINE_WAIT_SECONDS = float(env("JOB_INLINE_WAIT_SECONDS", "5"))
READINESS_SWEEP_SECONDS = env_int("READINESS_SWEEP_SECONDS", 2)
# Scale to zero (docs/lifecycle.md, "Sleep and wake"): the idle sweep runs this often and puts to
# sleep running instances with no traffic for their idle timeout (at least the minimum below); a
# request to a sleeping instance is held at most INSTANCE_WAKE_WAIT_SECONDS for it to wake (504 after).
IDLE_SWEEP_SECONDS = env_int("IDLE_SWEEP_SECONDS", 30)
INSTANCE_IDLE_TIMEOUT_MIN_SECONDS = env_int("INSTANCE_IDLE_TIMEOUT_MIN_SECONDS", 60)
INSTANCE_WAKE_WAIT_SECONDS = env_int("INSTANCE_WAKE_WAIT_SECONDS", 30)
HEALTH_CHECK_INTERVAL_SECONDS = env_int("HEALTH_CHECK_INTERVAL_SECONDS", 30)
HEALTH_CHECK_TIMEOUT_SECONDS = float(env("HEALTH_CHECK_TIMEOUT_SECONDS", "3"))
HEALTH_CHECK_CONCURRENCY = env_int("HEALTH_CHECK_CONCURRENCY", 200)
# Consecutive failed probes before a running instance is marked unhealthy.
HEALTH_FAILURE_THRESHOLD = env_int("HEALTH_FAILURE_THRESHOLD", 2)
# A job holds a lease in Redis while it runs; the reconciler treats an expired lease as a dead job.
OPERATION_LEASE_SECONDS = env_int("OPERATION_LEASE_SECONDS", 30)
# Over this long in a transitional state, an operation is wedged and is failed (Fly's 5 minutes).
OPERATION_WEDGED_SECONDS = env_int("OPERATION_WEDGED_SECONDS", 300)
OPERATION_MAX_ATTEMPTS = env_int("OPERATION_MAX_ATTEMPTS", 3)
RECONCILER_INTERVAL_SECONDS = env_int("RECONCILER_INTERVAL_SECONDS", 60)
RECONCILER_TERMINATE_ORPHANS = env_bool("RECONCILER_TERMINATE_ORPHANS", False)
# The database is the outbox: an operation or task still queued this long after it was recorded
# with no live job in Redis (Redis was down, or restarted and lost it) is enqueued again.
RECONCILER_QUEUE_GRACE_SECONDS = env_int("RECONCILER_QUEUE_GRACE_SECONDS", 15)
# Fault injection for the resilience tests; never set in production (see orchestrio/faults.py).
FAULTS = env_list("ORCHESTRIO_FAULTS", [])

# Gateway
GATEWAY_CONNECT_TIMEOUT_SECONDS = float(env("GATEWAY_CONNECT_TIMEOUT_SECONDS", "5"))
GATEWAY_READ_TIMEOUT_SECONDS = float(env("GATEWAY_READ_TIMEOUT_SECONDS", "60"))
GATEWAY_MAX_CONNECTIONS = env_int("GATEWAY_MAX_CONNECTIONS", 200)
USAGE_FLUSH_SECONDS = env_int("USAGE_FLUSH_SECONDS", 30)
# How often proxied requests' metrics move from Redis to the database (gateway/traffic.py).
REQUEST_METRICS_FLUSH_SECONDS = env_int("REQUEST_METRICS_FLUSH_SECONDS", 15)
# Prometheus: per-instance request series only for instances with traffic in the last hour, at
# most this many (the busiest first): docs/observability.md, "Request metrics".
METRICS_INSTANCE_SERIES_LIMIT = env_int("METRICS_INSTANCE_SERIES_LIMIT", 500)

# Functions (docs/functions.md): each function's runtime is a sandboxed process on this host, as
# uid/gid FUNCTIONS_LOCAL_UID_BASE+n (its own: never an instance's, never another function's).
FUNCTIONS_LOCAL_DIR = Path(env("FUNCTIONS_LOCAL_DIR", str(VAR_DIR / "functions")))
FUNCTIONS_LOCAL_UID_BASE = env_int("FUNCTIONS_LOCAL_UID_BASE", 4_000_000)
# `<slug>.<FUNCTIONS_DOMAIN>` serves a function on a host of its own (empty: only /fn/<slug>).
FUNCTIONS_DOMAIN = (env("FUNCTIONS_DOMAIN", "") or "").strip().lower().rstrip(".")
if FUNCTIONS_DOMAIN and not re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", FUNCTIONS_DOMAIN):
    raise ImproperlyConfigured(f"FUNCTIONS_DOMAIN must be a domain name (no scheme, port or path), not {FUNCTIONS_DOMAIN!r}")
# A handler's code, at most (over: 422 on create, update and deploy).
FUNCTIONS_MAX_CODE_BYTES = env_int("FUNCTIONS_MAX_CODE_BYTES", 256 * 1024)
# What a runtime may answer (its response envelope); a request's body is bounded by REQUEST_MAX_BODY_BYTES.
FUNCTIONS_MAX_RESPONSE_BYTES = env_int("FUNCTIONS_MAX_RESPONSE_BYTES", 6 * 1024 * 1024)
# A runtime must answer its health check this soon after it is started (deploy and cold start).
FUNCTIONS_START_TIMEOUT_SECONDS = float(env("FUNCTIONS_START_TIMEOUT_SECONDS", "10"))
# An invocation of a function at zero waits this long for its runtime, then answers 504.
FUNCTIONS_WAKE_TIMEOUT_SECONDS = float(env("FUNCTIONS_WAKE_TIMEOUT_SECONDS", "30"))
# One invocation's handler may run this long (then 504).
FUNCTIONS_INVOKE_TIMEOUT_SECONDS = float(env("FUNCTIONS_INVOKE_TIMEOUT_SECONDS", "30"))
FUNCTIONS_DEFAULT_IDLE_SECONDS = env_int("FUNCTIONS_DEFAULT_IDLE_SECONDS", 300)
# How often the idle sweep stops runtimes idle longer than their function's idle_timeout_seconds.
FUNCTIONS_IDLE_SWEEP_SECONDS = env_int("FUNCTIONS_IDLE_SWEEP_SECONDS", 10)
# A function's runtime output (its logs) is kept to about this many bytes (the oldest half dropped).
FUNCTIONS_LOG_MAX_BYTES = env_int("FUNCTIONS_LOG_MAX_BYTES", 256 * 1024)
# How often invocation counts and request metrics move from Redis to the database.
FUNCTIONS_METRICS_FLUSH_SECONDS = env_int("FUNCTIONS_METRICS_FLUSH_SECONDS", 15)
# Where functions run (docs/functions.md, "Where functions run"): "sandbox" — a sandboxed process per
# version on this host (functions/runtime.py); "instance" — a function instance of the tenant on
# FUNCTIONS_REGION's provider, whose agent runs the function host (functions/remote.py); "auto" —
# "instance" when FUNCTIONS_REGION's provider is not the local one, else "sandbox".
FUNCTIONS_BACKEND = env("FUNCTIONS_BACKEND", "auto")
if FUNCTIONS_BACKEND not in ("auto", "sandbox", "instance"):
    raise ImproperlyConfigured(f"FUNCTIONS_BACKEND must be auto, sandbox or instance, not {FUNCTIONS_BACKEND!r}")
FUNCTIONS_REGION = env("FUNCTIONS_REGION", "") or DEFAULT_REGION
# The function instance each tenant gets on its first deploy: its blueprint and plan; it sleeps after
# FUNCTIONS_HOST_IDLE_SECONDS without an invocation (0: never) and wakes on the next one.
FUNCTIONS_HOST_BLUEPRINT = env("FUNCTIONS_HOST_BLUEPRINT", "Function host")
FUNCTIONS_HOST_PLAN = env("FUNCTIONS_HOST_PLAN", "openclaw-basic")
FUNCTIONS_HOST_IDLE_SECONDS = env_int("FUNCTIONS_HOST_IDLE_SECONDS", 1800)
# A deploy waits this long for its function instance to be created (or woken) and run the host.
FUNCTIONS_HOST_READY_SECONDS = env_int("FUNCTIONS_HOST_READY_SECONDS", 600)

# Custom domains
DNS_NAMESERVERS = env_list("DNS_NAMESERVERS", [])  # empty: the system's resolvers
DNS_PORT = env_int("DNS_PORT", 53)
# The edge proxy's public addresses, for A/AAAA records at a zone apex (optional).
EDGE_IP_ADDRESSES = env_list("EDGE_IP_ADDRESSES", [])
DOMAIN_VERIFY_HOURS = env_int("DOMAIN_VERIFY_HOURS", 72)
DOMAIN_CHECK_BASE_SECONDS = env_int("DOMAIN_CHECK_BASE_SECONDS", 60)
DOMAIN_CHECK_MAX_INTERVAL_SECONDS = env_int("DOMAIN_CHECK_MAX_INTERVAL_SECONDS", 3600)
# Who may ask /internal/tls/ask (the edge proxy). Checked against the socket's address.
TLS_ASK_ALLOWED_IPS = env_list("TLS_ASK_ALLOWED_IPS", ["127.0.0.1", "::1"])

# Deployments. A revision waits for its instance with no worker held (the instance_running hook
# resumes it; the reconciler fails it after this long).
DEPLOY_PROVISION_TIMEOUT_SECONDS = env_int("DEPLOY_PROVISION_TIMEOUT_SECONDS", 900)
DEPLOY_HEALTH_TIMEOUT_SECONDS = env_int("DEPLOY_HEALTH_TIMEOUT_SECONDS", 60)
DEPLOY_HEALTH_SUCCESSES = env_int("DEPLOY_HEALTH_SUCCESSES", 3)
DEPLOY_POLL_SECONDS = float(env("DEPLOY_POLL_SECONDS", "1"))

# Tasks. A task job follows its task in place for JOB_INLINE_WAIT_SECONDS; a longer task is then
# followed by the task poll sweep: every TASK_POLL_SWEEP_SECONDS it enqueues one short poll job
# per task due, with at most TASK_POLLS_PER_TENANT of one tenant's queued or running at once
# (docs/operations.md, "Queues and workers").
TASK_POLL_SECONDS = float(env("TASK_POLL_SECONDS", "1"))
TASK_FOLLOW_GRACE_SECONDS = env_int("TASK_FOLLOW_GRACE_SECONDS", 120)
TASK_POLL_SWEEP_SECONDS = env_int("TASK_POLL_SWEEP_SECONDS", 2)
TASK_POLLS_PER_TENANT = env_int("TASK_POLLS_PER_TENANT", 2)

# AWS (credentials, region endpoints and AWS_ENDPOINT_URL come from the standard boto3 chain)
ROUTE53_HOSTED_ZONE_ID = env("ROUTE53_HOSTED_ZONE_ID")  # unset: no DNS records are managed
AWS_USE_PUBLIC_IP = env_bool("AWS_USE_PUBLIC_IP", False)  # reach agents on public IPs (else private)
AWS_WAIT_TIMEOUT_SECONDS = env_int("AWS_WAIT_TIMEOUT_SECONDS", 600)  # boto3's waiters, for running/stopped/terminated
AWS_FLEET_WAIT_SECONDS = env_int("AWS_FLEET_WAIT_SECONDS", 300)  # how long a Spot Fleet request may take to launch its machine
# SpotFleet blueprints: the IAM role Spot Fleet acts as (a name in this account, or an ARN).
AWS_SPOT_FLEET_ROLE = env("AWS_SPOT_FLEET_ROLE", "aws-ec2-spot-fleet-tagging-role")
# botocore's retries, under the names (and meaning) boto3 itself reads from the environment, with
# our defaults: its "standard" mode (or "adaptive": also rate-limits this client when throttled),
# and the attempts per call, the first included (docs/aws.md).
AWS_RETRY_MODE = env("AWS_RETRY_MODE", "standard")
if AWS_RETRY_MODE not in ("standard", "adaptive"):
    raise ImproperlyConfigured(f"AWS_RETRY_MODE must be standard or adaptive (botocore's retry modes), not {AWS_RETRY_MODE!r}")
AWS_MAX_ATTEMPTS = env_int("AWS_MAX_ATTEMPTS", 6)
if AWS_MAX_ATTEMPTS < 1:
    raise ImproperlyConfigured(f"AWS_MAX_ATTEMPTS must be at least 1 (the first attempt counts), not {AWS_MAX_ATTEMPTS}")
for _old, _instead in (
    ("AWS_THROTTLE_RETRIES", "set AWS_MAX_ATTEMPTS (attempts per call, the first included: retries + 1)"),
    ("AWS_BACKOFF_BASE_SECONDS", "botocore's retry mode sets the backoff (AWS_RETRY_MODE)"),
    ("AWS_BACKOFF_CAP_SECONDS", "botocore's retry mode sets the backoff (AWS_RETRY_MODE)"),
):
    if os.environ.get(_old):
        raise ImproperlyConfigured(f"{_old} is gone: AWS calls are retried by botocore; {_instead} (docs/aws.md)")

STRIPE_SECRET_KEY = env("STRIPE_SECRET_KEY")
STRIPE_WEBHOOK_SECRET = env("STRIPE_WEBHOOK_SECRET")
STRIPE_API_BASE = env("STRIPE_API_BASE")  # only for a stub of Stripe's API in tests
STRIPE_TIMEOUT_SECONDS = float(env("STRIPE_TIMEOUT_SECONDS", "20"))
# Console forms may redirect to these origins (Stripe's hosted pages).
CSP_FORM_ACTION_EXTRA = env_list("CSP_FORM_ACTION_EXTRA", ["https://checkout.stripe.com", "https://billing.stripe.com"])
STRIPE_WEBHOOK_TOLERANCE_SECONDS = env_int("STRIPE_WEBHOOK_TOLERANCE_SECONDS", 300)
# The plan of new tenants and of tenants whose subscription ends.
DEFAULT_SUBSCRIPTION_PLAN = env("DEFAULT_SUBSCRIPTION_PLAN", "starter")

# Alert webhooks
ALERT_TIMEOUT_SECONDS = float(env("ALERT_TIMEOUT_SECONDS", "10"))
ALERT_RETRY_BASE_SECONDS = env_int("ALERT_RETRY_BASE_SECONDS", 30)
ALERT_RETRY_MAX_SECONDS = env_int("ALERT_RETRY_MAX_SECONDS", 3600)

# Notifications (docs/notifications.md): each person's feed keeps its newest N per tenant, for
# this many days (orchestrio.jobs.trim_notifications, hourly).
NOTIFICATIONS_KEEP_PER_USER = env_int("NOTIFICATIONS_KEEP_PER_USER", 200)
NOTIFICATIONS_RETENTION_DAYS = env_int("NOTIFICATIONS_RETENTION_DAYS", 90)

# Prometheus metrics at /metrics (orchestrio/metrics.py): off by default. When a token is set,
# scrapes need `Authorization: Bearer <token>`; when addresses (or networks) are listed, only
# those socket addresses may scrape.
METRICS_ENABLED = env_bool("METRICS_ENABLED", False)
METRICS_TOKEN = env("METRICS_TOKEN")
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS", [])

# Fernet keys for secrets at rest, newest first (comma-separated). In DEBUG a key derived from
# SECRET_KEY is used when none is set; production must set it.
ENCRYPTION_KEYS = env_list("ENCRYPTION_KEYS", [])

# --- Start-up checks ----------------------------------------------------------------------------

# What a request would otherwise fail on (a 500 on the first secret to encrypt, a 400 for every
# Host): with DEBUG off the process refuses to start, naming every setting it lacks. `make run`
# writes them for development into var/local.env, which manage.py reads (orchestrio/localsettings.py).
_REQUIRED = {
    "SECRET_KEY": (SECRET_KEY, "Django's signing key (sessions, CSRF, password resets)"),
    "ENCRYPTION_KEYS": (ENCRYPTION_KEYS, "Fernet keys for secrets at rest, newest first"),
    "ALLOWED_HOSTS": (ALLOWED_HOSTS, "the host names this server answers for; every other Host gets 400"),
    "PUBLIC_URL": (env("PUBLIC_URL"), "the console's public URL, in links, access URLs and Stripe's redirects"),
}
_missing = [f"  {name} must be set when DEBUG is off: {what}" for name, (value, what) in _REQUIRED.items() if not value and not DEBUG]
if _missing:
    raise ImproperlyConfigured(
        "DEBUG is off (production) and settings are missing:\n" + "\n".join(_missing) + "\n"
        "Set them in the environment (docs/configuration.md), or run `make run` once for the development setup "
        "(it writes var/local.env, which manage.py reads)."
    )
for _number, _key in enumerate(ENCRYPTION_KEYS, 1):
    try:
        Fernet(_key)
    except ValueError:
        raise ImproperlyConfigured(
            f"ENCRYPTION_KEYS: key {_number} of {len(ENCRYPTION_KEYS)} is not a Fernet key (32 url-safe base64-encoded bytes; "
            "make one with `python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`)"
        ) from None

# --- Logging ------------------------------------------------------------------------------------

LOG_LEVEL = env("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.db.backends": {"level": "INFO"},
        "rq.worker": {"level": LOG_LEVEL},
        "botocore": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "waitress": {"level": "INFO"},
    },
}
