"""Deployment, its revisions, steps and log, moved from the instances app with their tables
(instances_deployment…): state only."""

import deployments.models
import django.core.serializers.json
import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


MODELS = ['deployment', 'deploymentrevision', 'deploymentstep', 'deploymentlogline']


def relabel_content_types(apps, schema_editor):
    """Existing content types (their permissions, admin log entries) follow the models to this app."""
    ContentType = apps.get_model("contenttypes", "ContentType")
    taken = set(ContentType.objects.filter(app_label="deployments", model__in=MODELS).values_list("model", flat=True))
    ContentType.objects.filter(app_label="instances", model__in=[m for m in MODELS if m not in taken]).update(app_label="deployments")


def unrelabel_content_types(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    ContentType.objects.filter(app_label="deployments", model__in=MODELS).update(app_label="instances")


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
                    name='Deployment',
                    fields=[
                        ('id', models.CharField(default=deployments.models.new_deployment_id, editable=False, max_length=32, primary_key=True, serialize=False)),
                        ('name', models.CharField(max_length=50)),
                        ('environment', models.CharField(choices=[('production', 'Production'), ('staging', 'Staging'), ('development', 'Development')], default='production', max_length=16)),
                        ('status', models.CharField(choices=[('provisioning', 'Provisioning'), ('updating', 'Updating'), ('rolling_back', 'Rolling Back'), ('active', 'Active'), ('failed', 'Failed'), ('deleting', 'Deleting'), ('deleted', 'Deleted')], default='provisioning', max_length=16)),
                        ('current_revision', models.PositiveIntegerField(default=0, help_text='The revision in force on the instance.')),
                        ('target_revision', models.PositiveIntegerField(blank=True, help_text='The revision being applied.', null=True)),
                        ('error', models.TextField(blank=True)),
                        ('instance_deadline', models.DateTimeField(blank=True, null=True)),
                        ('created_by', models.CharField(max_length=254)),
                        ('log_seq', models.PositiveIntegerField(default=0, editable=False)),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('deleted_at', models.DateTimeField(blank=True, null=True)),
                        ('blueprint', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='deployments', to='instances.blueprint')),
                        ('instance', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='deployments', to='instances.instance')),
                        ('plan', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='deployments', to='instances.instanceplan')),
                        ('region', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='deployments', to='instances.region')),
                        ('tenant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='deployments', to='orchestrio.tenant')),
                    ],
                    options={
                        'db_table': 'instances_deployment',
                        'ordering': ['-created_at'],
                    },
                ),
                migrations.CreateModel(
                    name='DeploymentLogLine',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('seq', models.PositiveIntegerField()),
                        ('level', models.CharField(choices=[('debug', 'Debug'), ('info', 'Info'), ('warning', 'Warning'), ('error', 'Error')], default='info', max_length=8)),
                        ('message', models.TextField()),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('deployment', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='log_lines', to='deployments.deployment')),
                    ],
                    options={
                        'db_table': 'instances_deploymentlogline',
                        'ordering': ['deployment_id', 'seq'],
                    },
                ),
                migrations.CreateModel(
                    name='DeploymentRevision',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('number', models.PositiveIntegerField()),
                        ('config', models.JSONField(blank=True, default=dict, encoder=django.core.serializers.json.DjangoJSONEncoder)),
                        ('secrets_encrypted', models.TextField(blank=True, editable=False)),
                        ('secret_keys', models.JSONField(blank=True, default=list)),
                        ('reason', models.CharField(max_length=255)),
                        ('created_by', models.CharField(max_length=254)),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('status', models.CharField(default='pending', max_length=16)),
                        ('applied_at', models.DateTimeField(blank=True, null=True)),
                        ('healthy', models.BooleanField(blank=True, null=True)),
                        ('error', models.TextField(blank=True)),
                        ('deployment', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='revisions', to='deployments.deployment')),
                    ],
                    options={
                        'db_table': 'instances_deploymentrevision',
                        'ordering': ['deployment_id', '-number'],
                    },
                ),
                migrations.CreateModel(
                    name='DeploymentStep',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(max_length=32)),
                        ('position', models.PositiveSmallIntegerField()),
                        ('status', models.CharField(choices=[('pending', 'Pending'), ('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed'), ('skipped', 'Skipped')], default='pending', max_length=16)),
                        ('message', models.TextField(blank=True)),
                        ('started_at', models.DateTimeField(blank=True, null=True)),
                        ('finished_at', models.DateTimeField(blank=True, null=True)),
                        ('deployment', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='steps', to='deployments.deployment')),
                        ('revision', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='steps', to='deployments.deploymentrevision')),
                    ],
                    options={
                        'db_table': 'instances_deploymentstep',
                        'ordering': ['revision_id', 'position'],
                    },
                ),
                migrations.AddIndex(
                    model_name='deployment',
                    index=models.Index(condition=models.Q(('instance_deadline__isnull', False)), fields=['instance_deadline'], name='deployment_awaiting_instance'),
                ),
                migrations.AddConstraint(
                    model_name='deployment',
                    constraint=models.UniqueConstraint(condition=models.Q(('deleted_at__isnull', True)), fields=('tenant', 'name'), name='deployment_tenant_name_unique'),
                ),
                migrations.AddConstraint(
                    model_name='deploymentlogline',
                    constraint=models.UniqueConstraint(fields=('deployment', 'seq'), name='deployment_log_seq_unique'),
                ),
                migrations.AddConstraint(
                    model_name='deploymentrevision',
                    constraint=models.UniqueConstraint(fields=('deployment', 'number'), name='deployment_revision_unique'),
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(relabel_content_types, unrelabel_content_types),
    ]
