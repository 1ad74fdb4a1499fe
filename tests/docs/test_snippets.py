"""Every ```python block of the guides (docs/*.md) runs; one that no longer does fails.

The rules:

* A page's blocks are one example: they run in order, in one namespace, in a
  fresh Python process per page (the working directory a new temporary folder),
  so a later block may use what an earlier one defined or imported, as a
  reader would. A failure names the page and the block's line
  (``SNIPPET FAILED: docs/tasks.md:17``), and the traceback's lines are the
  page's.
* A block (or part of one) whose first line is a comment naming a Python file,
  ``# shop/subs.py``, is that file of the example: it is written under that
  path (packages get an ``__init__.py``) and imported, and its names join the
  page's namespace; later blocks can import it (``from shop.subs import ...``).
* After the blocks, every ``test_*`` function the page defined is called, with
  the fixtures ``relay_memory`` and ``pubsub_emulator`` when it asks for them,
  or one its prelude provides (``fixtures = {"db": ...}``, context managers).
* Never the network: ``RELAY_TRANSPORT=memory`` in the environment (it beats a
  snippet's settings dict), ``RELAY_EMULATOR=relay`` (a snippet that starts an
  emulator gets relay's own server), no Google credentials, and
  ``PUBSUB_EMULATOR_HOST`` points at a closed local port, so a Pub/Sub client
  that slipped through fails at once instead of reaching Google.
* What a snippet takes for granted and does not show (``mailer``, a Flask
  ``app``, a worker to stop) is defined by the page's prelude below, run first;
  a prelude may define ``cleanup()``, run after the tests, and
  ``after_block(block)``, run after each block (django.md's starts Django once
  the page's settings.py is written, as ``manage.py`` would).
* A block preceded by ``<!-- not-run: reason -->`` is skipped: kept for what it
  cannot do here (run forever, bind a fixed port).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.snippets import ROOT, Block, guides, python_blocks

RUNNER = Path(__file__).with_name("run_page.py")

# The pages not run here, and why. Each names whose change would make it run.
EXCLUDED: dict[str, str] = {}

# Stop the worker a snippet runs until stopped, each time it has started: by
# worker.stop(), or through the snippet's own `stopping` event (what its SIGTERM
# handler sets).
_STOP_WORKER_SOON = """
import threading as _threading, time as _time

def _stop_each_run(name="worker"):
    stopped = set()
    deadline = _time.monotonic() + 60
    while _time.monotonic() < deadline:
        worker = globals().get(name)
        if worker is not None and worker.status().get("started"):
            key = (id(worker), "stopping" in globals())
            if key not in stopped:
                stopped.add(key)
                _time.sleep(0.2)
                if "stopping" in globals():
                    globals()["stopping"].set()
                else:
                    worker.stop()
        _time.sleep(0.02)

_threading.Thread(target=_stop_each_run, daemon=True).start()
"""

# Files a prelude writes into the page's working directory.
_WRITE = """
from pathlib import Path as _Path

def _write(path, text):
    path = _Path(path)
    for parent in reversed(path.parents[:-1]):
        parent.mkdir(exist_ok=True)
        (parent / "__init__.py").touch()
    path.write_text(text)
"""

# django.md: the Django project around the page's files, made as tests/contrib/django/
# makes its own: a settings module, an SQLite file, django.setup(), migrate. The
# page shows settings.py (INSTALLED_APPS and RELAY; later TASKS), orders/subs.py
# and billing/tasks.py; the rest is written here: the `orders` app's model, and
# the project settings around the page's settings.py (the database, SECRET_KEY;
# the `...` of its INSTALLED_APPS dropped).
_DJANGO = (
    _WRITE
    + _STOP_WORKER_SOON
    + """
import contextlib as _contextlib
import importlib as _importlib
import os as _os
import sys as _sys

_write("orders/models.py", '''
from django.db import models


class Order(models.Model):
    number = models.IntegerField(unique=True)
    email = models.EmailField()
''')
_write("docs_site/settings.py", '''
from pathlib import Path

from settings import *  # the page's settings.py

INSTALLED_APPS = [app for app in INSTALLED_APPS if app is not ...]
SECRET_KEY = "docs"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(Path("db.sqlite3").resolve())}
}
''')


def _start_django():
    # After the page's settings.py, as manage.py would have started Django.
    import django
    from django.core.management import call_command

    _os.environ["DJANGO_SETTINGS_MODULE"] = "docs_site.settings"
    django.setup()
    call_command("migrate", run_syncdb=True, verbosity=0, interactive=False)  # orders: syncdb

    import relay.contrib.django.tasks as relay_tasks
    from relay.contrib.django.conf import relay_settings
    from relay.testing import memory_app

    if relay_tasks._PACKAGE == "django_tasks":
        # Django 5.2: the page's `from django.tasks import task` is, as its comment
        # says, `from django_tasks import task` there.
        _sys.modules.setdefault("django.tasks", _importlib.import_module("django_tasks"))
    signals = _importlib.import_module(relay_tasks._PACKAGE + ".signals")

    # The project's app (settings.RELAY) on the memory transport, and a worker's
    # part: each Django task runs as soon as it is enqueued, through relay's
    # backend subscriptions, so `result.refresh()` after `enqueue()` finds it done.
    global _memory, env
    _memory = memory_app(relay_settings())
    env = _memory.__enter__()

    def run_enqueued(sender, task_result, **kwargs):
        env.deliver(relay_tasks.backend_subscriptions())

    signals.task_enqueued.connect(run_enqueued, weak=False)


def _apply_settings():
    # A later settings.py block (TASKS): its new values join Django's settings.
    from django.apps import apps
    from django.conf import settings
    from django.test.signals import setting_changed

    page = _sys.modules["settings"]
    for name in [name for name in vars(page) if name.isupper()]:
        value = getattr(page, name)
        if name == "INSTALLED_APPS":
            missing = [app for app in value if app is not ... and not apps.is_installed(app)]
            assert not missing, f"apps added after Django started: {missing}"
        elif getattr(settings, name, None) != value:
            setattr(settings, name, value)
            setting_changed.send(type(settings), setting=name, value=value, enter=True)


def after_block(block):
    if block["file"] == "settings.py":
        if "env" in globals():
            _apply_settings()
        else:
            _start_django()


@_contextlib.contextmanager
def _db():
    # pytest-django's `db`: the test runs in a transaction, rolled back after it.
    from django.db import transaction

    with transaction.atomic():
        yield
        transaction.set_rollback(True)


fixtures = {"db": _db}


def cleanup():
    _memory.__exit__(None, None, None)
"""
)

PRELUDES: dict[str, str] = {
    # cli.md is another engineer's (migration fixes): its Django block needs a
    # project, which the prelude makes.
    "cli.md": _WRITE
    + """
_write("mysite/settings.py", "SECRET_KEY = 'docs'\\nINSTALLED_APPS = []\\n"
       "RELAY = {'GC_PROJECT_ID': 'mysite'}\\n")
""",
    "celery.md": """
from flask import Flask

app = Flask("shop")                        # the Flask app of the subscriber command

from celery import Celery

@Celery("shop").task
def execute_script(*args, **kwargs): ...   # a Celery task of the project
""",
    "django.md": _DJANGO,
    "reliability.md": "from relay import sub\n",
    "storage-notifications.md": "from relay import sub\n\ndef forget(name): ...\n",
    "settings.md": """
from flask import Flask

app = Flask("shop")
app.config["RELAY"] = {"GC_PROJECT_ID": "shop-prod"}
""",
    "subscriptions.md": _WRITE
    + _STOP_WORKER_SOON
    + '''
class _Mailer:
    def send(self, to, text): ...

mailer = _Mailer()
STOCK_URL = "http://stock.invalid/reservations"

def notify_support(data): ...

def make_thumbnail(photo_id): ...

_write("myproject/settings.py", "RELAY = {'GC_PROJECT_ID': 'shop-prod', 'SUB_PREFIX': 'shop'}\\n")
_write("myproject/subs.py", """
from relay import sub

@sub(topic="orders")
def send_confirmation(data, **attrs): ...

@sub(topic="orders", suffix="stock")
async def reserve_stock(data, **attrs): ...
""")
''',
    "tasks.md": """
import sys as _sys
import threading as _threading
import types as _types

from relay.testing import memory_app as _memory_app

# redis is not a dependency: a stand-in, enough to define RedisResults.
_redis = _types.ModuleType("redis")
_redis.Redis = type("Redis", (), {"from_url": staticmethod(lambda url: {})})
_sys.modules.setdefault("redis", _redis)

# Results on (in the process), and a worker's part: deliver what is published.
_memory = _memory_app(RESULTS="memory")
env = _memory.__enter__()
_done = _threading.Event()

def _serve():
    delivered = 0
    while not _done.wait(0.02):
        if len(env.published) > delivered and "render_report" in globals():
            delivered = len(env.published)
            env.deliver([globals()["render_report"]])

_server = _threading.Thread(target=_serve, daemon=True)
_server.start()

def cleanup():
    _done.set()
    _server.join(10)
    _memory.__exit__(None, None, None)
""",
}


def pages() -> list[tuple[str, list[Block]]]:
    found = []
    for path in guides():
        blocks = python_blocks(path)
        if blocks:
            found.append((str(path.relative_to(ROOT)), blocks))
    return found


def environment() -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("RELAY_", "GOOGLE_", "PUBSUB_", "CLOUDSDK_", "DJANGO_"))
    }
    env.update(
        RELAY_TRANSPORT="memory",
        RELAY_GC_PROJECT_ID="relay-docs",
        RELAY_EMULATOR="relay",
        PUBSUB_EMULATOR_HOST="127.0.0.1:9",
        PYTHONPATH=str(ROOT),
        NO_PROXY="*",
    )
    return env


@pytest.mark.parametrize(("page", "blocks"), pages(), ids=[page for page, _ in pages()])
def test_the_page_snippets_run(page: str, blocks: list[Block], tmp_path: Path) -> None:
    if page in EXCLUDED:
        pytest.skip(EXCLUDED[page])
    runnable = [block for block in blocks if block.not_run is None]
    if not runnable:
        pytest.skip("every block is marked not-run")
    spec = {
        "page": page,
        "prelude": PRELUDES.get(Path(page).name, ""),
        "blocks": [{"line": b.line, "code": b.code, "file": b.file} for b in runnable],
    }
    proc = subprocess.run(
        [sys.executable, str(RUNNER)],
        input=json.dumps(spec),
        cwd=tmp_path,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=90,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"a snippet of {page} no longer runs:\n{proc.stderr[-6000:]}\n{proc.stdout[-2000:]}",
            pytrace=False,
        )


def test_every_not_run_marker_gives_a_reason() -> None:
    for _, blocks in pages():
        for block in blocks:
            assert block.not_run is None or len(block.not_run) > 10, block.where
