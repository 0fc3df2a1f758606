"""One process calling Pl@ntNet for a fixed photo (run by test_single_flight.py): prints its answer as JSON.

Arguments: the Pl@ntNet base URL (the sandbox's) and the client timeout in seconds. The test's Redis comes
from REDIS_URL, as in every process of the fleet.
"""

import json
import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django.setup()

from apps.plant_identification.clients import PlantNetClient  # noqa: E402
from apps.plant_identification.sandbox import SANDBOX_KEY  # noqa: E402
from tests.factories import make_request  # noqa: E402

client = PlantNetClient(api_key=SANDBOX_KEY, base_url=sys.argv[1], timeout=float(sys.argv[2]), project="all")
answer = client.identify(make_request(color=(90, 140, 60)))
print(json.dumps({"names": [s.scientific_name for s in answer.suggestions], "cached": answer.cached}), flush=True)
