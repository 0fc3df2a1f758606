"""backend/env.py: number variables read as Python writes numbers, finite, and naming the variable when not."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from backend.env import env_float, env_nonnegative_float

NAME = "PLANTID_TEST_SECONDS"
READS = [env_float, env_nonnegative_float]


@pytest.mark.parametrize("read", READS)
@pytest.mark.parametrize(("raw", "value"), [("2.5", 2.5), (" 10 ", 10.0), ("1e1", 10.0), ("2.5E-1", 0.25)])
def test_a_number_is_read_as_written(monkeypatch, read, raw, value):
    monkeypatch.setenv(NAME, raw)
    assert read(NAME, 1.0) == value


@pytest.mark.parametrize("read", READS)
def test_an_unset_or_empty_variable_is_the_default(monkeypatch, read):
    monkeypatch.delenv(NAME, raising=False)
    assert read(NAME, 1.5) == 1.5
    monkeypatch.setenv(NAME, "")
    assert read(NAME, 1.5) == 1.5


@pytest.mark.parametrize("read", READS)
@pytest.mark.parametrize("raw", ["inf", "-inf", "nan", "Infinity", "1e999"])
def test_a_number_that_is_not_finite_is_refused(monkeypatch, read, raw):
    monkeypatch.setenv(NAME, raw)
    with pytest.raises(ImproperlyConfigured, match=f"^{NAME} must be a finite number, got '{raw}'$"):
        read(NAME, 1.0)


@pytest.mark.parametrize("read", READS)
@pytest.mark.parametrize("raw", ["abc", "1,5", "5s"])
def test_a_malformed_number_is_refused(monkeypatch, read, raw):
    monkeypatch.setenv(NAME, raw)
    with pytest.raises(ImproperlyConfigured, match=f"^{NAME} is malformed \\(float expected\\)"):
        read(NAME, 1.0)
