"""Django is set up once per test session, on the test project in ``project/``
with a SQLite file in a temporary directory (``TEST_PROJECT_DB``), migrated.

Django can be configured once per process, so every Django test shares this
project; tests that write rows delete them afterwards (the ``orders`` fixture).
``relay.contrib.django``'s ``ready()`` installs relay's process-wide app from
the project's ``RELAY``; each test leaves it as it found it, and it is dropped
(``relay.reset()``) when this package's tests are done, so the tests that
follow find none, as in a fresh process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SETTINGS = "tests.contrib.django.project.settings"
MANAGE = Path(__file__).parent / "project" / "manage.py"
#: The variable the test project's settings read its SQLite path from.
DB_VARIABLE = "TEST_PROJECT_DB"


@pytest.fixture(scope="session")
def django_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Django set up on the test project; yields the SQLite file's path."""
    import django
    from django.core.management import call_command

    db = tmp_path_factory.mktemp("django") / "db.sqlite3"
    previous = {k: os.environ.get(k) for k in (DB_VARIABLE, "DJANGO_SETTINGS_MODULE")}
    os.environ[DB_VARIABLE] = str(db)
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    try:
        yield db
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def orders(django_project: Path) -> Iterator[Any]:
    """The shop's ``Order`` model, with its table emptied after the test."""
    from tests.contrib.django.project.shop.models import Order

    try:
        yield Order
    finally:
        Order.objects.all().delete()


@pytest.fixture(scope="package", autouse=True)
def _drop_the_django_app() -> Iterator[None]:
    yield
    import relay

    relay.reset()
