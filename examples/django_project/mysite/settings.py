"""Settings of the example: relay is one installed app and one RELAY dict."""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "example only, not secret"
DEBUG = True
USE_TZ = True

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "relay.contrib.django",  # runrelay, showsubscriptions, relayplan; the DB middleware
    "orders",
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        # EXAMPLE_DB lets the tests use a temporary file.
        "NAME": os.environ.get("EXAMPLE_DB", BASE_DIR / "db.sqlite3"),
        "OPTIONS": {"timeout": 20},  # the worker's handler threads write concurrently
    }
}

RELAY = {
    "GC_PROJECT_ID": "django-example",
    "SUB_PREFIX": "example",
}
