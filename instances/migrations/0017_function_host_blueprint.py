from django.db import migrations


def seed(apps, schema_editor):
    from instances import catalogue

    catalogue.seed(apps.get_model("instances", "InstancePlan"), apps.get_model("instances", "Region"), apps.get_model("instances", "Blueprint"))


class Migration(migrations.Migration):
    dependencies = [("instances", "0016_instance_managed_by")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
