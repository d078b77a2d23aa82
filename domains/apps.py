from django.apps import AppConfig


class DomainsConfig(AppConfig):
    name = "domains"
    verbose_name = "Custom domains"

    def ready(self) -> None:
        from instances import hooks, pages
        from orchestrio import hooks as core_hooks

        from . import links, services, views

        hooks.on_instance_destroying(services.instance_destroying)
        hooks.on_instance_destroyed(services.instance_destroyed)
        pages.register(route="domain", view=views.instance_domain, name="domain", tab="Domain")
        pages.register(route="domain/live", view=views.instance_domain_live, name="domain-live")  # before the actions
        pages.register(route="domain/<str:action>", view=views.instance_domain_action, name="domain-action")
        hooks.on_instance_for_host(services.instance_for_host)
        core_hooks.on_object_links("custom_domain", links.domain_links)
