"""Routing to functions, before the gateway's routing by origin (gateway/middleware.py).

- `<slug>.<FUNCTIONS_DOMAIN>` (when FUNCTIONS_DOMAIN is set): every path of the host is the
  function's, on an origin only it uses.
- `/fn/<slug>[/<path>]` on the console's host and the gateway host: the function, sandboxed
  there as everything proxied is (gateway/origin.py).

Answered here, not by a URL pattern, because the gateway host serves nothing but the proxies.
"""

from __future__ import annotations

from gateway import origin
from gateway.origin import Site
from orchestrio.api.exceptions import domain_error_response
from orchestrio.errors import NotFound
from orchestrio.middleware import _host_without_port

from . import public


class FunctionMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        host = _host_without_port(request.META.get("HTTP_HOST", "")).lower().rstrip(".")
        slug = public.slug_for_host(host)
        if slug == "":
            return domain_error_response(NotFound("no function has this hostname"))
        if slug is not None:
            return public.serve(request, slug, request.path_info, shared=False)
        path = request.path_info
        if path.startswith(public.PREFIX) and origin.of(request).site is not Site.INSTANCE:
            slug, _, rest = path[len(public.PREFIX) :].partition("/")
            return public.serve(request, slug, "/" + rest, shared=True)
        return self.get_response(request)
