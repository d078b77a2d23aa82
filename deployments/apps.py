from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    name = "deployments"
    verbose_name = "Deployments"

    def ready(self) -> None:
        from instances import hooks, pages
        from orchestrio import hooks as core_hooks

        from . import links, services

        hooks.on_machine_started(services.deployment_reapply_secrets)
        # A deployment's own secrets win over an add-on's URL of the same name.
        hooks.on_environment("deployment", services.deployment_environment, priority=10)
        hooks.on_instance_running(services.deployment_instance_running)
        hooks.on_reconcile(services.reconcile_deployments)
        core_hooks.on_object_links("deployment", links.deployment_links)
        pages.register_related(links.instance_deployments)
