"""Provider API keys never reach the database, the API or the admin, even when a provider echoes one back."""

import io
import json

import pytest
from django.conf import settings
from django.urls import reverse
from hypothesis import given
from hypothesis import settings as settings_for_hypothesis
from hypothesis import strategies as st

from apps.plant_identification.models import Identification, ProviderResult
from apps.plant_identification.services.records import REDACTED, secrets_redact
from tests.factories import PLANT_ID_URL, PLANTNET_URL, fixture_json, jpeg_bytes

pytestmark = pytest.mark.django_db


def echoing(body: dict, key: str) -> dict:
    """``body`` with ``key`` echoed as a value, inside a longer string, nested in a list, and as a key."""
    return {
        **body,
        "api_key": key,
        "echo": {"headers": [f"Api-Key: {key}"], key: {"seen": True}},
    }


@pytest.fixture
def echoing_providers(mocked_responses):
    """Both providers answer their recorded bodies, each echoing its own key and the other's."""
    keys = [settings.PLANT_ID_API_KEY, settings.PLANTNET_API_KEY]
    plant_id = echoing(fixture_json("plant_id_identification_ok.json"), keys[0])
    plant_id["input"]["note"] = f"forwarded with {keys[1]}"
    suggestion = plant_id["result"]["classification"]["suggestions"][0]
    suggestion["details"]["description"]["value"] += f" (key {keys[0]})"  # reaches the merged suggestions
    mocked_responses.post(PLANT_ID_URL, json=plant_id, status=201)
    mocked_responses.post(PLANTNET_URL, json=echoing(fixture_json("plantnet_identify_ok.json"), keys[1]), status=200)
    return keys


def identify(client):
    image = io.BytesIO(jpeg_bytes())
    image.name = "leaf.jpg"
    return client.post(reverse("plant_identification:identify"), {"images": [image]}, format="multipart")


def assert_no_key(text: str, keys: list[str]) -> None:
    for key in keys:
        assert key not in text


def test_an_echoed_key_is_redacted_from_what_is_stored_and_answered(api_client, echoing_providers):
    response = identify(api_client)
    assert response.status_code == 200, response.content
    assert_no_key(response.content.decode(), echoing_providers)
    assert "Evergreen climbing aroid" in response.content.decode()

    for result in ProviderResult.objects.all():
        stored = json.dumps(result.raw_payload)
        assert_no_key(stored, echoing_providers)
        assert result.raw_payload["api_key"] == "[redacted]"
        assert result.raw_payload["echo"] == {"headers": ["Api-Key: [redacted]"], "[redacted]": {"seen": True}}
    plant_id = ProviderResult.objects.get(provider="plant_id").raw_payload
    assert plant_id["input"]["note"] == "forwarded with [redacted]"

    read_back = api_client.get(reverse("plant_identification:identification-detail", args=[response.json()["id"]]))
    assert_no_key(read_back.content.decode(), echoing_providers)


def test_an_answer_served_from_the_cache_is_redacted_too(api_client, echoing_providers):
    identify(api_client)
    again = identify(api_client)
    assert again.json()["providers"]["plant_id"]["cached"] is True
    cached = ProviderResult.objects.get(identification_id=again.json()["id"], provider="plant_id")
    assert_no_key(json.dumps(cached.raw_payload), echoing_providers)


def test_the_admin_never_shows_an_echoed_key(admin_client, api_client, echoing_providers):
    identification_id = identify(api_client).json()["id"]
    assert Identification.objects.filter(pk=identification_id).exists()
    page = admin_client.get(reverse("admin:plant_identification_identification_change", args=[identification_id]))
    assert page.status_code == 200
    assert "[redacted]" in page.content.decode()
    assert_no_key(page.content.decode(), echoing_providers)
    changelist = admin_client.get(reverse("admin:plant_identification_identification_changelist"))
    assert_no_key(changelist.content.decode(), echoing_providers)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


def walked(value, secrets):
    """The plain definition: every string, keys included, with each secret replaced in turn."""
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {walked(key, secrets): walked(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [walked(item, secrets) for item in value]
    return value


@settings_for_hypothesis(max_examples=300, deadline=None)
@given(value=JSON_VALUES, secrets=st.lists(st.text(min_size=1, max_size=6), max_size=3), planted=st.booleans())
def test_redaction_matches_replacing_in_every_string(value, secrets, planted):
    """The fast path (a scan of the JSON text) never misses a secret, escaped characters and all."""
    secrets = sorted(set(secrets), key=len, reverse=True)
    if planted and secrets:
        value = {"payload": value, "echo": f'key={secrets[0]}\n"quoted" \\ é \u0001'}
    assert secrets_redact(value, secrets) == walked(value, secrets)
