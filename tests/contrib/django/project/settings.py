"""Settings of the test project. The database file comes from TEST_PROJECT_DB (a
path the tests choose), so a ``manage.py`` subprocess shares the test's database.

The test variables do not start with ``RELAY_``: relay reads every ``RELAY_*``
variable as a setting and rejects the ones it does not know."""

from __future__ import annotations

import os

SECRET_KEY = "test-only, not secret"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "relay.contrib.django",
    "tests.contrib.django.project.shop",
    "tests.contrib.django.project.billing",
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("TEST_PROJECT_DB", ":memory:"),
        # Worker threads and a second process write to one file.
        "OPTIONS": {"timeout": 20},
    }
}

# relay's settings, as a Django project declares them.
RELAY = {
    "GC_PROJECT_ID": "relay-django-test",
    "TOPIC_PREFIX": os.environ.get("TEST_PROJECT_TOPIC_PREFIX", "djt-"),
}

# Django's task framework on Pub/Sub (relay.contrib.django.tasks); the billing app's tasks.
TASKS = {
    "default": {
        "BACKEND": "relay.contrib.django.tasks.PubSubBackend",
        "QUEUES": ["default", "reports"],
    },
}
