"""``manage.py devserver``: runserver, with the provider sandbox when no provider key is configured."""

import os

from django.conf import settings
from django.core.management.commands.runserver import Command as RunserverCommand

from apps.plant_identification.providers import configured_specs, provider_registry
from apps.plant_identification.sandbox import SANDBOX_KEY
from apps.plant_identification.sandbox.server import sandbox_start

BANNER = """
******************************************************************************
  NO PROVIDER API KEY IS SET: identifications come from the local PROVIDER
  SANDBOX at {url}, not from Plant.id or Pl@ntNet.
  Set PLANT_ID_API_KEY / PLANTNET_API_KEY to use the real services.
******************************************************************************
"""


class Command(RunserverCommand):
    help = "Start the development server; without provider keys, start and use the provider sandbox too."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--sandbox-port", type=int, default=8001)

    def handle(self, *args, **options):
        if not configured_specs() and not os.environ.get("RUN_MAIN"):
            server = sandbox_start(port=options["sandbox_port"])
            sandbox = {
                "PLANT_ID_API_KEY": SANDBOX_KEY,
                "PLANT_ID_API_URL": server.plant_id_url(),
                "PLANTNET_API_KEY": SANDBOX_KEY,
                "PLANTNET_API_URL": server.plantnet_url(),
            }
            os.environ.update(sandbox)  # the autoreloader's child process inherits these
            for name, value in sandbox.items():
                setattr(settings, name, value)
            provider_registry.cache_clear()  # plain setattr sends no setting_changed
            self.stdout.write(self.style.WARNING(BANNER.format(url=server.base_url)))
        options.pop("sandbox_port")
        super().handle(*args, **options)
