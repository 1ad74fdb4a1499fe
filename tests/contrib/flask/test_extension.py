"""``Relay(app)`` / ``init_app``: settings, factories, declarations, and what is never shown."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from flask import Flask

import relay
from relay import ConfigurationError, Subscription, Task
from relay.contrib.flask import Relay, RelayState
from relay.contrib.flask.settings import load_settings
from relay.contrib.storage import BucketSubscription
from tests.keys import secret_pieces, service_account_key


def flask_app(name: str = "shop", **config: Any) -> Flask:
    app = Flask(name)
    app.config.update(config)
    return app


# ------------------------------------------------------------------ settings
@pytest.mark.parametrize(("key", "value", "field", "expected"), [
    ("PUBSUB_PROJECT_ID", "my-project", "gc_project_id", "my-project"),
    ("PUBSUB_CONCURRENT_CONSUMERS", 4, "concurrency", 4),
    ("PUBSUB_CONCURRENT_MESSAGES", 2, "flow_max_messages", 2),
    ("PUBSUB_TOPIC_PREFIX", "dev", "topic_prefix", "dev_"),  # flask-gcp-pubsub's 'dev_name'
])
def test_flask_gcp_pubsub_keys_set_relays_settings(
    key: str, value: Any, field: str, expected: Any,
) -> None:
    app = flask_app(**{key: value})

    state = Relay(app).state(app)

    assert getattr(state.settings, field) == expected


def test_keywords_win_over_config_and_the_environment_sits_between() -> None:
    config = {"PUBSUB_PROJECT_ID": "from-config", "RELAY": {"CONCURRENCY": 3, "ACK_DEADLINE": 30}}
    env = {"RELAY_CONCURRENCY": "5", "RELAY_ACK_DEADLINE": "40"}

    settings = load_settings(
        config, {"project_id": "from-keyword", "settings": {"ACK_DEADLINE": 50}}, environ=env,
    )

    assert settings.gc_project_id == "from-keyword"
    assert settings.concurrency == 5  # environment over config
    assert settings.ack_deadline == 50  # keyword over environment


def test_one_setting_given_twice_at_one_level_must_agree() -> None:
    same = load_settings({"PUBSUB_TOPIC_PREFIX": "dev", "RELAY": {"TOPIC_PREFIX": "dev_"}}, {})
    assert same.topic_prefix == "dev_"

    with pytest.raises(ConfigurationError) as caught:
        Relay(flask_app(PUBSUB_PROJECT_ID="a", RELAY={"GC_PROJECT_ID": "b"}))

    assert str(caught.value).startswith(
        "app.config['RELAY']['GC_PROJECT_ID'] and app.config['PUBSUB_PROJECT_ID'] both set "
        "relay's GC_PROJECT_ID, to 'b' and 'a'"
    )


@pytest.mark.parametrize(("config", "options", "message"), [
    ({"PUBSUB_CONCURRENT_CONSUMERS": 0}, {},
     "CONCURRENCY: 0 is out of range; expected 1 to 10000 (CONCURRENCY is "
     "app.config['PUBSUB_CONCURRENT_CONSUMERS'] here)"),
    ({"RELAY": {"THREADS_PER_SUBSCRIPTION": 2}}, {},
     "unknown setting 'THREADS_PER_SUBSCRIPTION' in app.config['RELAY']: relay replaces it "
     "with CONCURRENCY"),
    ({"RELAY": {"PUBSUB_PROJECT_ID": "p"}}, {},
     "app.config['RELAY'] has flask-gcp-pubsub's key 'PUBSUB_PROJECT_ID', which goes in "
     "app.config itself; in app.config['RELAY'] write relay's GC_PROJECT_ID"),
    ({"RELAY": ["GC_PROJECT_ID"]}, {}, "app.config['RELAY'] must be a dict of relay settings"),
    ({}, {"projectid": "p"}, "Relay() got an unknown option 'projectid': did you mean project_id?"),
    ({}, {"gc_project_id": "p"},
     "Relay() got an unknown option 'gc_project_id': relay settings go in "
     "Relay(settings={'GC_PROJECT_ID': ...}) or app.config['RELAY']"),
    ({}, {"settings": "GC_PROJECT_ID=p"}, "Relay(settings=...) takes a dict of relay settings"),
])
def test_bad_settings_fail_at_init_naming_the_key_and_the_fix(
    config: dict[str, Any], options: dict[str, Any], message: str,
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Relay(flask_app(**config), **options)

    assert message in str(caught.value)


def test_credentials_are_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    first, _ = service_account_key()
    second, _ = service_account_key()
    pieces = secret_pieces(first) + secret_pieces(second)
    texts: list[str] = []

    # Two keys at one level: refused, neither shown.
    with pytest.raises(ConfigurationError) as conflict:
        Relay(flask_app(PUBSUB_CREDENTIALS_JSON=first, RELAY={"GC_CREDENTIALS_JSON": second}))
    texts.append(str(conflict.value))
    assert "different credentials (not shown)" in texts[-1]

    # A broken key under flask-gcp-pubsub's name: the error names it, not the key.
    broken = {k: v for k, v in first.items() if k != "token_uri"}
    with pytest.raises(ConfigurationError) as bad:
        Relay(flask_app(PUBSUB_CREDENTIALS_JSON=broken))
    texts.append(str(bad.value))
    assert "PUBSUB_CREDENTIALS_JSON" in texts[-1] and "token_uri" in texts[-1]

    # A keyword key beats the config's key; reprs show neither.
    app = flask_app(PUBSUB_CREDENTIALS_JSON=json.dumps(second))
    ext = Relay(app, gcp_credentials_json=first)
    state = ext.state(app)
    assert json.loads(state.settings.gc_credentials_json or "{}") == first
    texts += [repr(ext), repr(state), repr(state.settings), repr(relay.get_app().settings)]

    assert not [piece for text in texts for piece in pieces if piece in text]


# ------------------------------------------------------------------ factories
def test_one_extension_serves_several_apps() -> None:
    ext = Relay()
    with pytest.raises(ConfigurationError, match="no Flask app yet"):
        ext.state()
    blue = flask_app("blue", PUBSUB_TOPIC_PREFIX="blue")
    green = flask_app("green", PUBSUB_TOPIC_PREFIX="green")

    states = [ext.init_app(blue), ext.init_app(green)]

    assert [s.settings.topic_prefix for s in states] == ["blue_", "green_"]
    assert all(isinstance(a.extensions["relay"], RelayState) for a in (blue, green))
    assert relay.get_app().settings is states[1].settings  # the last init_app's
    with pytest.raises(ConfigurationError, match="serves 2 Flask apps and none is current"):
        ext.state()
    with blue.app_context():
        assert ext.state() is states[0]
    assert "relay" in blue.cli.commands


def test_init_app_twice_or_with_another_extension_is_refused() -> None:
    app = flask_app()
    Relay(app)

    with pytest.raises(ConfigurationError, match="already has a Relay extension"):
        Relay().init_app(app)
    with pytest.raises(ConfigurationError, match="was not initialised with this Relay"):
        Relay().state(app)


# --------------------------------------------------------------- declarations
def test_task_topics_are_function_names_as_in_flask_gcp_pubsub() -> None:
    ext = Relay()

    @ext.task
    def resize(photo_id: int) -> int:
        return photo_id

    @ext.task("thumbnails", ignore_result=True)
    def thumbnail(photo_id: int) -> None: ...

    @ext.task(topic="crops", suffix="v2")
    def crop(photo_id: int) -> None: ...

    assert all(isinstance(t, Task) for t in (resize, thumbnail, crop))
    assert [s.name for s in ext.subscriptions] == ["resize", "thumbnails", "crops-v2"]
    assert thumbnail.ignore_result
    assert resize(3) == 3  # still a plain function call


def test_declaration_mistakes_fail_at_import() -> None:
    ext = Relay()

    @ext.task
    def report(n: int) -> None: ...

    with pytest.raises(ConfigurationError, match="duplicate subscription name 'report'"):
        @ext.task
        def report(n: int) -> None: ...  # another module's report, say

    with pytest.raises(ConfigurationError, match=r"@ext.task\(topic='...'\)"):
        @ext.task
        def go() -> None: ...  # too short for a Pub/Sub topic name

    with pytest.raises(ConfigurationError, match="auto_setup is flask-gcp-pubsub's option"):
        ext.bucket("my-uploads", auto_setup=True)

    with pytest.raises(ConfigurationError, match="OBJECT_FINALISE"):
        ext.bucket("my-uploads", events=["OBJECT_FINALISE"])

    with pytest.raises(ConfigurationError, match="takes subscriptions or module names"):
        ext.register(print)  # type: ignore[arg-type]


def test_sub_bucket_and_register_add_subscriptions() -> None:
    ext = Relay()

    @ext.sub("orders", suffix="mail")
    def mail(data: Any, **attrs: str) -> None: ...

    @ext.bucket("my-uploads", events="OBJECT_FINALIZE")
    def uploaded(obj: Any, **attrs: str) -> None: ...

    @relay.sub("invoices")
    def elsewhere(data: Any, **attrs: str) -> None: ...

    ext.register(elsewhere, elsewhere)  # the same one twice counts once
    ext.register("examples.flask_app.tasks")  # a module: its subscriptions

    assert isinstance(uploaded, BucketSubscription)
    assert all(isinstance(s, Subscription) for s in ext.subscriptions)
    assert [s.name for s in ext.subscriptions] == [
        "orders-mail", "gcs-my-uploads-finalize", "invoices", "render_report", "report-events",
    ]


# ------------------------------------------------------------------ imports
def test_import_relay_does_not_import_flask() -> None:
    code = "import sys, relay, relay.cli; print('flask' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=False)

    assert result.stdout.strip() == "False", result.stderr


def test_without_flask_the_error_says_how_to_install_it() -> None:
    code = (
        "import sys; sys.modules['flask'] = None\n"
        "try:\n    import relay.contrib.flask\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=False)

    assert "pip install 'relay-pubsub[flask]'" in result.stdout, result.stderr
