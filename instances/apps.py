from django.apps import AppConfig


class InstancesConfig(AppConfig):
    name = "instances"
    verbose_name = "Instances"

    def ready(self) -> None:
        from orchestrio.health import register_detail

        from .providers.sandbox import sandbox_report

        register_detail("sandbox", sandbox_report)
