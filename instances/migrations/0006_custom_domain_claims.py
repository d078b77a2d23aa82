from django.db import migrations, models


class Migration(migrations.Migration):
    """A name is no longer reserved by the first tenant to ask, only by the one that proved it.

    Safe for existing rows: they satisfied "one live row per name", which is stricter than "one
    active live row per name". The new index is built before the old one goes, so a name is never
    without its guard.
    """

    dependencies = [
        ("instances", "0005_instance_list_page_index"),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="customdomain",
            constraint=models.UniqueConstraint(
                condition=models.Q(("removed_at__isnull", True), ("status", "active")), fields=("domain",), name="custom_domain_active_unique"
            ),
        ),
        migrations.RemoveConstraint(
            model_name="customdomain",
            name="custom_domain_live_unique",
        ),
    ]
