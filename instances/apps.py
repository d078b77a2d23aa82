from django.apps import AppConfig


class InstancesConfig(AppConfig):
    name = "instances"
    verbose_name = "Instances"

    def ready(self) -> None:
        from orchestrio.health import register_detail

        from . import deployments, hooks
        from .providers.sandbox import sandbox_report

        hooks.on_machine_started(deployments.deployment_reapply_secrets)
        hooks.on_instance_running(deployments.deployment_instance_running)
        register_detail("sandbox", sandbox_report)
