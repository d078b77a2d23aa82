from django.apps import AppConfig


class RuntimeConfig(AppConfig):
    name = "runtime"
    verbose_name = "Agent runtime"

    def ready(self) -> None:
        from instances import hooks, pages

        from . import views
        from .choices import POLICY_CONFIG_KEY

        hooks.on_managed_config_key(POLICY_CONFIG_KEY, "PUT /api/v1/instances/{instance_id}/model-policy")
        pages.register(route="chat", view=views.instance_chat, name="chat", tab="Chat")
        pages.register(route="chat/<str:action>", view=views.instance_chat_action, name="chat-action")
