from django.apps import AppConfig


class FleetConfig(AppConfig):
    name = "fleet"
    verbose_name = "Fleet requests"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from instances import hooks
        from orchestrio import hooks as core_hooks

        from . import links, services

        core_hooks.on_object_links("fleet_request", links.fleet_request_links)
        # One fleet call per batch: its creates wait for it, and its machines become their instances'.
        hooks.on_create_held_by(services.fleet_create_held_by)
        hooks.on_machine_ready(services.fleet_machine_ready)
        hooks.on_reconcile(services.fleet_batch_reconcile)
