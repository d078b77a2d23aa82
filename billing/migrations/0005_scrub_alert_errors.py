"""Deliveries recorded before the outbound guard kept the receiver's response body and exception
text in their errors (`HTTP 401: <an internal service's answer>`): reduce them to the fixed
reasons the deliveries record now."""

import re

from django.db import migrations

_STATUS = re.compile(r"^HTTP (\d{3})\b")


def _reason(error: str) -> str:
    status = _STATUS.match(error)
    if status:
        return f"HTTP {status.group(1)}"
    lowered = error.lower()
    if "refused" in lowered:
        return "connection refused"
    if "timeout" in lowered or "timed out" in lowered:
        return "timed out"
    return "connection failed"


def scrub(apps, schema_editor):
    for model, field in ((apps.get_model("billing", "AlertDelivery"), "last_error"), (apps.get_model("billing", "AlertAttempt"), "error")):
        rows = model.objects.exclude(**{field: ""}).only("pk", field)
        for row in rows.iterator(chunk_size=500):
            scrubbed = _reason(getattr(row, field))
            if scrubbed != getattr(row, field):
                model.objects.filter(pk=row.pk).update(**{field: scrubbed})


class Migration(migrations.Migration):
    dependencies = [("billing", "0004_subscriptions_alerts")]

    operations = [migrations.RunPython(scrub, migrations.RunPython.noop)]
