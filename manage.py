#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys

HELP = {"help", "-h", "--help"}


def main() -> None:
    """Run administrative tasks; a configuration error is one clear line, and help works without a secret key."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        settings.INSTALLED_APPS  # noqa: B018 - imports the settings, which validate the environment
    except ImproperlyConfigured as exc:
        if not HELP & set(sys.argv[1:]):
            sys.exit(f"manage.py: {exc}")
        os.environ["DJANGO_DEBUG"] = "true"  # help runs nothing: show it with the development defaults
        try:
            settings.INSTALLED_APPS  # noqa: B018
        except ImproperlyConfigured as again:
            sys.exit(f"manage.py: {again}")
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
