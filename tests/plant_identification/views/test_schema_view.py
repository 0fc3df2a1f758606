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
