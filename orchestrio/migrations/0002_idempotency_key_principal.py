"""Idempotency keys are scoped per principal (the API token, or the console user), not per tenant.

Existing rows get principal "" (unknown): no principal matches it, so their stored responses are
replayed to nobody, and orchestrio/api/idempotency.py answers 409 for their keys until they
expire (IDEMPOTENCY_KEY_TTL_HOURS), so a retry across the upgrade does not run twice. The old
constraint (tenant, key) is stricter than the new one, so existing rows satisfy it. Both columns
have constant defaults: on PostgreSQL 11+ adding them does not rewrite the table.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('orchestrio', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='idempotencykey',
            name='principal',
            field=models.CharField(blank=True, default='', max_length=64),
        ),
        migrations.AddField(
            model_name='idempotencykey',
            name='response_body_encrypted',
            field=models.TextField(blank=True, default='', editable=False),
        ),
        migrations.AddConstraint(
            model_name='idempotencykey',
            constraint=models.UniqueConstraint(fields=('tenant', 'principal', 'key'), name='idempotency_principal_key_unique'),
        ),
        migrations.RemoveConstraint(
            model_name='idempotencykey',
            name='idempotency_tenant_key_unique',
        ),
    ]
