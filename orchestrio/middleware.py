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
