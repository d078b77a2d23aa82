from django.apps import AppConfig


class OrchestrioConfig(AppConfig):
    name = "orchestrio"
    verbose_name = "Tenancy and access"

    def ready(self) -> None:
        from . import faults, outbound  # noqa: F401 - register their system checks
        from .api import schema  # noqa: F401 - registers the OpenAPI authentication extensions
        from . import hooks, links, notifications

        hooks.on_object_links("api_token", links.api_token_links)
        hooks.on_object_links("member", links.member_links)
        hooks.on_object_links("invitation", links.invitation_links)
        hooks.on_object_links("tenant", links.tenant_links)
        # Notifications hear the events the alert webhooks do (billing registers those).
        hooks.on_tenant_events(notifications.notify)
