"""Idempotency keys are scoped per principal (the API token, or the console user), not per tenant.

Existing rows get principal "" (unknown): no principal matches it, so their stored responses are
replayed to nobody, and orchestrio/api/idempotency.py answers 409 for their keys until they
expire (IDEMPOTENCY_KEY_TTL_HOURS), so a retry across the upgrade does not run twice. The old
constraint (tenant, key) is stricter than the new one, so existing rows satisfy it. Both columns
have constant defaults: on PostgreSQL 11+ adding them does not rewrite the table.

Since existing rows are never replayed again, their stored responses are dropped: some are new
API tokens in plaintext, which are now only ever kept encrypted (`response_body_encrypted`).
"""

from django.db import migrations, models


def drop_unreplayable_responses(apps, schema_editor):
    apps.get_model("orchestrio", "IdempotencyKey").objects.filter(principal="").update(response_body=None)


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
        migrations.RunPython(drop_unreplayable_responses, migrations.RunPython.noop),
    ]
