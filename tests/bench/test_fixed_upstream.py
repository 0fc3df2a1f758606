"""The benchmarks' fixed-latency stand-in speaks both providers' wire format: the real clients parse its answers."""

import threading
from http.server import ThreadingHTTPServer

import pytest
import requests

from apps.plant_identification.clients import PlantIdClient, PlantNetClient
from bench.fixed_upstream import Handler
from tests.factories import make_request


@pytest.fixture
def upstream():
    Handler.latency = 0.0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.django_db
def test_plant_id_and_plantnet_clients_parse_what_it_answers(upstream):
    plant_id = PlantIdClient(api_key="bench", base_url=f"{upstream}/plant-id/api/v3", timeout=5)
    plantnet = PlantNetClient(api_key="bench", base_url=f"{upstream}/plantnet/v2", timeout=5, project="all")

    plant_id_answer = plant_id.identify(make_request())
    plantnet_answer = plantnet.identify(make_request())

    assert plant_id_answer.suggestions[0].scientific_name == "Monstera deliciosa"
    assert plantnet_answer.suggestions
    assert not plant_id_answer.cached
    assert not plantnet_answer.cached


def test_anything_else_is_a_json_404(upstream):
    response = requests.post(f"{upstream}/elsewhere", data=b"x", timeout=5)
    assert (response.status_code, response.json()) == (404, {"error": "not found"})
