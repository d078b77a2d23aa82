"""SubscriptionPlan moved to the core (orchestrio/migrations/0003): state only, the table stays."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('billing', '0006_scrub_audit_data'),
        ('orchestrio', '0003_move_subscription_plan'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            # The table stays as it is (Meta.db_table): only Django's model state moves.
            state_operations=[
                migrations.DeleteModel(
                    name='SubscriptionPlan',
                ),
            ],
            database_operations=[],
        ),
    ]
