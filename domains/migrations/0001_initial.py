"""CustomDomain, moved from the instances app with its table (instances_customdomain): state only."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


MODELS = ['customdomain']


def relabel_content_types(apps, schema_editor):
    """Existing content types (their permissions, admin log entries) follow the models to this app."""
    ContentType = apps.get_model("contenttypes", "ContentType")
    taken = set(ContentType.objects.filter(app_label="domains", model__in=MODELS).values_list("model", flat=True))
    ContentType.objects.filter(app_label="instances", model__in=[m for m in MODELS if m not in taken]).update(app_label="domains")


def unrelabel_content_types(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    ContentType.objects.filter(app_label="domains", model__in=MODELS).update(app_label="instances")


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('contenttypes', '0002_remove_content_type_name'),
        ('instances', '0011_move_domains_and_deployments'),
        ('orchestrio', '0002_idempotency_key_principal'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            # The tables stay as they are (Meta.db_table): only Django's model state moves.
            state_operations=[
                migrations.CreateModel(
                    name='CustomDomain',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('domain', models.CharField(help_text='Lowercase, IDNA (punycode) form.', max_length=253)),
                        ('status', models.CharField(choices=[('pending_dns', 'Pending Dns'), ('verifying', 'Verifying'), ('active', 'Active'), ('failed', 'Failed'), ('removing', 'Removing')], default='pending_dns', max_length=16)),
                        ('verification_token', models.CharField(editable=False, max_length=64)),
                        ('error', models.TextField(blank=True)),
                        ('resolved', models.JSONField(blank=True, default=dict, help_text='What the last check found in DNS.')),
                        ('attempts', models.PositiveIntegerField(default=0)),
                        ('last_checked_at', models.DateTimeField(blank=True, null=True)),
                        ('next_check_at', models.DateTimeField(blank=True, db_index=True, null=True)),
                        ('activated_at', models.DateTimeField(blank=True, null=True)),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('removed_at', models.DateTimeField(blank=True, null=True)),
                        ('instance', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='custom_domains', to='instances.instance')),
                        ('tenant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='custom_domains', to='orchestrio.tenant')),
                    ],
                    options={
                        'db_table': 'instances_customdomain',
                        'ordering': ['-created_at'],
                        'indexes': [models.Index(fields=['domain', 'status'], name='custom_domain_ask')],
                        'constraints': [models.UniqueConstraint(condition=models.Q(('removed_at__isnull', True), ('status', 'active')), fields=('domain',), name='custom_domain_active_unique'), models.UniqueConstraint(condition=models.Q(('removed_at__isnull', True)), fields=('instance',), name='custom_domain_one_per_instance')],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(relabel_content_types, unrelabel_content_types),
    ]
