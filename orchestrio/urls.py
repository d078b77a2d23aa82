from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from gateway import views as gateway_views
from billing.webhooks import stripe_webhook
from domains.internal import tls_ask

from . import health
from .metrics import metrics_view
from .views import api_not_found, favicon

api_v1 = [
    path("", include("orchestrio.api.urls")),
    path("", include("instances.api.urls")),
    path("", include("domains.api.urls")),
    path("", include("deployments.api.urls")),
    path("", include("addons.api.urls")),
    path("", include("functions.api.urls")),
    path("", include("tasks.api.urls")),
    path("", include("gateway.api.urls")),
    path("", include("fleet.api.urls")),
    path("", include("runtime.api.urls")),
    path("", include("billing.api.urls")),
]

urlpatterns = [
    path("health", health.health_view, name="health"),
    path("metrics", metrics_view, name="metrics"),
    path("favicon.ico", favicon),
    path("api/v1/", include((api_v1, "api"), namespace="api")),
    path("api/schema", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI's init script as a file of its own (?script), and ReDoc without third-party
    # fonts: the docs' Content-Security-Policy runs only scripts from this host.
    path("docs", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="swagger-ui"),
    path("redoc", SpectacularRedocView.as_view(url_name="schema", template_name="api_docs/redoc.html"), name="redoc"),
    path("admin/django-rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
    path("internal/tls/ask", tls_ask, name="tls-ask"),
    path("billing/stripe/webhook", stripe_webhook, name="stripe-webhook"),
    path("billing/", include("billing.urls")),
    re_path(r"^tunnel/(?P<instance_id>[^/]+)(?P<path>/.*)?$", gateway_views.tunnel, name="tunnel"),
    re_path(r"^gateway/(?P<instance_id>[^/]+)/(?P<slug>[^/]+)(?P<rest>/.*)?$", gateway_views.gateway, name="gateway"),
    re_path(r"^(api|gateway|tunnel|internal)/", api_not_found),
    path("instances/", include("instances.urls")),
    path("operations/", include("instances.operation_urls")),
    path("tasks/", include("tasks.urls")),
    path("deployments/", include("deployments.urls")),
    path("fleet/", include("fleet.urls")),
    path("addons/", include("addons.urls")),
    path("functions/", include("functions.urls")),
    path("gateway-console/", include("gateway.urls")),
    path("", include(("orchestrio.console_urls", "console"), namespace="console")),
]

handler403 = "orchestrio.views.handler403"
handler404 = "orchestrio.views.handler404"
handler500 = "orchestrio.views.handler500"
