"""The budget and poll settings fail fast at start-up, naming the variable."""

import pytest

from tests.plant_identification.test_settings import django_check

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PLANT_ID_DAILY_CREDIT_BUDGET", "lots"),
        ("PLANT_ID_DAILY_CREDIT_BUDGET", "0"),
        ("PLANT_ID_DAILY_CREDIT_BUDGET", "-3"),
        ("PLANT_ID_USAGE_POLL_INTERVAL", "often"),
        ("PLANT_ID_USAGE_POLL_INTERVAL", "-1"),
    ],
)
def test_malformed_values_stop_start_up_naming_the_variable(variable, value):
    result = django_check(DJANGO_DEBUG="true", **{variable: value})
    assert result.returncode != 0
    assert variable in result.stderr


def test_a_positive_budget_starts():
    assert django_check(DJANGO_DEBUG="true", PLANT_ID_DAILY_CREDIT_BUDGET="250").returncode == 0
