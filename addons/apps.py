from django.apps import AppConfig


class AddonsConfig(AppConfig):
    name = "addons"
    verbose_name = "Add-ons"

    def ready(self) -> None:
        from instances import hooks
        from . import engines, services

        # Every push of the agent's secrets sends the instance's whole environment
        # (instances.hooks.instance_environment): the deployment's and the add-ons' parts.
        hooks.on_environment("addons", services.instance_addon_env)
        hooks.on_machine_started(services.addon_env_push_hook)
        hooks.on_instance_destroying(services.addons_of_destroyed_instance)
        hooks.on_reconcile(services.addons_reconcile)
        # A sandboxed instance reaches its add-ons through their unix sockets (docs/addons.md).
        hooks.on_sandbox_binds(engines.sandbox_binds)
