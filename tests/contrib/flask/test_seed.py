"""flask-gcp-pubsub's README example, with only its import changed, runs on relay.

``demo.py`` is the README's "Full example" plus its "Bucket notification"
handlers; ``wsgi_delayed.py`` is its worker script, word for word.
"""

from __future__ import annotations

import importlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import relay
from relay.testing import memory_app
from tests.keys import secret_pieces, service_account_key

SEED_IMPORT = "from flask_gcp_pubsub import PubSub"
RELAY_IMPORT = "from relay.contrib.flask import Relay as PubSub"

DEMO = '''#!/usr/bin/env python
# coding: utf-8

from flask import Flask, make_response
from flask_gcp_pubsub import PubSub

app = Flask(__name__)
pubsub = PubSub(
    app,
    project_id='<project_id>',
    gcp_credentials_file='./creds.json'
)

@pubsub.task
def my_task(msg1, msg2):
    """Awesome delayed execution"""
    print('test', msg1, msg2)
    return 'ok'

@app.route('/test')
def route_test():
    """Launch delayed execution"""
    my_task.delay('test1', 'test2')
    return make_response('ok', 200)


@pubsub.bucket('bucket-flask-gcp', events=['OBJECT_FINALIZE'])
def my_bucket_notifications_create(*args, **kwargs):
    print('FINALIZE', args, kwargs)


@pubsub.bucket('bucket-flask-gcp', events=['OBJECT_DELETE'])
def my_bucket_notifications_delete(*args, **kwargs):
    print('DELETE', args, kwargs)
'''

WSGI_DELAYED = '''#!/usr/bin/env python
# -*- coding: utf-8 -*-

# Imports
from demo import pubsub

# Start
if __name__ == '__main__':
    pubsub.run()
'''


@pytest.fixture
def seed_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The seed's files in a directory, the import changed, with a ``creds.json``."""
    assert DEMO.count(SEED_IMPORT) == 1
    (tmp_path / "demo.py").write_text(DEMO.replace(SEED_IMPORT, RELAY_IMPORT))
    (tmp_path / "wsgi_delayed.py").write_text(WSGI_DELAYED)
    info, _ = service_account_key()
    (tmp_path / "creds.json").write_text(json.dumps(info))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("demo", None)


def test_the_seed_example_runs_on_the_memory_transport(
    seed_project: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    demo: ModuleType = importlib.import_module("demo")
    app = demo.app
    settings = app.extensions["relay"].settings
    assert settings.gc_project_id == "<project_id>"
    assert settings.gc_credentials_path == "./creds.json"

    with memory_app(settings) as env:
        response = app.test_client().get("/test")
        assert (response.status_code, response.data) == (200, b"ok")
        assert [r.topic for r in env.published] == ["my_task"]  # the seed's topic name
        assert env.published_data() == [{"args": ["test1", "test2"], "kwargs": {}}]

        [outcome] = env.deliver([demo.my_task])
        assert outcome.result == "ok"

        obj = {"name": "photos/cat.jpg", "bucket": "bucket-flask-gcp", "size": "42"}
        attrs = {"eventType": "OBJECT_FINALIZE", "bucketId": "bucket-flask-gcp",
                 "objectId": "photos/cat.jpg", "objectGeneration": "1"}
        for sub in (demo.my_bucket_notifications_create, demo.my_bucket_notifications_delete):
            relay.get_publisher().publish(sub.topic, obj, attrs=attrs)
        outcomes = env.deliver(
            [demo.my_bucket_notifications_create, demo.my_bucket_notifications_delete]
        )

    assert [o.status.value for o in outcomes] == ["success", "skipped"]  # not a delete
    out = capsys.readouterr().out
    assert "test test1 test2" in out
    # The handler gets the object as its argument and the attributes (relay adds
    # published_at) as keywords.
    assert f"FINALIZE ({obj!r},) {repr(attrs)[:-1]}, 'published_at': " in out
    assert "DELETE" not in out


def test_the_seed_worker_script_runs_and_stops_cleanly_on_sigterm(seed_project: Path) -> None:
    """``python wsgi_delayed.py``: ``pubsub.run()`` runs a worker until SIGTERM, exit 0."""
    env = {k: v for k, v in __import__("os").environ.items()
           if not k.startswith("RELAY_") and k != "PUBSUB_EMULATOR_HOST"}
    env["RELAY_TRANSPORT"] = "memory"
    log = seed_project / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(
            [sys.executable, "wsgi_delayed.py"], cwd=seed_project, env=env, stdout=out,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 60
        while "wsgi_delayed.py: worker running" not in log.read_text():
            assert worker.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    output = log.read_text()
    assert "SIGTERM received: stopping gracefully" in output
    assert "worker stopped" in output
    info = json.loads((seed_project / "creds.json").read_text())
    assert not [piece for piece in secret_pieces(info) if piece in output]


def test_a_relay_worker_runs_what_flask_gcp_pubsub_published(seed_project: Path) -> None:
    """During a rolling deploy old web processes still publish flask-gcp-pubsub's message
    (bare JSON, no attributes) to ``<prefix>_<function>``: relay's task reads it."""
    demo: ModuleType = importlib.import_module("demo")
    settings = demo.app.extensions["relay"].settings.replace(topic_prefix="dev_")

    with memory_app(settings) as env:
        seed_payload = json.dumps({"args": ("test1",), "kwargs": {"msg2": "test2"}}).encode()
        env.transport.publish("dev_my_task", seed_payload, {}).result(timeout=5)
        [outcome] = env.deliver([demo.my_task])

    assert demo.my_task.resolve(settings).name == "dev_my_task"  # the seed's subscription
    assert outcome.result == "ok"
