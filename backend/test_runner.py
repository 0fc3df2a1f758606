"""Makes ``python manage.py test`` run the pytest suite (same tests, same configuration)."""

import os
import subprocess
import sys


class PytestTestRunner:
    """A Django test runner that runs pytest in a fresh process, so pytest.ini picks the test settings."""

    def __init__(self, verbosity: int = 1, failfast: bool = False, keepdb: bool = False, **_kwargs) -> None:
        self.verbosity = verbosity
        self.failfast = failfast
        self.keepdb = keepdb

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--keepdb", action="store_true", help="Preserve the test database between runs.")

    def run_tests(self, test_labels, **_kwargs) -> int:
        args = [sys.executable, "-m", "pytest", *test_labels]
        if self.verbosity == 0:
            args.append("--quiet")
        elif self.verbosity > 1:
            args.append("--verbose")
        if self.failfast:
            args.append("--exitfirst")
        if self.keepdb:
            args.append("--reuse-db")
        env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
        sys.exit(subprocess.call(args, env=env))  # noqa: S603 - our own interpreter and pytest
