from django.db import migrations


def seed(apps, schema_editor):
    from runtime.catalogue import seed as seed_catalogue

    seed_catalogue(apps.get_model("runtime", "LanguageModel"))


class Migration(migrations.Migration):
    dependencies = [("runtime", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
