from django.db import migrations


def seed(apps, schema_editor):
    from instances.catalogue import seed as seed_catalogue

    seed_catalogue(
        apps.get_model("instances", "InstancePlan"),
        apps.get_model("instances", "Region"),
        apps.get_model("instances", "Blueprint"),
    )


class Migration(migrations.Migration):
    dependencies = [("instances", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
