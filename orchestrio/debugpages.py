"""Development mode (`make run`, DEBUG on) shows the console's own 404 page, as production does.

With DEBUG on, Django answers a 404 with its technical page, whose inline styles the console's
CSP blocks: an unstyled wall of URL patterns. This middleware (absent when DEBUG is off) gives
console paths the styled page instead; API paths keep their JSON. Django's technical 500 page
stays: its traceback is what a developer running `make run` needs (the log has it too).
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed
from django.http import Http404

from .middleware import is_api_path
from .views import handler404


class DebugNotFoundPageMiddleware:
    def __init__(self, get_response):
        if not settings.DEBUG:
            raise MiddlewareNotUsed
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        # No view matched the path (Django resolved nothing): its technical page, replaced.
        if response.status_code == 404 and getattr(request, "resolver_match", None) is None and not is_api_path(request.path):
            return handler404(request)
        return response

    def process_exception(self, request, exception):
        # A console view raised Http404 (another tenant's object, an unknown id).
        if isinstance(exception, Http404) and not is_api_path(request.path):
            return handler404(request, exception)
        return None
