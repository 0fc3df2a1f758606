"""The identify service with injected fake clients: parallel fan-out, deadline, degradation, storage."""

import threading

import pytest

from apps.plant_identification.exceptions import (
    NoProviderAvailableError,
    ProviderCircuitOpenError,
    ProviderRateLimitedError,
    ProviderUnavailableError,
)
from apps.plant_identification.models import Identification
from apps.plant_identification.providers import Provider
from apps.plant_identification.services.identify import plant_identify
from apps.plant_identification.types import ProviderAnswer, ProviderStatus, Suggestion
from tests.factories import FakeClient, answering, failing, hanging, make_request

pytestmark = pytest.mark.django_db


def test_both_providers_answer_and_are_merged():
    clients = {
        Provider.PLANT_ID: FakeClient(Provider.PLANT_ID, answering(Provider.PLANT_ID)),
        Provider.PLANTNET: FakeClient(Provider.PLANTNET, answering(Provider.PLANTNET)),
    }
    identification = plant_identify(request=make_request(), clients=clients)

    assert identification.degraded is False
    assert identification.suggestions[0]["sources"] == ["plant_id", "plantnet"]
    statuses = {r.provider: r.status for r in identification.provider_results.all()}
    assert statuses == {"plant_id": "ok", "plantnet": "ok"}


def test_providers_are_called_in_parallel():
    """Each fake waits for the other at a barrier: called one after the other, both would time out."""
    barrier = threading.Barrier(2, timeout=5)

    def meet_then(provider):
        def behaviour():
            barrier.wait()
            return answering(provider)()

        return behaviour

    clients = {p: FakeClient(p, meet_then(p)) for p in Provider}
    identification = plant_identify(request=make_request(), clients=clients)
    assert {r.status for r in identification.provider_results.all()} == {"ok"}


def test_one_provider_out_is_a_degraded_answer():
    clients = {
        Provider.PLANT_ID: FakeClient(Provider.PLANT_ID, answering(Provider.PLANT_ID)),
        Provider.PLANTNET: FakeClient(Provider.PLANTNET, failing(ProviderCircuitOpenError("plantnet", retry_after=12))),
    }
    identification = plant_identify(request=make_request(), clients=clients)

    assert identification.degraded is True
    assert identification.message == "Partial result from Plant.id only (Pl@ntNet circuit open)."
    assert identification.suggestions[0]["sources"] == ["plant_id"]


def test_deadline_turns_a_hanging_provider_into_a_timeout(settings):
    settings.IDENTIFY_DEADLINE = 0.2
    release = threading.Event()
    clients = {
        Provider.PLANT_ID: FakeClient(Provider.PLANT_ID, answering(Provider.PLANT_ID)),
        Provider.PLANTNET: FakeClient(Provider.PLANTNET, hanging(Provider.PLANTNET, release)),
    }
    try:
        identification = plant_identify(request=make_request(), clients=clients)
    finally:
        release.set()
    results = {r.provider: r for r in identification.provider_results.all()}
    assert results["plantnet"].status == ProviderStatus.TIMEOUT
    assert results["plantnet"].error_class == "DeadlineExceeded"
    assert results["plant_id"].status == ProviderStatus.OK


def test_both_out_raises_with_earliest_retry():
    clients = {
        Provider.PLANT_ID: FakeClient(
            Provider.PLANT_ID, failing(ProviderCircuitOpenError("plant_id", retry_after=41.2))
        ),
        Provider.PLANTNET: FakeClient(
            Provider.PLANTNET, failing(ProviderRateLimitedError("plantnet", "quota", retry_after=3600))
        ),
    }
    with pytest.raises(NoProviderAvailableError) as caught:
        plant_identify(request=make_request(), clients=clients)
    assert caught.value.retry_after == 42
    assert Identification.objects.count() == 0


def test_both_out_with_closed_circuits_says_retry_soon():
    clients = {p: FakeClient(p, failing(ProviderUnavailableError(p.value, "HTTP 500"))) for p in Provider}
    with pytest.raises(NoProviderAvailableError) as caught:
        plant_identify(request=make_request(), clients=clients)
    assert caught.value.retry_after == 1


def test_no_provider_configured(settings):
    settings.PLANT_ID_API_KEY = settings.PLANTNET_API_KEY = ""
    with pytest.raises(NoProviderAvailableError, match="No identification provider is configured"):
        plant_identify(request=make_request())


def test_unconfigured_provider_is_not_degradation():
    clients = {Provider.PLANTNET: FakeClient(Provider.PLANTNET, answering(Provider.PLANTNET))}
    identification = plant_identify(request=make_request(), clients=clients)
    assert identification.degraded is False
    statuses = {r.provider: r.status for r in identification.provider_results.all()}
    assert statuses == {"plant_id": "not_configured", "plantnet": "ok"}


def test_an_unexpected_bug_in_a_client_costs_only_that_provider():
    clients = {
        Provider.PLANT_ID: FakeClient(Provider.PLANT_ID, failing(ZeroDivisionError())),
        Provider.PLANTNET: FakeClient(Provider.PLANTNET, answering(Provider.PLANTNET)),
    }
    identification = plant_identify(request=make_request(), clients=clients)
    results = {r.provider: r for r in identification.provider_results.all()}
    assert (results["plant_id"].status, results["plant_id"].error_class) == ("error", "ZeroDivisionError")


def test_a_cached_answer_is_stored_as_cached():
    plantnet = FakeClient(Provider.PLANTNET, answering(Provider.PLANTNET, cached=True))
    identification = plant_identify(request=make_request(), clients={Provider.PLANTNET: plantnet})

    assert identification.provider_results.get(provider="plantnet").cached is True


def test_what_is_stored():
    request = make_request(latitude=1.5, longitude=2.5)
    clients = {
        Provider.PLANT_ID: FakeClient(Provider.PLANT_ID, answering(Provider.PLANT_ID)),
        Provider.PLANTNET: FakeClient(
            Provider.PLANTNET, failing(ProviderUnavailableError("plantnet", "HTTP 502", status_code=502))
        ),
    }
    identification = plant_identify(request=request, clients=clients)
    stored = Identification.objects.get(pk=identification.pk)

    assert stored.image_hashes == [request.images[0].sha256]
    assert (stored.latitude, stored.longitude, stored.organs) == (1.5, 2.5, ["leaf"])
    assert stored.top_scientific_name == "Monstera deliciosa"
    plant_id, plantnet = stored.provider_results.order_by("provider")
    assert plant_id.raw_payload == {"name": "Monstera deliciosa"}
    assert plant_id.latency_ms is not None
    assert (plantnet.status, plantnet.http_status, plantnet.error_class) == ("error", 502, "ProviderUnavailableError")
    assert plantnet.raw_payload is None


def test_the_requests_each_provider_took_are_stored():
    retried = ProviderAnswer(provider=Provider.PLANT_ID, raw={}, suggestions=(), attempts=2)
    clients = {
        Provider.PLANT_ID: FakeClient(Provider.PLANT_ID, lambda: retried),
        Provider.PLANTNET: FakeClient(Provider.PLANTNET, failing(ProviderCircuitOpenError("plantnet", retry_after=5))),
    }
    identification = plant_identify(request=make_request(), clients=clients)
    attempts = {r.provider: r.attempts for r in identification.provider_results.all()}
    assert attempts == {"plant_id": 2, "plantnet": 0}  # a call turned away by its circuit sent nothing


def test_known_keys_are_redacted_from_stored_payloads_and_errors(settings):
    plant_id_key, plantnet_key = settings.PLANT_ID_API_KEY, settings.PLANTNET_API_KEY
    echo = ProviderAnswer(
        provider=Provider.PLANT_ID,
        raw={"token": plant_id_key, "nested": [{plantnet_key: f"sent {plant_id_key}"}], "score": 0.5},
        suggestions=(Suggestion(scientific_name="Monstera deliciosa", score=0.8),),
    )
    clients = {
        Provider.PLANT_ID: FakeClient(Provider.PLANT_ID, lambda: echo),
        # A client redacts its own key from its errors; another provider's key may still be in the text.
        Provider.PLANTNET: FakeClient(
            Provider.PLANTNET, failing(ProviderUnavailableError("plantnet", f"HTTP 502 echoing {plant_id_key}"))
        ),
    }
    identification = plant_identify(request=make_request(), clients=clients)
    results = {r.provider: r for r in Identification.objects.get(pk=identification.pk).provider_results.all()}

    assert results["plant_id"].raw_payload == {
        "token": "[redacted]",
        "nested": [{"[redacted]": "sent [redacted]"}],
        "score": 0.5,
    }
    assert results["plantnet"].error_detail == "HTTP 502 echoing [redacted]"


def test_an_unconfigured_provider_has_no_key_to_redact(settings):
    settings.PLANTNET_API_KEY = ""
    clients = {Provider.PLANT_ID: FakeClient(Provider.PLANT_ID, answering(Provider.PLANT_ID))}
    identification = plant_identify(request=make_request(), clients=clients)
    assert identification.provider_results.get(provider="plant_id").raw_payload == {"name": "Monstera deliciosa"}
