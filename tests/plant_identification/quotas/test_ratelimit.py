"""RateLimit / RateLimit-Policy headers, in Pl@ntNet's form and the draft forms around it."""

import pytest

from apps.plant_identification.quotas.ratelimit import RateLimit, ratelimit_parse


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            {"RateLimit": '"dailyQuota";r=12;t=3600', "RateLimit-Policy": '"dailyQuota";q=500;w=86400;pk=:YWJj=:'},
            RateLimit("dailyQuota", 12, 3600.0, 500, 86400.0),
        ),
        ({"RateLimit": '"dailyQuota";r=0'}, RateLimit("dailyQuota", 0, None, None, None)),  # no t
        ({"RateLimit": '"dailyQuota";t=60'}, RateLimit("dailyQuota", None, 60.0, None, None)),  # no r
        ({"RateLimit-Policy": '"dailyQuota";q=500;w=86400'}, RateLimit("dailyQuota", None, None, 500, 86400.0)),
        ({"RateLimit": "limit=100, remaining=7, reset=30"}, RateLimit(None, 7, 30.0, 100, None)),  # draft 03-07
        (
            {"RateLimit-Limit": "100", "RateLimit-Remaining": "3", "RateLimit-Reset": "9"},
            RateLimit(None, 3, 9.0, 100, None),
        ),
        (  # several policies: the one with the fewest left
            {"RateLimit": '"hour";r=50;t=100, "day";r=4;t=5000', "RateLimit-Policy": '"hour";q=60, "day";q=500'},
            RateLimit("day", 4, 5000.0, 500, None),
        ),
        ({"RateLimit": '"dailyQuota";r=abc;t=-5'}, RateLimit("dailyQuota", None, None, None, None)),  # garbage
        ({}, RateLimit()),
    ],
)
def test_headers_parse(headers, expected):
    assert ratelimit_parse(headers) == expected


def test_a_response_without_headers_says_nothing():
    assert not ratelimit_parse({"Content-Type": "application/json"}).known
