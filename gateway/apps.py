from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "gateway"
    verbose_name = "Gateway"

    def ready(self):
        from . import origin  # noqa: F401 - registers the origin layout's startup checks
