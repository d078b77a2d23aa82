"""Routing by origin (the rules are gateway/origin.py's).

- An instance's own hostname (`<instance_id>.<BASE_DOMAIN>`) or its active custom domain goes
  straight to that instance's tunnel: the edge proxy (Caddy, with on-demand TLS) sends every such
  name to the control plane, which routes by Host.
- The gateway host (GATEWAY_HOST) answers the proxies and `/health` only: 404 for everything
  else, so no console page, API or admin shares an origin with instance content.
- On the console's host and the gateway host, every answer under `/gateway/` and `/tunnel/` is
  sandboxed, whoever produced it (the instance, the gateway's own errors, Django's 404 and 500).
"""

from __future__ import annotations

from orchestrio.api.exceptions import domain_error_response
from orchestrio.errors import NotFound

from . import origin
from .origin import Site


class InstanceHostMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        where = origin.of(request)
        if where.site is Site.INSTANCE:
            if where.instance_id is None:
                return domain_error_response(NotFound("no instance has this hostname"))
            from .views import serve_host

            return serve_host(request, where.instance_id)
        path = request.path_info
        if where.site is Site.GATEWAY and not origin.gateway_host_serves(path):
            return origin.sandbox(domain_error_response(NotFound("not found: this host serves the gateway only (/gateway/…, /tunnel/…)")))
        response = self.get_response(request)
        if origin.is_proxy_path(path):
            origin.sandbox(response)
        return response
