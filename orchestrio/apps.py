from django.apps import AppConfig
from django.conf import settings


class OrchestrioConfig(AppConfig):
    name = "orchestrio"
    verbose_name = "Tenancy and access"

    def ready(self) -> None:
        from . import faults, outbound  # noqa: F401 - register their system checks
        from .api import schema  # noqa: F401 - registers the OpenAPI authentication extensions

        if settings.EMBEDDED_REDIS:
            from .redis import install_embedded_queue

            install_embedded_queue()
