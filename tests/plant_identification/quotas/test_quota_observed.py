"""What a provider last said of its quota: each field as last said, fleet-wide, recorded without a read."""

import pytest
from django.core.cache import cache

from apps.plant_identification.providers import Provider
from apps.plant_identification.quotas.observed import FIELDS, quota_observed, quota_record


@pytest.fixture(autouse=True, params=["redis", "in-process"])
def quota_cache(request, settings):
    """The shared cache the observations live in: Redis, or the in-process cache of a run without Redis."""
    if request.param == "in-process":
        settings.CACHES = {**settings.CACHES, "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache.delete_many([f"plantid:quota:{provider.value}:{field}" for provider in Provider for field in FIELDS])


def test_nothing_observed_yet_is_none():
    assert quota_observed(Provider.PLANTNET) is None


def test_an_observation_that_says_less_keeps_what_an_earlier_one_said():
    quota_record(
        Provider.PLANTNET,
        {"remaining": 10, "limit": 500, "reset_at": 900.0, "observed_at": 100.0, "source": "response"},
    )
    quota_record(Provider.PLANTNET, {"remaining": 9, "reset_at": 900.0, "observed_at": 160.0, "source": "response"})

    assert quota_observed(Provider.PLANTNET) == {
        "remaining": 9,
        "limit": 500,
        "reset_at": 900.0,
        "observed_at": 160.0,
        "source": "response",
    }


def test_a_field_said_to_be_unknown_replaces_what_was_known():
    quota_record(Provider.PLANT_ID, {"remaining": 40, "period": "day", "observed_at": 1.0, "source": "usage_info"})
    quota_record(Provider.PLANT_ID, {"remaining": None, "period": None, "observed_at": 2.0, "source": "usage_info"})

    assert quota_observed(Provider.PLANT_ID) == {
        "remaining": None,
        "period": None,
        "observed_at": 2.0,
        "source": "usage_info",
    }


def test_providers_are_kept_apart():
    quota_record(Provider.PLANTNET, {"remaining": 3, "observed_at": 1.0, "source": "response"})

    assert quota_observed(Provider.PLANT_ID) is None


def test_an_unknown_field_is_refused_and_logged_without_raising(caplog):
    quota_record(Provider.PLANTNET, {"remaining": 3, "left_today": 3, "observed_at": 1.0, "source": "response"})

    assert quota_observed(Provider.PLANTNET) is None
    assert "not a quota field: ['left_today']" in caplog.text
