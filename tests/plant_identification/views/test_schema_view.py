"""The OpenAPI schema documents every endpoint without generator errors."""

import pytest
from django.urls import reverse


@pytest.mark.django_db
def test_schema_lists_the_api(anonymous_client, capsys):
    response = anonymous_client.get(reverse("schema"), HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = response.content.decode()
    for path in ("/api/v1/plant-identification/identify/", "/health/", "/api/v1/plant-identification/circuits/"):
        assert path in schema
    assert "Error [" not in capsys.readouterr().err


@pytest.mark.django_db
def test_schema_tells_the_truth(anonymous_client):
    schema = anonymous_client.get(reverse("schema"), HTTP_ACCEPT="application/json", format="json").json()
    paths, components = schema["paths"], schema["components"]["schemas"]
    identify = paths["/api/v1/plant-identification/identify/"]["post"]
    images = components["IdentifyInputRequest"]["properties"]["images"]
    assert images["items"] == {"type": "string", "format": "binary"}
    assert set(identify["responses"]) == {"200", "400", "401", "403", "411", "413", "415", "422", "429", "503"}
    encoding = identify["requestBody"]["content"]["multipart/form-data"]["encoding"]
    assert encoding["images"]["contentType"] == "image/jpeg, image/png, image/webp, image/heic, image/heif"
    assert "links" in identify["responses"]["200"]
    read = paths["/api/v1/plant-identification/identifications/{identification_id}/"]["get"]
    assert set(read["responses"]) == {"200", "401", "404"}
    override = paths["/api/v1/plant-identification/circuits/{provider}/open/"]["post"]
    assert {"400", "401", "403", "404"} <= set(override["responses"])
    assert override["parameters"][0]["schema"]["enum"] == ["plant_id", "plantnet"]
    assert components["CircuitOverrideInputRequest"]["properties"]["reason"]["minLength"] == 1
    assert components["ProviderEnum"]["enum"] == ["plant_id", "plantnet"]
    assert "not_configured" in components["ProviderEntryStatusEnum"]["enum"]
    assert set(components["ErrorOutput"]["properties"]) == {"detail", "errors"}
    for name in ("IdentificationOutput", "CircuitListOutput", "HealthOutput", "UnavailableOutput"):
        assert components[name]["type"] == "object", name
        assert components[name]["properties"], name


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["docs", "redoc"])
def test_docs_are_served_without_a_cdn(anonymous_client, name):
    page = anonymous_client.get(reverse(name)).content.decode()
    assert "drf_spectacular_sidecar" in page
    assert "cdn.jsdelivr.net" not in page
    assert "unpkg.com" not in page
