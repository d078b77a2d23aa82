"""Whose Idempotency-Key an instance was created with (keys are scoped per principal). Existing
rows get "" (unknown); GET /instances/by-idempotency-key/{key} still finds them for any principal
of the tenant, as before (what it shows every member may read). A constant default: on
PostgreSQL 11+ the column is added without rewriting the table."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('instances', '0007_instance_socket_path'),
    ]

    operations = [
        migrations.AddField(
            model_name='instance',
            name='idempotency_principal',
            field=models.CharField(blank=True, default='', max_length=64),
        ),
    ]
