from django.apps import AppConfig


class InstancesConfig(AppConfig):
    name = "instances"
    verbose_name = "Instances"

    def ready(self) -> None:
        from orchestrio.health import register_detail

        from . import deployments, hooks
        from .providers.sandbox import sandbox_report

        hooks.on_machine_started(deployments.deployment_reapply_secrets)
        register_detail("sandbox", sandbox_report)
