"""The sandbox's Plant.id v3 over HTTP: every request form, option and endpoint, answered in Plant.id's format."""

import base64

import pytest
import requests

from apps.plant_identification.clients import PlantIdClient
from apps.plant_identification.providers import Provider
from apps.plant_identification.sandbox.catalogue import DISEASES, photo_ranking
from apps.plant_identification.sandbox.plant_id_answers import DISEASE_VIEWS, PLANT_VIEWS
from apps.plant_identification.sandbox.server import sandbox_start
from tests.factories import jpeg_bytes, make_request

pytestmark = pytest.mark.slow  # each module starts a sandbox server
GREEN = (40, 160, 40)
KEY = {"Api-Key": "sandbox-test-key"}


def photo(color=GREEN) -> str:
    return base64.b64encode(jpeg_bytes(color)).decode("ascii")


@pytest.fixture
def post(sandbox):
    """POST a create request to the sandbox's Plant.id; returns the response."""

    def send(body=None, path="/identification", headers=KEY, **params):
        return requests.post(
            f"{sandbox.plant_id_url()}{path}",
            json={"images": [photo()], **(body or {})},
            params=params,
            headers=headers,
            timeout=5,
        )

    return send


def get(sandbox, path: str, **params) -> requests.Response:
    return requests.get(f"{sandbox.plant_id_url()}{path}", params=params, headers=KEY, timeout=5)


def test_a_completed_identification_echoes_what_was_asked(post):
    sent = {
        "similar_images": True,
        "latitude": 52.37,
        "longitude": 4.89,
        "health": "all",
        "classification_level": "species",
        "custom_id": 41,
        "datetime": "2026-03-14T10:22:05.412903+00:00",
    }
    response = post(sent, details="common_names", language="de")

    assert response.status_code == 201
    body = response.json()
    assert (body["status"], body["custom_id"], body["model_version"]) == ("COMPLETED", 41, "plant_id:5.0.0")
    assert len(body["access_token"]) == 15
    assert body["completed"] is not None
    expected_input = {key: value for key, value in sent.items() if key != "custom_id"}
    assert {key: body["input"][key] for key in expected_input} == expected_input
    assert body["input"]["images"][0].startswith("https://")  # the stored copy, not the base64 sent
    top = body["result"]["classification"]["suggestions"][0]
    assert top["name"] == photo_ranking(jpeg_bytes(GREEN))[0].name
    assert top["details"]["language"] == "de"


def test_options_not_sent_are_not_echoed(post):
    body = post({}).json()
    assert set(body["input"]) == {"latitude", "longitude", "similar_images", "images", "datetime"}
    assert body["input"]["similar_images"] is False
    assert set(body["result"]) == {"is_plant", "classification"}


def test_every_detail_view_asked_for_is_sent_and_null_when_unavailable(post):
    body = post({}, details=",".join((*PLANT_VIEWS, "no_such_view"))).json()
    details = body["result"]["classification"]["suggestions"][0]["details"]

    assert set(details) == {*PLANT_VIEWS, "language", "entity_id"}  # an unknown name is not a view
    assert details["common_uses"] is None
    assert details["cultural_significance"] is None
    assert set(details["description"]) == {"value", "citation", "license_name", "license_url"}
    assert isinstance(details["gbif_id"], int)
    assert details["rank"] == "species"
    assert set(details["images"][0]) == {"value", "citation", "license_name", "license_url"}


def test_diseases_carry_the_disease_views_asked_for(post):
    body = post({"health": "all"}, details=",".join((*DISEASE_VIEWS, "taxonomy"))).json()
    first = body["result"]["disease"]["suggestions"][0]

    assert first["name"] == DISEASES[0].name
    assert set(first["details"]) == {*DISEASE_VIEWS, "language", "entity_id"}
    assert isinstance(first["details"]["description"], str)  # plain text, unlike a plant's
    assert first["details"]["treatment"]["prevention"]
    plant_details = body["result"]["classification"]["suggestions"][0]["details"]
    assert "local_name" not in plant_details
    assert "taxonomy" in plant_details
    assert body["result"]["disease"]["question"]["options"]["yes"]["suggestion_index"] == 0


@pytest.mark.parametrize("asked", [True, False])
def test_similar_images_for_plants_and_diseases_only_when_asked(post, asked):
    result = post({"similar_images": asked, "health": "all"}).json()["result"]
    suggestions = result["classification"]["suggestions"] + result["disease"]["suggestions"]

    images = [image for suggestion in suggestions for image in suggestion["similar_images"]]
    assert bool(images) is asked
    if asked:
        assert all(len(suggestion["similar_images"]) == 2 for suggestion in suggestions)
        assert {"id", "url", "url_small", "similarity", "license_name", "license_url", "citation"} == set(images[0])
        assert set(images[1]) == {"id", "url", "url_small", "similarity"}  # the optional fields are optional


def test_health_only_answers_the_health_assessment_without_classification(post):
    body = post({"health": "only"}).json()
    assert body["input"]["health"] == "only"
    assert set(body["result"]) == {"is_plant", "is_healthy", "disease"}


def test_the_health_assessment_endpoint_answers_the_same_shape(post):
    response = post({}, path="/health_assessment")
    assert response.status_code == 201
    assert set(response.json()["result"]) == {"is_plant", "is_healthy", "disease"}


def test_health_auto_adds_nothing_for_a_plant_that_looks_healthy(post):
    assert set(post({"health": "auto"}).json()["result"]) == {"is_plant", "classification"}


def test_the_full_disease_list_is_longer(post):
    short = post({"health": "all"}).json()["result"]["disease"]["suggestions"]
    full = post({"health": "all"}, full_disease_list="true").json()["result"]["disease"]["suggestions"]
    assert [item["name"] for item in full] == [disease.name for disease in DISEASES]
    assert len(short) < len(full)


def test_raw_classification_answers_every_level(post):
    body = post({"classification_raw": True, "classification_level": "all"}).json()
    suggestions = body["result"]["classification"]["suggestions"]
    ranking = photo_ranking(jpeg_bytes(GREEN))

    assert set(suggestions) == {"genus", "species", "infraspecies"}
    assert suggestions["species"][0]["name"] == ranking[0].name
    assert suggestions["genus"][0]["name"] == ranking[0].genus
    assert suggestions["infraspecies"] == []
    assert (body["input"]["classification_raw"], body["input"]["classification_level"]) == (True, "all")


def test_genus_level_names_genera(post):
    suggestions = post({"classification_level": "genus"}, details="rank,watering").json()["result"]
    top = suggestions["classification"]["suggestions"][0]
    assert top["name"] == photo_ranking(jpeg_bytes(GREEN))[0].genus
    assert top["details"]["rank"] == "genus"
    assert top["details"]["watering"] is None  # a species-level view


def test_async_answers_created_and_a_retrieval_finds_it_completed(sandbox, post):
    created = post({"custom_id": 9001, "health": "all"}, details="url", **{"async": "true"})
    assert created.status_code == 201
    body = created.json()
    assert (body["status"], body["completed"]) == ("CREATED", None)
    assert "result" not in body

    retrieved = get(sandbox, f"/identification/{body['access_token']}")
    assert retrieved.status_code == 200
    done = retrieved.json()
    assert (done["status"], done["access_token"]) == ("COMPLETED", body["access_token"])
    assert done["completed"] is not None
    assert set(done["result"]) == {"is_plant", "classification", "is_healthy", "disease"}
    assert set(done["result"]["classification"]["suggestions"][0]["details"]) == {"url", "language", "entity_id"}

    again = get(sandbox, "/identification/9001", details="rank").json()  # by custom_id, other views
    assert again["access_token"] == body["access_token"]
    assert set(again["result"]["classification"]["suggestions"][0]["details"]) == {"rank", "language", "entity_id"}


def test_feedback_is_stored_and_delete_forgets(sandbox, post):
    token = post({}).json()["access_token"]
    url = f"{sandbox.plant_id_url()}/identification/{token}"

    feedback = requests.post(f"{url}/feedback", json={"comment": "right", "rating": 5}, headers=KEY, timeout=5)
    assert (feedback.status_code, feedback.json()) == (200, True)
    assert get(sandbox, f"/identification/{token}").json()["feedback"] == {"comment": "right", "rating": 5}
    empty = requests.post(f"{url}/feedback", json={}, headers=KEY, timeout=5)
    assert (empty.status_code, empty.text) == (400, "Empty feedback provided.")

    deleted = requests.delete(url, headers=KEY, timeout=5)
    assert (deleted.status_code, deleted.json()) == (200, True)
    gone = get(sandbox, f"/identification/{token}")
    assert (gone.status_code, gone.headers["Content-Type"], gone.text) == (
        404,
        "text/plain",
        "The requested identification does not exist.",
    )
    assert requests.delete(url, headers=KEY, timeout=5).status_code == 404


def test_photos_as_data_uri_url_or_multipart_file(sandbox, post):
    expected = photo_ranking(jpeg_bytes(GREEN))[0].name
    data_uri = requests.post(
        f"{sandbox.plant_id_url()}/identification",
        json={"images": [f"data:image/jpeg;base64,{photo()}"]},
        headers=KEY,
        timeout=5,
    )
    assert data_uri.json()["result"]["classification"]["suggestions"][0]["name"] == expected

    by_url = [
        requests.post(
            f"{sandbox.plant_id_url()}/identification",
            json={"images": ["https://example.org/leaf.jpg"]},
            headers=KEY,
            timeout=5,
        ).json()
        for _ in range(2)
    ]
    assert (
        by_url[0]["result"]["classification"]["suggestions"][0]["name"]
        == (by_url[1]["result"]["classification"]["suggestions"][0]["name"])
    )

    multipart = requests.post(
        f"{sandbox.plant_id_url()}/identification",
        files=[("photo", ("leaf.jpg", jpeg_bytes(GREEN), "image/jpeg"))],
        data={"health": "all", "similar_images": "true", "latitude": "52.37"},
        headers=KEY,
        timeout=5,
    )
    assert multipart.status_code == 201
    body = multipart.json()
    assert (body["input"]["health"], body["input"]["similar_images"], body["input"]["latitude"]) == ("all", True, 52.37)
    assert body["result"]["classification"]["suggestions"][0]["name"] == expected


@pytest.mark.parametrize(
    ("method", "path", "request_options", "status", "text"),
    [
        ("POST", "/identification", {"data": b"{not json", "headers": KEY}, 400, "Invalid json data"),
        (
            "POST",
            "/identification",
            {"json": {"images": [1]}, "headers": KEY},
            400,
            "Images have to be list of base64 strings",
        ),
        ("POST", "/identification", {"json": {"images": []}, "headers": KEY}, 400, "Missing image data"),
        (
            "POST",
            "/identification",
            {"json": {"images": [base64.b64encode(b"not a picture").decode()]}, "headers": KEY},
            400,
            "Invalid image data",
        ),
        ("POST", "/identification", {"json": {"images": ["x"]}}, 401, "No api key provided."),
        ("GET", "/usage_info", {}, 401, "No api key provided."),
        (
            "GET",
            "/identification/nosuchtoken0000",
            {"headers": KEY},
            404,
            "The requested identification does not exist.",
        ),
        ("GET", "/kb/plants/name_search", {"headers": KEY}, 404, "Not found."),
        ("PUT", "/identification", {"headers": KEY}, 405, "Method not allowed."),
        ("PATCH", "/usage_info", {"headers": KEY}, 405, "Method not allowed."),
    ],
)
def test_errors_are_plain_text_sentences(sandbox, method, path, request_options, status, text):
    response = requests.request(method, f"{sandbox.plant_id_url()}{path}", timeout=5, **request_options)
    assert (response.status_code, response.headers["Content-Type"], response.text) == (status, "text/plain", text)


@pytest.mark.parametrize(
    ("body", "starts"),
    [
        ({"health": "sometimes"}, "Parameter health"),
        ({"classification_level": "family"}, "Parameter classification_level"),
        ({"datetime": "yesterday"}, "Parameter datetime"),
        ({"custom_id": "abc"}, "Parameter custom_id"),
        ({"similar_images": "yes"}, "Parameter similar_images"),
    ],
)
def test_bad_parameters_are_400_sentences(post, body, starts):
    response = post(body)
    assert (response.status_code, response.headers["Content-Type"]) == (400, "text/plain")
    assert response.text.startswith(starts)


def test_a_wrong_method_names_the_allowed_ones(sandbox):
    response = requests.get(f"{sandbox.plant_id_url()}/identification", headers=KEY, timeout=5)
    assert (response.status_code, response.headers["Allow"]) == (405, "POST")


def test_credits_are_counted_per_key_and_run_out_with_a_429():
    server = sandbox_start(plant_id_credits=3)
    try:
        url, mine, other = server.plant_id_url(), {"Api-Key": "mine"}, {"Api-Key": "other"}
        assert requests.post(
            f"{url}/identification", json={"images": [photo()], "health": "all"}, headers=mine, timeout=5
        ).ok
        assert requests.post(f"{url}/identification", json={"images": [photo()]}, headers=mine, timeout=5).ok

        usage = requests.get(f"{url}/usage_info", headers=mine, timeout=5).json()
        assert (usage["used"]["total"], usage["remaining"]["total"], usage["credit_limits"]["total"]) == (3, 0, 3)
        assert usage["can_use_credits"] == {
            "value": False,
            "reason": "The specified api key does not have sufficient number of available credits.",
        }
        refused = requests.post(f"{url}/identification", json={"images": [photo()]}, headers=mine, timeout=5)
        assert (refused.status_code, refused.text) == (429, usage["can_use_credits"]["reason"])
        assert requests.post(f"{url}/identification", json={"images": [photo()]}, headers=other, timeout=5).ok
        assert requests.get(f"{url}/usage_info", headers=other, timeout=5).json()["used"]["total"] == 1
    finally:
        server.shutdown()
        server.server_close()


def test_the_project_client_keeps_every_field_the_sandbox_sends(sandbox):
    request = make_request(color=GREEN)
    client = PlantIdClient(api_key="sandbox-test-key", base_url=sandbox.plant_id_url(), timeout=5)
    answer = client.identify(request)

    top = answer.suggestions[0]
    assert top.scientific_name == photo_ranking(request.images[0].data_for(Provider.PLANT_ID))[0].name
    for key in ("name_authority", "rank", "best_watering", "best_light_condition", "best_soil_type", "taxonomy"):
        assert top.details[key], key
    assert len(top.details["representative_images"]) == 2
    assert all(image["id"] for image in top.details["similar_images"])
    disease = answer.health["diseases"][0]
    assert (disease["name"], disease["local_name"]) == (DISEASES[0].name, DISEASES[0].local_name)
    assert disease["id"]
    assert disease["treatment"]["prevention"]
    assert [image["similarity"] for image in disease["similar_images"]] == [0.812, 0.734]
