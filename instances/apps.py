from django.apps import AppConfig


class InstancesConfig(AppConfig):
    name = "instances"
    verbose_name = "Instances"

    def ready(self) -> None:
        from orchestrio import hooks
        from orchestrio.health import register_detail
        from orchestrio.metrics import register_database_figures

        from . import links, metrics, pages, selectors, views
        from .providers.sandbox import sandbox_report

        register_detail("sandbox", sandbox_report)
        pages.register(route="monitoring", view=views.instance_monitoring, name="monitoring", tab="Monitoring")
        pages.register(route="monitoring/live", view=views.instance_monitoring_live, name="monitoring-live")
        register_database_figures(metrics.database_figures)
        hooks.on_tenant_usage(selectors.instance_counts)
        hooks.provide("instance_exists", selectors.instance_exists)
        hooks.on_object_links("instance", links.instance_links)
