"""Django application configuration for plant identification."""

from django.apps import AppConfig


class PlantIdentificationConfig(AppConfig):
    """Registers the plant identification app."""

    name = "apps.plant_identification"
    verbose_name = "Plant identification"
    default_auto_field = "django.db.models.BigAutoField"
