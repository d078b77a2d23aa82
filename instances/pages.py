"""Console pages of an instance that other apps add (its tasks, gateway, domain…): each app
registers its page in its `AppConfig.ready`; the instances app routes it under the instance's URL
(`instances/<instance_id>/<route>`, URL name `instances:<name>`) and shows its tab, without
importing the app. `register_related(func)`: what a higher app shows on the instance's page about
itself (the deployments app: the deployment that provisioned the instance), as links."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.urls import path


@dataclass(frozen=True)
class InstancePage:
    route: str  # after `<str:instance_id>/`, e.g. "tasks" or "domain/<str:action>"
    view: Callable
    name: str
    tab: str | None = None  # the tab's label; None for a page that is not a tab (a form's action)


_pages: list[InstancePage] = []
_related: list[Callable] = []


def register(*, route: str, view: Callable, name: str, tab: str | None = None) -> None:
    page = InstancePage(route=route, view=view, name=name, tab=tab)
    if page not in _pages:
        _pages.append(page)


def urlpatterns() -> list:
    return [path(f"<str:instance_id>/{page.route}", page.view, name=page.name) for page in _pages]


def tabs(request) -> dict:
    """Context processor: the registered tabs (label, URL name, the `tab` value that marks it)."""
    return {"instance_tabs": [{"label": page.tab, "url_name": f"instances:{page.name}", "tab": page.name} for page in _pages if page.tab]}


def register_related(func: Callable) -> Callable:
    """`func(instance=)` returns `[{"label", "text", "url"}]`: links the instance's page shows
    in its record (one query at most; called on the page, not on each live update)."""
    if func not in _related:
        _related.append(func)
    return func


def related(*, instance) -> list[dict[str, str]]:
    return [link for func in _related for link in func(instance=instance)]
