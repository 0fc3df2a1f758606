"""The sandbox's memory of Plant.id identifications: bounded, found by access token or custom_id, credits per key."""

import base64
import json

from apps.plant_identification.sandbox.plant_id_answers import StoredIdentification
from apps.plant_identification.sandbox.plant_id_request import plant_id_request
from apps.plant_identification.sandbox.store import PlantIdStore
from tests.factories import jpeg_bytes


def stored(token: str, custom_id: int | None = None) -> StoredIdentification:
    body = {"images": [base64.b64encode(jpeg_bytes()).decode()], "custom_id": custom_id}
    request = plant_id_request(json.dumps(body).encode(), "application/json", {})
    return StoredIdentification(token, request, health_only=False, not_plant=False, created=1.0, completed=1.4)


def test_the_oldest_identification_is_forgotten_beyond_the_capacity():
    store = PlantIdStore(credits=10, capacity=2)
    for token, custom_id in (("first", 1), ("second", 2), ("third", 3)):
        store.add(stored(token, custom_id))

    assert store.retrieve("first", now=2.0) is None
    assert store.retrieve("1", now=2.0) is None  # its custom_id went with it
    assert store.retrieve("3", now=2.0).access_token == "third"


def test_a_custom_id_finds_the_latest_identification_that_carries_it():
    store = PlantIdStore(credits=10)
    store.add(stored("older", 5))
    store.add(stored("newer", 5))

    assert store.retrieve("5", now=2.0).access_token == "newer"
    assert store.delete("newer")
    assert store.retrieve("5", now=2.0) is None
    assert store.retrieve("older", now=2.0).access_token == "older"


def test_an_asynchronous_identification_is_completed_when_retrieved():
    store = PlantIdStore(credits=10)
    store.add(StoredIdentification("pending", stored("x").request, health_only=False, not_plant=False, created=1.0))

    assert store.retrieve("pending", now=5.0).completed == 5.0


def test_credits_are_taken_per_key_until_they_run_out():
    store = PlantIdStore(credits=3)
    assert store.charge("a", 2)
    assert not store.charge("a", 2)  # one left: nothing is taken
    assert store.charge("a", 1)
    assert store.charge("b", 3)
    assert store.usage("a")["remaining"]["total"] == 0
    store.reset_credits()
    assert store.usage("a")["used"]["total"] == 0
