"""The sandbox's Pl@ntNet v2 over HTTP, driven as Pl@ntNet's own Python example does (it has no SDK):
a prepared multipart POST with repeated ``images`` file parts, ``organs`` in the form data, the key in the query."""

import re

import pytest
import requests

from apps.plant_identification.sandbox.catalogue import species_for
from apps.plant_identification.sandbox.server import sandbox_start
from tests.factories import jpeg_bytes

pytestmark = pytest.mark.slow  # each module starts a sandbox server
GREEN = (40, 160, 40)
API_KEY = "sandbox-test-key"


@pytest.fixture
def photo_files(tmp_path):
    """Open photo files, as the example opens them: ``files(2)`` gives two ("images", (path, file)) parts."""
    opened = []

    def files(count=1, data=None):
        parts = []
        for index in range(count):
            path = tmp_path / f"image_{index + 1}.jpeg"
            path.write_bytes(data or jpeg_bytes(GREEN))
            handle = path.open("rb")
            opened.append(handle)
            parts.append(("images", (str(path), handle)))
        return parts

    yield files
    for handle in opened:
        handle.close()


def identify(server, files, organs, project="all", **options) -> requests.Response:
    """The example's request: ``requests.Request`` prepared and sent by a ``Session``."""
    query = "".join(f"&{name.replace('_', '-')}={value}" for name, value in options.items())
    url = f"{server.plantnet_url()}/identify/{project}?api-key={API_KEY}{query}"
    prepared = requests.Request("POST", url=url, files=files, data={"organs": organs})
    with requests.Session() as session:
        return session.send(prepared.prepare(), timeout=5)


def remaining_in(response: requests.Response) -> int:
    return int(re.search(r"r=(\d+)", response.headers["RateLimit"]).group(1))


def test_the_official_example_request_is_answered(sandbox, photo_files):
    files = photo_files(2)
    response = identify(sandbox, files, ["flower", "leaf"])

    assert response.status_code == 200
    body = response.json()
    assert body["query"]["project"] == "all"
    assert body["query"]["organs"] == ["flower", "leaf"]
    assert (body["query"]["includeRelatedImages"], body["query"]["noReject"], body["query"]["type"]) == (
        False,
        False,
        "kt",
    )
    assert [organ["filename"] for organ in body["predictedOrgans"]] == [path for _, (path, _) in files]
    assert [organ["image"] for organ in body["predictedOrgans"]] == body["query"]["images"]
    top = body["results"][0]
    assert top["species"]["scientificNameWithoutAuthor"] == species_for(jpeg_bytes(GREEN))[0].name
    assert body["bestMatch"] == top["species"]["scientificName"]
    assert top["species"]["scientificName"].startswith(top["species"]["scientificNameWithoutAuthor"] + " ")
    assert set(top["species"]["genus"]) == {"scientificNameWithoutAuthor", "scientificNameAuthorship", "scientificName"}
    assert isinstance(top["gbif"]["id"], str)
    scores = [result["score"] for result in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert all("images" not in result for result in body["results"])  # not asked for: absent, not empty
    assert (body["language"], body["preferedReferential"]) == ("en", "k-world-flora")
    assert body["remainingIdentificationRequests"] == remaining_in(response)
    assert "q=500" in response.headers["RateLimit-Policy"]


def test_each_identification_uses_one_of_the_daily_quota(sandbox, photo_files):
    first = identify(sandbox, photo_files(), ["leaf"]).json()["remainingIdentificationRequests"]
    second = identify(sandbox, photo_files(), ["leaf"]).json()["remainingIdentificationRequests"]
    assert second == first - 1


def test_query_options_shape_the_answer(sandbox, photo_files):
    body = identify(
        sandbox,
        photo_files(),
        ["auto"],
        project="k-world-flora",
        nb_results=2,
        lang="fr",
        include_related_images="true",
        no_reject="true",
        type="legacy",
    ).json()

    assert len(body["results"]) == 2
    assert body["language"] == "fr"
    assert body["query"] == {
        "project": "k-world-flora",
        "images": body["query"]["images"],
        "organs": ["auto"],
        "includeRelatedImages": True,
        "noReject": True,
        "type": "legacy",
    }
    image = body["results"][0]["images"][0]
    assert set(image["url"]) == {"o", "m", "s"}
    assert {"organ", "author", "license", "date", "citation"} <= set(image)
    assert body["predictedOrgans"][0]["organ"] == "leaf"  # "auto" is answered with the organ it saw


@pytest.mark.parametrize(
    ("count", "organs", "options", "message"),
    [
        (1, ["leaf", "bark"], {}, '"organs" must contain one organ per image'),
        (6, ["leaf"] * 6, {}, '"images" must contain between 1 and 5 items'),
        (1, ["root"], {}, '"organs[0]" must be one of [leaf, flower, fruit, bark, auto, habit, other]'),
        (2, ["habit", "other"], {}, '"organs" must contain at least one of [leaf, flower, fruit, bark, auto]'),
        (1, ["leaf"], {"lang": "xx"}, '"lang" must be one of [en, fr, es, pt, de, it, nl, cs]'),
        (1, ["leaf"], {"nb_results": "0"}, '"nb-results" must be greater than or equal to 1'),
        (1, ["leaf"], {"nb_results": "many"}, '"nb-results" must be a number'),
        (1, ["leaf"], {"type": "newest"}, '"type" must be one of [kt, legacy]'),
        (1, ["leaf"], {"no_reject": "maybe"}, '"no-reject" must be a boolean'),
    ],
)
def test_bad_requests_are_boom_400s(sandbox, photo_files, count, organs, options, message):
    response = identify(sandbox, photo_files(count), organs, **options)
    assert response.status_code == 400
    assert response.json() == {"statusCode": 400, "error": "Bad Request", "message": message}


def test_a_key_in_the_body_instead_of_the_query_is_unauthorized(sandbox, photo_files):
    url = f"{sandbox.plantnet_url()}/identify/all"
    response = requests.post(url, files=photo_files(), data={"organs": ["leaf"], "api-key": API_KEY}, timeout=5)
    assert response.status_code == 401
    assert response.json() == {"statusCode": 401, "error": "Unauthorized", "message": "Invalid API key"}


def test_only_jpeg_and_png_are_accepted(sandbox, photo_files):
    response = identify(sandbox, photo_files(data=b"GIF89a" + b"\0" * 64), ["leaf"])
    assert response.status_code == 415
    assert response.json()["error"] == "Unsupported Media Type"


def test_a_grey_photo_is_species_not_found_unless_no_reject(sandbox, photo_files):
    grey = jpeg_bytes((128, 128, 128))
    rejected = identify(sandbox, photo_files(data=grey), ["leaf"])
    assert (rejected.status_code, rejected.json()) == (
        404,
        {"statusCode": 404, "error": "Not Found", "message": "Species not found"},
    )
    assert identify(sandbox, photo_files(data=grey), ["leaf"], no_reject="true").status_code == 200


def test_remote_images_by_get(sandbox):
    urls = ["https://example.org/leaf.jpg", "https://example.org/flower.jpg"]
    params = {"api-key": API_KEY, "images": urls, "organs": ["leaf", "flower"]}
    first = requests.get(f"{sandbox.plantnet_url()}/identify/all", params=params, timeout=5)
    again = requests.get(f"{sandbox.plantnet_url()}/identify/all", params=params, timeout=5)

    assert first.status_code == 200
    assert first.json()["query"]["images"] == urls
    assert first.json()["results"][0]["species"] == again.json()["results"][0]["species"]


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/projects"), ("DELETE", "/identify/all"), ("PUT", "/identify/all")]
)
def test_unserved_routes_are_boom_404s(sandbox, method, path):
    response = requests.request(method, f"{sandbox.plantnet_url()}{path}", params={"api-key": API_KEY}, timeout=5)
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {"statusCode": 404, "error": "Not Found", "message": "Not Found"}


def test_the_daily_quota_runs_out_with_a_boom_429(photo_files):
    server = sandbox_start(plantnet_daily_quota=1)
    try:
        assert identify(server, photo_files(), ["leaf"]).status_code == 200
        refused = identify(server, photo_files(), ["leaf"])
        assert refused.status_code == 429
        assert refused.json() == {"statusCode": 429, "error": "Too Many Requests", "message": "Too Many Requests"}
        assert remaining_in(refused) == 0
    finally:
        server.shutdown()
        server.server_close()
