from django.apps import AppConfig


class AddonsConfig(AppConfig):
    name = "addons"
    verbose_name = "Add-ons"

    def ready(self) -> None:
        from instances import hooks
        from . import services

        # After deployments' hook (INSTALLED_APPS order): the add-ons' URLs are pushed with the
        # deployment's secrets, so neither push drops the other's.
        hooks.on_machine_started(services.addon_env_push_hook)
        hooks.on_instance_destroying(services.addons_of_destroyed_instance)
        hooks.on_reconcile(services.addons_reconcile)
