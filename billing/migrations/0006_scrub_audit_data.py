"""Audit events recorded before members' view of the log was considered carried the alert webhook
URL (`alerts.update`, and staff's admin changes and deletes of an alert config) and Stripe ids
(staff's admin changes of a subscription). Every member reads the log: take those values out."""

from django.db import migrations

HIDDEN_VALUES = {
    "admin.alertconfig.": ("webhook_url", "signing_secret_prefix"),
    "admin.subscription.": ("stripe_customer_id", "stripe_subscription_id"),
}


def _scrubbed(action: str, data: dict) -> dict | None:
    """The event's data without the hidden values, or None when nothing changes."""
    if not isinstance(data, dict):
        return None
    if action == "alerts.update" and "webhook_url" in data:
        data = {key: value for key, value in data.items() if key != "webhook_url"}
        return {"webhook_url_changed": True, **data}
    for prefix, names in HIDDEN_VALUES.items():
        if action.startswith(prefix):
            values = data.get("values")
            changed = dict(data)
            if isinstance(values, dict) and any(name in values for name in names):
                changed["values"] = {key: value for key, value in values.items() if key not in names}
            if prefix == "admin.alertconfig." and "repr" in data:
                changed["repr"] = "alert webhook config"
            return changed if changed != data else None
    return None


def scrub(apps, schema_editor):
    ActivityEvent = apps.get_model("orchestrio", "ActivityEvent")
    events = ActivityEvent.objects.filter(action__in=["alerts.update"]) | ActivityEvent.objects.filter(action__startswith="admin.alertconfig.") | ActivityEvent.objects.filter(action__startswith="admin.subscription.")
    for event in events.only("pk", "action", "data").iterator(chunk_size=500):
        data = _scrubbed(event.action, event.data)
        if data is not None:
            ActivityEvent.objects.filter(pk=event.pk).update(data=data)


class Migration(migrations.Migration):
    dependencies = [("billing", "0005_scrub_alert_errors"), ("orchestrio", "0001_initial")]

    operations = [migrations.RunPython(scrub, migrations.RunPython.noop)]
