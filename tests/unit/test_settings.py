import json
import types
from pathlib import Path

import pytest

from relay import ConfigurationError, RetryPolicy, Settings
from tests.keys import service_account_key


def test_defaults() -> None:
    s = Settings.load(environ={})
    assert s.ack_deadline == 60
    assert s.publisher_blocking is False
    assert s.middleware == ("relay.contrib.logging_middleware.LoggingMiddleware",)
    assert s.default_retry_policy == RetryPolicy(10, 600)
    assert s.transport == "grpc"


def test_precedence_mapping_then_env_then_kwargs() -> None:
    mapping = {"GC_PROJECT_ID": "from-dict", "ACK_DEADLINE": 30, "SUB_PREFIX": "dict"}
    env = {"RELAY_GC_PROJECT_ID": "from-env", "RELAY_ACK_DEADLINE": "45"}
    s = Settings.load(mapping, environ=env, gc_project_id="from-kwargs")
    assert s.gc_project_id == "from-kwargs"
    assert s.ack_deadline == 45  # env beats the mapping
    assert s.sub_prefix == "dict"


def test_unknown_key_names_the_key_and_suggests() -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.load({"ACK_DEADLINES": 30}, environ={})
    assert "'ACK_DEADLINES'" in str(info.value)
    assert "ACK_DEADLINE" in str(info.value)


def test_rele_keys_that_relay_renamed_say_the_replacement() -> None:
    with pytest.raises(ConfigurationError, match=r"THREADS_PER_SUBSCRIPTION.*CONCURRENCY"):
        Settings.load({"THREADS_PER_SUBSCRIPTION": 4}, environ={})


def test_unknown_environment_variable() -> None:
    with pytest.raises(ConfigurationError, match="RELAY_ACK_DEADLIN"):
        Settings.load(environ={"RELAY_ACK_DEADLIN": "10"})


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("ACK_DEADLINE", 5, "ACK_DEADLINE: 5 is out of range; expected 10 to 600"),
        ("ACK_DEADLINE", "ten", "ACK_DEADLINE: expected a number, got 'ten'"),
        ("ACK_DEADLINE", 30.5, "expected a whole number"),
        ("CONCURRENCY", 0, "CONCURRENCY: 0 is out of range"),
        ("CONCURRENCY", True, "expected a number"),
        ("PUBLISHER_BLOCKING", "maybe", "expected true/false"),
        ("PUBLISHER_BLOCKING", 1, "expected True or False"),
        ("CLIENT_OPTIONS", "x", "CLIENT_OPTIONS: expected a dict"),
        ("GC_PROJECT_ID", 12, "GC_PROJECT_ID: expected a string"),
        ("DEFAULT_RETRY_POLICY", (0, 10), "0 < minimum_backoff"),
        ("DEFAULT_RETRY_POLICY", "1,2,3", "expected 'MIN,MAX'"),
        ("ENCODER", "nomodule_xyz.Thing", "cannot import module 'nomodule_xyz'"),
        ("ENCODER", "json.NoSuchThing", "module 'json' has no 'NoSuchThing'"),
        ("FILTER_SUBS_BY", [1], "FILTER_SUBS_BY: 1 is not callable"),
        ("GC_CREDENTIALS_JSON", "{not json", "GC_CREDENTIALS_JSON is not valid JSON"),
        ("FLOW_MAX_LEASE_EXTENSION", 5,
         "FLOW_MAX_LEASE_EXTENSION: 5; expected 0 (the subscription's ack deadline) or 10 to "
         "600 seconds"),
        ("STREAM_LIFETIME", 3,
         "STREAM_LIFETIME: 3; expected 0 (the client's default) or 5 to 3600 seconds"),
        ("STREAM_LIFETIME", 7200, "STREAM_LIFETIME: 7200 is out of range"),
    ],
)
def test_bad_values_name_the_key_and_expected_form(key: str, value: object, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.load({key: value}, environ={})
    assert fragment in str(info.value)


def test_env_parsing() -> None:
    s = Settings.load(
        environ={
            "RELAY_PUBLISHER_BLOCKING": "yes",
            "RELAY_GC_STORAGE_REGIONS": "europe-west1, europe-west4",
            "RELAY_CLIENT_OPTIONS": '{"api_endpoint": "127.0.0.1:1"}',
            "RELAY_DEFAULT_RETRY_POLICY": "5,60",
            "RELAY_CONCURRENCY": "4",
        }
    )
    assert s.publisher_blocking is True
    assert s.gc_storage_regions == ("europe-west1", "europe-west4")
    assert s.client_options == {"api_endpoint": "127.0.0.1:1"}
    assert s.default_retry_policy == RetryPolicy(5, 60)
    assert s.concurrency == 4
    off = Settings.load(environ={"RELAY_DEFAULT_RETRY_POLICY": "none"})
    assert off.default_retry_policy is None


def test_both_credentials_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match="both set; keep one"):
        Settings.load({"GC_CREDENTIALS_PATH": "/k.json", "GC_CREDENTIALS_JSON": "{}"}, environ={})


def test_from_object_django_and_flask_style() -> None:
    django_settings = types.SimpleNamespace(RELAY={"GC_PROJECT_ID": "django-proj"})
    assert Settings.from_object(django_settings, environ={}).gc_project_id == "django-proj"
    flask_config = {"RELAY": {"GC_PROJECT_ID": "flask-proj"}}
    assert Settings.from_object(flask_config, environ={}).gc_project_id == "flask-proj"
    with pytest.raises(ConfigurationError, match="has no 'RELAY' setting"):
        Settings.from_object(types.SimpleNamespace(), environ={})


def test_from_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mysettings_for_relay.py").write_text("RELAY = {'GC_PROJECT_ID': 'mod-proj'}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert Settings.from_module("mysettings_for_relay", environ={}).gc_project_id == "mod-proj"
    with pytest.raises(ConfigurationError, match="cannot import settings module 'nope_nope'"):
        Settings.from_module("nope_nope")


def test_project_id_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "PUBSUB_PROJECT_ID"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigurationError, match="GC_PROJECT_ID is not set"):
        Settings.load(environ={}).project_id()
    info, _ = service_account_key()
    key = tmp_path / "key.json"
    key.write_text(json.dumps({**info, "project_id": "from-key-file"}))
    assert Settings.load(environ={}, gc_credentials_path=str(key)).project_id() == "from-key-file"
    blob = json.dumps({**info, "project_id": "from-json"})
    assert Settings.load(environ={}, gc_credentials_json=blob).project_id() == "from-json"
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "from-env")
    assert Settings.load(environ={}).project_id() == "from-env"
    assert Settings.load(environ={}, gc_project_id="explicit").project_id() == "explicit"


def test_settings_are_frozen_and_replace_validates() -> None:
    s = Settings.load(environ={})
    with pytest.raises(AttributeError):
        s.ack_deadline = 30  # type: ignore[misc]
    assert s.replace(ACK_DEADLINE=30).ack_deadline == 30
    with pytest.raises(ConfigurationError, match="out of range"):
        s.replace(ack_deadline=1)


def test_constructor_validates_too() -> None:
    with pytest.raises(ConfigurationError, match="CONCURRENCY"):
        Settings(concurrency=0)


def test_the_credentials_are_not_in_the_repr(tmp_path: Path) -> None:
    info, _ = service_account_key()
    secret = json.dumps(info)
    s = Settings.load(environ={}, gc_credentials_json=secret, gc_project_id="shop")
    assert s.gc_credentials_json == secret
    assert "PRIVATE KEY" not in repr(s) and info["client_email"] not in repr(s)
    assert "gc_credentials_json=<set, not shown>" in repr(s) and str(s) == repr(s)
    assert "gc_project_id='shop'" in repr(s)  # the rest is shown as before
    key = tmp_path / "key.json"
    key.write_text(secret)
    from_path = Settings.load(environ={}, gc_credentials_path=str(key))
    assert str(key) not in repr(from_path) and "gc_credentials_path=<set, not shown>" in repr(
        from_path
    )
    assert "gc_credentials_json=None" in repr(from_path)


def test_a_key_file_dict_is_taken_as_gc_credentials_json() -> None:
    # json.load(f), a secret manager's parsed payload: a natural thing to pass.
    info, _ = service_account_key()
    s = Settings.load({"GC_CREDENTIALS_JSON": info}, environ={})
    assert s.gc_credentials_json is not None and json.loads(s.gc_credentials_json) == info
    assert "relay-secret-test" not in repr(s)


def test_the_credentials_path_is_checked_when_the_settings_are_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    missing = str(tmp_path / "missing.json")
    with pytest.raises(ConfigurationError, match="GC_CREDENTIALS_PATH: there is no file") as raised:
        Settings.load(environ={}, gc_credentials_path=missing)
    assert "missing.json" not in str(raised.value)  # a credentials setting is never echoed
    with pytest.raises(ConfigurationError, match="GC_CREDENTIALS_PATH: the path is a directory"):
        Settings(gc_credentials_path=str(tmp_path))  # the constructor checks it too
    # With the emulator, credentials are never used: a path that exists only in
    # production does not stop a local run.
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:8085")
    assert Settings.load(environ={}, gc_credentials_path=missing).gc_credentials_path == missing


def test_the_constructor_checks_booleans_and_choices_too() -> None:
    with pytest.raises(ConfigurationError, match="DEAD_LETTER_KEEP: expected True or False"):
        Settings(dead_letter_keep="no")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="PROVISIONING: 'apply'"):
        Settings(provisioning="apply")


def test_stream_lifetime_defaults_to_the_clients_own_on_the_emulator_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The default must not reopen healthy streams on the emulator: each reopen
    # there can leave messages to wait out their ack deadline (issue 9).
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    assert Settings.load(environ={}).effective_stream_lifetime is None
    assert Settings.load(environ={"RELAY_STREAM_LIFETIME": "300"}).effective_stream_lifetime == 300
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:8085")
    assert Settings.load(environ={}).effective_stream_lifetime is None
    assert Settings.load(environ={"RELAY_STREAM_LIFETIME": "0"}).effective_stream_lifetime is None
    assert Settings.load(environ={}, stream_lifetime=15).effective_stream_lifetime == 15
