"""The official Plant.id SDK (kindwise-api-client) drives the sandbox over HTTP: every answer parses into the
SDK's own models, carrying the values the sandbox meant to send."""

import os
import re
from datetime import UTC, datetime

import pytest

from apps.plant_identification.sandbox.catalogue import DISEASES, photo_ranking
from tests.factories import jpeg_bytes

pytestmark = pytest.mark.slow  # each module starts a sandbox server
PHOTO = jpeg_bytes((40, 160, 40))
EXPECTED = photo_ranking(PHOTO)  # the catalogue's ranking for the photo, best first
PLANT_DETAILS = ["common_names", "url", "name_authority", "rank", "toxicity", "best_light_condition", "watering"]
DISEASE_DETAILS = ["local_name", "description", "treatment", "cause"]


@pytest.fixture(scope="module")
def kindwise():
    """The SDK package. Importing it loads a .env file into the environment, so the environment is put back."""
    saved = dict(os.environ)
    try:
        import kindwise
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return kindwise


@pytest.fixture(scope="module")
def sdk(kindwise, sandbox):
    """An SDK client whose every URL points at the sandbox (the SDK builds them all from ``host``)."""

    def client(api_key="sandbox-sdk-key"):
        api = kindwise.PlantApi(api_key=api_key)
        api.host = sandbox.plant_id_url().removesuffix("/api/v3")
        return api

    return client


def identify(api, **options):
    # max_image_size=None: the SDK sends the photo as it is, so the sandbox sees the bytes the test ranked
    return api.identify(PHOTO, max_image_size=None, **options)


def test_identify_with_details_and_health_parses_into_the_sdk_models(kindwise, sdk):
    sent_at = datetime(2026, 3, 14, 10, 22, 5, tzinfo=UTC)
    identification = identify(
        sdk(),
        details=PLANT_DETAILS,
        disease_details=DISEASE_DETAILS,
        health="all",
        latitude_longitude=(52.37, 4.89),
        custom_id=7,
        date_time=sent_at,
    )

    assert isinstance(identification, kindwise.PlantIdentification)
    assert identification.status is kindwise.models.IdentificationStatus.COMPLETED
    assert identification.custom_id == 7
    assert (identification.input.latitude, identification.input.longitude) == (52.37, 4.89)
    assert (identification.input.datetime, identification.input.similar_images) == (sent_at, True)
    assert identification.completed is not None
    result = identification.result
    assert (result.is_plant.binary, result.is_plant.threshold) == (True, 0.5)
    top = result.classification.suggestions[0]
    assert isinstance(top, kindwise.models.Suggestion)
    assert (top.name, top.probability) == (EXPECTED[0].name, 0.9104)
    assert top.details["name_authority"] == EXPECTED[0].name_authority
    assert top.details["toxicity"] == EXPECTED[0].toxicity
    assert top.details["watering"] == dict(zip(("min", "max"), EXPECTED[0].watering, strict=True))
    # one details list names plant and disease views alike, and "description" is both
    assert set(top.details) == {*PLANT_DETAILS, "description", "language", "entity_id"}
    assert all(isinstance(image, kindwise.models.SimilarImage) for image in top.similar_images)
    assert top.similar_images[0].license_url.startswith("https://creativecommons.org/")
    assert isinstance(result.is_healthy, kindwise.models.ResultEvaluation)
    assert (result.is_healthy.binary, result.is_healthy.threshold) == (True, 0.525)
    disease = result.disease.suggestions[0]
    assert disease.name == DISEASES[0].name
    assert disease.details["local_name"] == DISEASES[0].local_name
    assert disease.details["treatment"] == DISEASES[0].treatment
    assert isinstance(disease.similar_images[0], kindwise.models.SimilarImage)


def test_health_only_parses_as_a_health_assessment(kindwise, sdk):
    assessment = identify(sdk(), health="only", disease_details="local_name")

    assert isinstance(assessment, kindwise.HealthAssessment)
    assert assessment.result.is_healthy.threshold == 0.525
    assert [s.name for s in assessment.result.disease.suggestions] == [d.name for d in DISEASES[:2]]
    assert assessment.result.disease.suggestions[1].details["local_name"] == DISEASES[1].local_name


def test_the_health_assessment_endpoint_with_the_full_disease_list(kindwise, sdk):
    assessment = sdk().health_assessment(PHOTO, max_image_size=None, full_disease_list=True)

    assert isinstance(assessment, kindwise.HealthAssessment)
    assert [s.name for s in assessment.result.disease.suggestions] == [d.name for d in DISEASES]


def test_raw_classification_parses_per_level(kindwise, sdk):
    identification = identify(sdk(), classification_raw=True, classification_level="all")

    assert isinstance(identification, kindwise.RawPlantIdentification)
    levels = identification.result.classification.suggestions
    assert levels.genus[0].name == EXPECTED[0].genus
    assert levels.species[0].name == EXPECTED[0].name
    assert levels.infraspecies == []


def test_async_then_retrieve(kindwise, sdk):
    api = sdk()
    created = identify(api, asynchronous=True, details="url", custom_id=8)

    assert created.status is kindwise.models.IdentificationStatus.CREATED
    assert (created.result, created.completed) == (None, None)
    done = api.get_identification(created.access_token, details="rank")
    assert isinstance(done, kindwise.PlantIdentification)
    assert done.status is kindwise.models.IdentificationStatus.COMPLETED
    assert done.completed is not None
    top = done.result.classification.suggestions[0]
    assert (top.name, top.details["rank"]) == (EXPECTED[0].name, "species")
    assert "url" not in top.details  # the views asked for now
    assert api.get_identification(8).access_token == created.access_token  # by custom_id


def test_usage_info_counts_the_credits_used(kindwise, sdk):
    api = sdk("sandbox-sdk-usage-key")
    identify(api, health="all")  # an identification with health costs two credits
    identify(api)

    usage = api.usage_info()
    assert isinstance(usage, kindwise.UsageInfo)
    assert (usage.used.total, usage.remaining.total, usage.credit_limits.total) == (3, 99_997, 100_000)
    assert (usage.active, usage.can_use_credits.value, usage.can_use_credits.reason) == (True, True, None)


def test_feedback_then_delete(kindwise, sdk):
    api = sdk()
    identification = identify(api)

    assert api.feedback(identification, comment="right plant", rating=5) is True
    assert api.get_identification(identification.access_token).feedback == kindwise.models.Feedback(
        rating=5, comment="right plant"
    )
    assert api.delete_identification(identification) is True
    with pytest.raises(ValueError, match=re.escape("The requested identification does not exist.")):
        api.get_identification(identification.access_token)


def test_an_error_reaches_the_sdk_as_the_plain_text_sentence(sdk):
    with pytest.raises(ValueError, match=re.escape("No api key provided.")):
        identify(sdk(api_key=""))
