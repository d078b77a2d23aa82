from django.apps import AppConfig


class AddonsConfig(AppConfig):
    name = "addons"
    verbose_name = "Add-ons"

    def ready(self) -> None:
        from instances import hooks, pages

        from . import engines, services, views

        # Every push of the agent's secrets sends the instance's whole environment
        # (instances.hooks.instance_environment): the deployment's and the add-ons' parts.
        hooks.on_environment("addons", services.instance_addon_env)
        hooks.on_machine_started(services.addon_env_push_hook)
        hooks.on_instance_destroying(services.addons_of_destroyed_instance)
        hooks.on_reconcile(services.addons_reconcile)
        # A sandboxed instance reaches its add-ons through their unix sockets (docs/addons.md).
        hooks.on_sandbox_binds(engines.sandbox_binds)
        pages.register(route="addons", view=views.instance_addons, name="addons", tab="Add-ons")
        pages.register(route="addons/live", view=views.instance_addons_live, name="addons-live")
        pages.register(route="addons/<str:addon_id>/reveal", view=views.addon_reveal, name="addon-reveal")
        pages.register(route="addons/<str:addon_id>/destroy", view=views.addon_destroy, name="addon-destroy")
        pages.register(route="addons/<str:addon_id>/<str:action>", view=views.addon_action, name="addon-action")
