"""The root URLconf with routes that fail on purpose, for the error-page tests: the handlers are
the root URLconf's own (imported with it)."""

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.urls import path

from orchestrio.urls import handler403, handler404, handler500  # noqa: F401 - Django reads them here
from orchestrio.urls import urlpatterns as root_patterns


def refuse(request):
    raise PermissionDenied("internal reason the page must not show")


def missing(request):
    raise Http404("no such thing in this tenant")


def crash(request):
    raise RuntimeError("a bug with an internal detail")


urlpatterns = [
    path("boom/403", refuse),
    path("boom/500", crash),
    path("boom/404", missing),
    path("api/v1/boom/403", refuse),
    path("api/v1/boom/500", crash),
    *root_patterns,
]
