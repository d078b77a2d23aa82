from django.apps import AppConfig


class FunctionsConfig(AppConfig):
    name = "functions"
    verbose_name = "Functions"

    def ready(self) -> None:
        from orchestrio import hooks

        from . import checks, links  # noqa: F401 - checks registers the startup checks

        hooks.on_object_links("function", links.function_links)
