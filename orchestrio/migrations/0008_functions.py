from django.db import migrations, models


def plans_with_functions(apps, schema_editor):
    """The seeded paid plans allow more functions (billing/catalogue.py); operators' own plans
    keep the default (2) until they say otherwise in the admin."""
    SubscriptionPlan = apps.get_model("orchestrio", "SubscriptionPlan")
    for plan_id, most in (("pro", 20), ("team", 100)):
        SubscriptionPlan.objects.filter(pk=plan_id).update(max_functions=most)


class Migration(migrations.Migration):

    dependencies = [
        ('orchestrio', '0007_addon_backup_plans'),
    ]

    operations = [
        migrations.AddField(
            model_name='subscriptionplan',
            name='max_functions',
            field=models.PositiveIntegerField(blank=True, default=2, help_text='Functions (docs/functions.md). Empty: unlimited.', null=True),
        ),
        migrations.RunPython(plans_with_functions, migrations.RunPython.noop),
    ]
