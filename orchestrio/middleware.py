from __future__ import annotations

import base64
import hashlib
import ipaddress
import logging
import re
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, JsonResponse

from .api.exceptions import database_or_queue_error_response, domain_error_response
from .errors import BadRequest, DomainError, Forbidden, NotFound, PayloadTooLarge, ValidationFailed

logger = logging.getLogger("orchestrio.api")

API_PREFIXES = ("/api/", "/gateway/", "/tunnel/", "/internal/", "/billing/stripe/")
# JSON and metrics: no page to protect with a CSP (proxied content gets its own, from the gateway).
CSP_EXEMPT_PREFIXES = (*API_PREFIXES, "/health", "/metrics")
DOCS_PREFIXES = ("/docs", "/redoc")


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIXES)


def _host_without_port(host: str) -> str:
    if host.startswith("["):  # [v6]:port
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


class DenyDirectIPMiddleware:
    """With DENY_DIRECT_IP, a request whose Host is an IP literal gets 403: callers must use the
    public hostname (the edge proxy). Load-balancer health checks, Prometheus scrapes and the edge
    proxy's TLS question are exempt."""

    EXEMPT = ("/health", "/metrics", "/internal/")

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if settings.DENY_DIRECT_IP and not request.path.startswith(self.EXEMPT):
            host = _host_without_port(request.META.get("HTTP_HOST", ""))
            try:
                ipaddress.ip_address(host)
            except ValueError:
                pass
            else:
                return domain_error_response(Forbidden(f"direct IP access is not allowed; use https://{settings.PUBLIC_URL.split('://')[-1]}"))
        return self.get_response(request)


class RequestLimitsMiddleware:
    """What every request must be before a view sees it, checked once here:

    - a body of at most DATA_UPLOAD_MAX_MEMORY_SIZE bytes, else 413 before anything reads it
      (Django would raise RequestDataTooBig wherever the body is first touched: a 500). The gateway
      and the tunnel are exempt: they stream bodies to the instance, whose own limits apply.
    - no NUL (`%00`) in the path (404) or, outside the gateway and the tunnel, in the query
      string (422 at its loc): PostgreSQL can neither store nor compare one, so it would be a 500
      at the first query that uses the value. (A path or query cannot carry a lone surrogate:
      Django decodes them with replacement characters. JSON bodies are the parser's.)
    """

    STREAMED_PREFIXES = ("/gateway/", "/tunnel/")

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        api = is_api_path(request.path)
        if "\x00" in request.path_info:
            return _refuse(api, NotFound("no such path: paths contain no NUL characters"))
        if not request.path.startswith(self.STREAMED_PREFIXES):
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0  # Django reads no body then either
            if limit is not None and length > limit:
                return _refuse(api, PayloadTooLarge(f"the request body is {length} bytes; the limit is {limit}"))
            if "%00" in request.META.get("QUERY_STRING", ""):
                names = [name for name, values in request.GET.lists() if "\x00" in name or any("\x00" in value for value in values)]
                issues = [{"loc": ["query", name], "msg": "Null characters are not allowed.", "type": "null_characters_not_allowed"} for name in names]
                if issues and api:
                    return domain_error_response(ValidationFailed(issues))
                if issues:
                    return _refuse(api, BadRequest("Null characters are not allowed in the query string."))
        return self.get_response(request)


def _refuse(api: bool, error: DomainError) -> HttpResponse:
    if api:
        return domain_error_response(error)
    return HttpResponse(error.detail, status=error.status_code, content_type="text/plain; charset=utf-8")


def _inline_script_hashes(package: str) -> tuple[str, ...]:
    """CSP hashes of the inline <script> blocks in a package's templates (django-rq's admin pages
    each carry one that wires up the job list's select-all), so that they run and nothing else
    inline does."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return ()
    hashes = set()
    for root in spec.submodule_search_locations:
        for template in Path(root, "templates").rglob("*.html"):
            for body in re.findall(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", template.read_text(encoding="utf-8"), re.S):
                if "{%" not in body and "{{" not in body:  # rendered as written: its hash is known now
                    digest = base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode()
                    hashes.add(f"'sha256-{digest}'")
    return tuple(sorted(hashes))


class SecurityHeadersMiddleware:
    """A Content-Security-Policy on every HTML page (the console, the admin, the API docs), and
    the rate-limit headers for API responses."""

    BASE = "default-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; object-src 'none'"

    @classmethod
    def console_csp(cls) -> str:
        # Forms may end in a redirect to Stripe's hosted Checkout and Portal pages.
        form_action = " ".join(["'self'", *settings.CSP_FORM_ACTION_EXTRA])
        return f"{cls.BASE}; script-src 'self'; style-src 'self'; form-action {form_action}"

    @classmethod
    def admin_csp(cls) -> str:
        # Django's admin runs no inline script and has no inline style.
        return f"{cls.BASE}; script-src 'self'; style-src 'self'; form-action 'self'"

    @classmethod
    @lru_cache(maxsize=1)
    def django_rq_csp(cls) -> str:
        # django-rq's pages in the admin each run one inline script (allowed by its hash, nothing
        # else inline runs) and style themselves with inline <style> blocks and attributes.
        scripts = " ".join(["'self'", *_inline_script_hashes("django_rq")])
        return f"{cls.BASE}; script-src {scripts}; style-src 'self' 'unsafe-inline'; form-action 'self'"

    @classmethod
    def docs_csp(cls) -> str:
        # Swagger UI and ReDoc (drf-spectacular-sidecar, served from this host) run only scripts
        # from here, but style their pages with inline styles (ReDoc's styled-components inserts
        # <style> elements), and ReDoc's search runs in a worker made from a blob: URL. "Try it
        # out" calls this host's API.
        return f"{cls.BASE}; script-src 'self'; style-src 'self' 'unsafe-inline'; font-src 'self' data:; worker-src 'self' blob:; form-action 'self'"

    @classmethod
    def csp_for(cls, path: str) -> str | None:
        if path.startswith(CSP_EXEMPT_PREFIXES):
            return None
        if path.startswith("/admin/django-rq/"):
            return cls.django_rq_csp()
        if path.startswith("/admin/"):
            return cls.admin_csp()
        if path.startswith(DOCS_PREFIXES):
            return cls.docs_csp()
        return cls.console_csp()

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        usage = getattr(request, "ratelimit_usage", None)
        if usage is not None:
            response["X-RateLimit-Limit"] = str(usage.limit)
            response["X-RateLimit-Remaining"] = str(usage.remaining)
            response["X-RateLimit-Reset"] = str(usage.reset)
        csp = self.csp_for(request.path)
        if csp is not None and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = csp
        if request.path.startswith(DOCS_PREFIXES):
            # Swagger UI's init script carries the session's CSRF token: no other site may load it
            # with <script src> (and read the token out of it).
            response.setdefault("Cross-Origin-Resource-Policy", "same-origin")
        return response


class ApiErrorMiddleware:
    """Under the API prefixes, an exception outside DRF's handling is JSON too, never an HTML page;
    an unreachable database or Redis is a 503 everywhere."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        unavailable = unavailable_response(request, exception)
        if unavailable is not None or not is_api_path(request.path):
            return unavailable
        # Django's own refusals raised by a view outside DRF: the API's 403/404, not a 500.
        if isinstance(exception, PermissionDenied):
            return domain_error_response(Forbidden("you are not allowed to do this"))
        if isinstance(exception, Http404):
            return domain_error_response(NotFound(f"no such endpoint or object: {request.method} {request.path}"))
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return JsonResponse({"detail": "internal error; it has been logged"}, status=500)


def unavailable_response(request, exception: BaseException | None) -> HttpResponse | None:
    """An unreachable database or Redis is a 503 with Retry-After: JSON under the API prefixes, a
    plain page in the console (rendered without the request: context processors need the
    database). None for any other exception."""
    from django.template.loader import render_to_string

    response = database_or_queue_error_response(exception)
    if response is None:
        return None
    headers = {"Retry-After": response["Retry-After"]}
    if is_api_path(request.path):
        return JsonResponse(response.data, status=503, headers=headers)
    return HttpResponse(render_to_string("console/503.html"), status=503, headers=headers)
