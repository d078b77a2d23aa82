"""SubscriptionPlan (plans and their limits) moves from the billing app to the core with its
table (billing_subscriptionplan): state only; billing/migrations/0007 drops it from billing's state."""

import django.core.validators
import django.db.models.deletion
from django.db import migrations, models


MODELS = ['subscriptionplan']


def relabel_content_types(apps, schema_editor):
    """Existing content types (their permissions, admin log entries) follow the models to this app."""
    ContentType = apps.get_model("contenttypes", "ContentType")
    taken = set(ContentType.objects.filter(app_label="orchestrio", model__in=MODELS).values_list("model", flat=True))
    ContentType.objects.filter(app_label="billing", model__in=[m for m in MODELS if m not in taken]).update(app_label="orchestrio")


def unrelabel_content_types(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    ContentType.objects.filter(app_label="orchestrio", model__in=MODELS).update(app_label="billing")


class Migration(migrations.Migration):

    dependencies = [
        ('billing', '0006_scrub_audit_data'),
        ('contenttypes', '0002_remove_content_type_name'),
        ('orchestrio', '0002_idempotency_key_principal'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            # The table stays as it is (Meta.db_table): only Django's model state moves.
            state_operations=[
                migrations.CreateModel(
                    name='SubscriptionPlan',
                    fields=[
                        ('id', models.CharField(max_length=32, primary_key=True, serialize=False, validators=[django.core.validators.RegexValidator('^[a-z0-9][a-z0-9-]*$')], verbose_name='plan id')),
                        ('name', models.CharField(max_length=64)),
                        ('description', models.CharField(blank=True, max_length=255)),
                        ('price_cents_per_month', models.PositiveIntegerField(default=0)),
                        ('stripe_price_id', models.CharField(blank=True, help_text='Stripe Price id for Checkout.', max_length=255)),
                        ('max_instances', models.PositiveIntegerField(blank=True, help_text='Live instances (any state).', null=True)),
                        ('max_running_instances', models.PositiveIntegerField(blank=True, null=True)),
                        ('executions_per_month', models.PositiveIntegerField(blank=True, help_text='Empty: unlimited.', null=True)),
                        ('api_requests_per_minute', models.PositiveIntegerField(blank=True, help_text='Per-caller ceiling across all endpoints.', null=True)),
                        ('max_tokens', models.PositiveIntegerField(blank=True, help_text='Active API tokens.', null=True)),
                        ('max_deployments', models.PositiveIntegerField(blank=True, null=True)),
                        ('feature_custom_domains', models.BooleanField(default=False)),
                        ('feature_oidc_gateway', models.BooleanField(default=False)),
                        ('feature_deployment_rollback', models.BooleanField(default=False)),
                        ('feature_hibernation', models.BooleanField(default=False)),
                        ('is_public', models.BooleanField(default=True, help_text='Listed in the public catalogue.')),
                        ('sort_order', models.PositiveSmallIntegerField(default=0)),
                    ],
                    options={
                        'db_table': 'billing_subscriptionplan',
                        'ordering': ['sort_order', 'id'],
                    },
                ),
                migrations.AlterField(
                    model_name='tenant',
                    name='plan',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='tenants', to='orchestrio.subscriptionplan'),
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(relabel_content_types, unrelabel_content_types),
    ]
