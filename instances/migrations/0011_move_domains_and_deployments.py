"""CustomDomain moves to the domains app, Deployment and its revisions, steps and log to the
deployments app: state only, the tables keep their names (see domains/migrations/0001_initial.py
and deployments/migrations/0001_initial.py)."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('instances', '0010_deployment_instance_deadline'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            # The tables stay as they are (Meta.db_table): only Django's model state moves.
            state_operations=[
                migrations.RemoveField(
                    model_name='deployment',
                    name='blueprint',
                ),
                migrations.RemoveField(
                    model_name='deployment',
                    name='instance',
                ),
                migrations.RemoveField(
                    model_name='deployment',
                    name='plan',
                ),
                migrations.RemoveField(
                    model_name='deployment',
                    name='region',
                ),
                migrations.RemoveField(
                    model_name='deployment',
                    name='tenant',
                ),
                migrations.RemoveField(
                    model_name='deploymentrevision',
                    name='deployment',
                ),
                migrations.RemoveField(
                    model_name='deploymentlogline',
                    name='deployment',
                ),
                migrations.RemoveField(
                    model_name='deploymentstep',
                    name='deployment',
                ),
                migrations.RemoveField(
                    model_name='deploymentstep',
                    name='revision',
                ),
                migrations.DeleteModel(
                    name='CustomDomain',
                ),
                migrations.DeleteModel(
                    name='DeploymentLogLine',
                ),
                migrations.DeleteModel(
                    name='Deployment',
                ),
                migrations.DeleteModel(
                    name='DeploymentRevision',
                ),
                migrations.DeleteModel(
                    name='DeploymentStep',
                ),
            ],
            database_operations=[],
        ),
    ]
