from django.apps import AppConfig


class OrchestrioConfig(AppConfig):
    name = "orchestrio"
    verbose_name = "Tenancy and access"

    def ready(self) -> None:
        from . import faults, outbound  # noqa: F401 - register their system checks
        from .api import schema  # noqa: F401 - registers the OpenAPI authentication extensions
