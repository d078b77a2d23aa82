from __future__ import annotations

import ipaddress
import logging

from django.conf import settings
from django.http import HttpResponse, JsonResponse

logger = logging.getLogger("orchestrio.api")

API_PREFIXES = ("/api/", "/gateway/", "/tunnel/", "/internal/", "/billing/stripe/")
CONSOLE_EXEMPT_PREFIXES = (*API_PREFIXES, "/admin/", "/docs", "/redoc", "/django-rq/", "/health", "/metrics")


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
                return JsonResponse(
                    {"detail": f"direct IP access is not allowed; use https://{settings.PUBLIC_URL.split('://')[-1]}"},
                    status=403,
                )
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
            return _refuse(api, 404, "no such path: paths contain no NUL characters")
        if not request.path.startswith(self.STREAMED_PREFIXES):
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0  # Django reads no body then either
            if limit is not None and length > limit:
                return _refuse(api, 413, f"the request body is {length} bytes; the limit is {limit}")
            if "%00" in request.META.get("QUERY_STRING", ""):
                names = [name for name, values in request.GET.lists() if "\x00" in name or any("\x00" in value for value in values)]
                issues = [{"loc": ["query", name], "msg": "Null characters are not allowed.", "type": "null_characters_not_allowed"} for name in names]
                if issues and api:
                    return JsonResponse({"detail": issues}, status=422)
                if issues:
                    return HttpResponse("Null characters are not allowed in the query string.", status=400, content_type="text/plain; charset=utf-8")
        return self.get_response(request)


def _refuse(api: bool, status: int, detail: str) -> HttpResponse:
    if api:
        return JsonResponse({"detail": detail}, status=status)
    return HttpResponse(detail, status=status, content_type="text/plain; charset=utf-8")


class SecurityHeadersMiddleware:
    """Content-Security-Policy for console pages, and the rate-limit headers for API responses."""

    @staticmethod
    def console_csp() -> str:
        # Forms may end in a redirect to Stripe's hosted Checkout and Portal pages.
        form_action = " ".join(["'self'", *settings.CSP_FORM_ACTION_EXTRA])
        return (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src 'self'; form-action {form_action}; frame-ancestors 'none'; base-uri 'self'; object-src 'none'"
        )

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        usage = getattr(request, "ratelimit_usage", None)
        if usage is not None:
            response["X-RateLimit-Limit"] = str(usage.limit)
            response["X-RateLimit-Remaining"] = str(usage.remaining)
            response["X-RateLimit-Reset"] = str(usage.reset)
        if not request.path.startswith(CONSOLE_EXEMPT_PREFIXES) and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = self.console_csp()
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
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return JsonResponse({"detail": "internal error; it has been logged"}, status=500)


def unavailable_response(request, exception: BaseException | None) -> HttpResponse | None:
    """An unreachable database or Redis is a 503 with Retry-After: JSON under the API prefixes, a
    plain page in the console (rendered without the request: context processors need the
    database). None for any other exception."""
    from django.template.loader import render_to_string

    from .api.exceptions import database_or_queue_error_response

    response = database_or_queue_error_response(exception)
    if response is None:
        return None
    headers = {"Retry-After": response["Retry-After"]}
    if is_api_path(request.path):
        return JsonResponse(response.data, status=503, headers=headers)
    return HttpResponse(render_to_string("console/503.html"), status=503, headers=headers)
