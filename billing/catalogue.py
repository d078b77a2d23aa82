"""The subscription plans a fresh installation starts with. They are data: operators edit them in
the admin; the seed never overwrites an existing row."""

SUBSCRIPTION_PLANS = [
    {
        "id": "starter",
        "name": "Starter",
        "description": "For trying Orchestrio: a few instances, no custom domains.",
        "price_cents_per_month": 0,
        "max_instances": 3,
        "max_running_instances": 2,
        "executions_per_month": 10_000,
        "api_requests_per_minute": 120,
        "max_tokens": 5,
        "max_deployments": 2,
        "feature_custom_domains": False,
        "feature_oidc_gateway": False,
        "feature_deployment_rollback": False,
        "feature_hibernation": False,
        "feature_addons": False,
        "max_addons": 0,
        "addon_backup_retention_days": 0,
        "addon_backups_per_day": 0,
        "sort_order": 1,
    },
    {
        "id": "pro",
        "name": "Pro",
        "description": "For production: custom domains, OIDC gateway, rollbacks.",
        "price_cents_per_month": 4_900,
        "max_instances": 20,
        "max_running_instances": 10,
        "executions_per_month": 100_000,
        "api_requests_per_minute": 600,
        "max_tokens": 25,
        "max_deployments": 20,
        "feature_custom_domains": True,
        "feature_oidc_gateway": True,
        "feature_deployment_rollback": True,
        "feature_hibernation": True,
        "feature_addons": True,
        "max_addons": 5,
        "addon_backup_retention_days": 7,
        "addon_backups_per_day": 5,
        "sort_order": 2,
    },
    {
        "id": "team",
        "name": "Team",
        "description": "For fleets: unlimited executions and higher limits.",
        "price_cents_per_month": 19_900,
        "max_instances": 100,
        "max_running_instances": 50,
        "executions_per_month": None,
        "api_requests_per_minute": 1_200,
        "max_tokens": 100,
        "max_deployments": 100,
        "feature_custom_domains": True,
        "feature_oidc_gateway": True,
        "feature_deployment_rollback": True,
        "feature_hibernation": True,
        "feature_addons": True,
        "max_addons": 20,
        "addon_backup_retention_days": 30,
        "addon_backups_per_day": 20,
        "sort_order": 3,
    },
]


def seed(SubscriptionPlan) -> None:
    # An early migration seeds with the historical model: fields added later (the add-ons'
    # limits) are left to the migration that adds them (orchestrio 0005).
    known = {field.name for field in SubscriptionPlan._meta.get_fields()}
    for row in SUBSCRIPTION_PLANS:
        SubscriptionPlan.objects.get_or_create(id=row["id"], defaults={key: value for key, value in row.items() if key in known})
