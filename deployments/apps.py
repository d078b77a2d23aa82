from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    name = "deployments"
    verbose_name = "Deployments"

    def ready(self) -> None:
        from instances import hooks

        from . import services

        hooks.on_machine_started(services.deployment_reapply_secrets)
        hooks.on_instance_running(services.deployment_instance_running)
