from django.apps import AppConfig


class FleetConfig(AppConfig):
    name = "fleet"
    verbose_name = "Fleet requests"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from orchestrio import hooks as core_hooks

        from . import links

        core_hooks.on_object_links("fleet_request", links.fleet_request_links)
