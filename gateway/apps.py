from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "gateway"
    verbose_name = "Gateway"

    def ready(self):
        from instances import pages
        from orchestrio import hooks
        from orchestrio.metrics import register_database_figures

        from . import origin  # noqa: F401 - registers the origin layout's startup checks
        from . import links, metrics, views

        pages.register(route="gateway", view=views.instance_gateway, name="gateway", tab="Gateway")
        pages.register(route="traffic", view=views.instance_traffic, name="traffic", tab="Traffic")
        pages.register(route="traffic/live", view=views.instance_traffic_live, name="traffic-live")
        pages.register(route="open", view=views.instance_open, name="open")  # the Open button (gateway/grants.py)
        hooks.on_object_links("gateway_policy", links.policy_links)
        register_database_figures(metrics.database_figures)
