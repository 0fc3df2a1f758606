"""One Circuit row per provider, so the admin lists every circuit from the start."""

from django.db import migrations

PROVIDERS = ("plant_id", "plantnet")


def create_circuits(apps, schema_editor):
    circuit = apps.get_model("plant_identification", "Circuit")
    for provider in PROVIDERS:
        circuit.objects.get_or_create(provider=provider)


class Migration(migrations.Migration):
    dependencies = [("plant_identification", "0001_initial")]

    operations = [migrations.RunPython(create_circuits, migrations.RunPython.noop)]
