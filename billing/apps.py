from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing and quotas"

    def ready(self) -> None:
        from gateway import hooks as gateway_hooks
        from orchestrio import hooks, quotas

        from . import alerts, links, metering, selectors

        hooks.provide("subscription_status", selectors.subscription_status)
        hooks.on_tenant_events(alerts.emit_many)
        quotas.provide_period(selectors.subscription_period)
        quotas.on_count_executions(selectors.proxied_executions, tenants=selectors.proxied_tenants)
        gateway_hooks.on_request_proxied(metering.record_execution)
        hooks.on_object_links("alert_delivery", links.delivery_links)
        hooks.on_object_links("alert_config", links.alert_config_links)
        hooks.on_object_links("subscription", links.subscription_links)
