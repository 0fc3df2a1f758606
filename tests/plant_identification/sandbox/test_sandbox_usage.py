"""The sandbox counts what the real services charge: Plant.id's usage_info refuses keys it does not know, and
Pl@ntNet's daily quota counts down in the body and the RateLimit headers, resetting at 00:00 UTC."""

import base64
from datetime import UTC, datetime

import pytest
import requests

from apps.plant_identification.quotas.ratelimit import ratelimit_parse
from apps.plant_identification.sandbox.server import sandbox_start
from tests.factories import FakeClock, jpeg_bytes

pytestmark = pytest.mark.slow  # each test starts a sandbox server
LATE_EVENING = datetime(2026, 12, 2, 23, 0, tzinfo=UTC).timestamp()


@pytest.fixture
def start():
    servers = []

    def started(**options):
        servers.append(sandbox_start(**options))
        return servers[-1]

    yield started
    for server in servers:
        server.shutdown()
        server.server_close()


def photo(color=(40, 160, 40)) -> str:
    return base64.b64encode(jpeg_bytes(color)).decode()


def usage(server, headers):
    return requests.get(f"{server.plant_id_url()}/usage_info", headers=headers, timeout=5)


@pytest.mark.parametrize(
    ("headers", "sentence"),
    [
        ({}, "No api key provided."),
        ({"Api-Key": "unknown-key"}, "The specified api key not found."),
        ({"Api-Key": "inactive-key"}, "The specified api key is not active."),
    ],
)
def test_usage_info_refuses_a_missing_or_unknown_key_in_plain_text(start, headers, sentence):
    server = start()
    response = usage(server, headers)
    assert (response.status_code, response.headers["Content-Type"], response.text) == (401, "text/plain", sentence)
    created = requests.post(
        f"{server.plant_id_url()}/identification", json={"images": [photo()]}, headers=headers, timeout=5
    )
    assert (created.status_code, created.text) == (401, sentence)  # the same on every route


def test_with_a_key_list_only_those_keys_are_known(start):
    server = start(plant_id_keys=frozenset({"mine"}))
    assert usage(server, {"Api-Key": "mine"}).status_code == 200
    other = usage(server, {"Api-Key": "someone-elses"})
    assert (other.status_code, other.text) == (401, "The specified api key not found.")


def test_usage_info_counts_two_credits_with_health(start):
    server = start()
    key = {"Api-Key": "counted"}
    url = f"{server.plant_id_url()}/identification"
    assert requests.post(url, json={"images": [photo()], "health": "all"}, headers=key, timeout=5).ok
    assert requests.post(url, json={"images": [photo()]}, headers=key, timeout=5).ok
    body = usage(server, key).json()
    assert (body["used"]["day"], body["remaining"]["total"]) == (3, 100_000 - 3)
    assert requests.get(f"{server.base_url}/sandbox/_control/stats", timeout=5).json()["plant_id:usage_info"] == 1


def plantnet(server, key="quota-key", color=(40, 160, 40)):
    return requests.post(
        f"{server.plantnet_url()}/identify/all",
        params={"api-key": key},
        files=[("images", ("leaf.jpg", jpeg_bytes(color), "image/jpeg"))],
        data={"organs": ["leaf"]},
        timeout=5,
    )


def test_plantnet_counts_down_in_body_and_headers_and_resets_at_utc_midnight(start):
    clock = FakeClock(LATE_EVENING)
    server = start(plantnet_daily_quota=3, clock=clock)
    first, second = plantnet(server), plantnet(server)
    assert [r.json()["remainingIdentificationRequests"] for r in (first, second)] == [2, 1]
    header = ratelimit_parse(second.headers)
    assert (header.policy, header.remaining, header.reset_s, header.limit, header.window_s) == (
        "dailyQuota",
        1,
        3600.0,
        3,
        86400.0,
    )
    not_found = plantnet(server, color=(128, 128, 128))  # "Species not found" is an identification too
    assert (not_found.status_code, ratelimit_parse(not_found.headers).remaining) == (404, 0)

    for _ in range(2):  # used up: 429s, which do not count
        refused = plantnet(server)
        assert refused.status_code == 429
        assert refused.json() == {"statusCode": 429, "error": "Too Many Requests", "message": "Too Many Requests"}
        assert (ratelimit_parse(refused.headers).remaining, ratelimit_parse(refused.headers).reset_s) == (0, 3600.0)
    assert plantnet(server, key="another-key").json()["remainingIdentificationRequests"] == 2  # per key

    clock.advance(3600)  # 00:00 UTC: a new day's quota
    again = plantnet(server)
    assert (again.status_code, again.json()["remainingIdentificationRequests"]) == (200, 2)
    assert ratelimit_parse(again.headers).reset_s == 86400.0
