"""The Celery bridge's configuration: the seed's keys, dict and object forms, every error.

No broker is involved: these build configs and bridges only. Routing, with a
real Celery worker, is in test_celery_bridge.py.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
from celery import Celery

import relay
from relay.contrib.celery import BridgeConfig, CeleryBridge, Route
from relay.testing import memory_app


def _yes(routing_key: str, body: Any) -> bool:
    return True


def _args(routing_key: str, body: Any) -> tuple[list[Any], dict[str, Any]]:
    return [], {}


def _app() -> Celery:
    return Celery("config-tests", broker="memory://", set_as_current=False)


def item(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "routing_key": "app1.matches.published",
        "task": "query.tasks.execute_script",
        "should_schedule": _yes,
        "get_args": _args,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not _DROP}


_DROP = object()


def config(*items: Any, **keys: Any) -> dict[str, Any]:
    mapping: dict[str, Any] = {
        "PUBSUB_EXCHANGE": "events",
        "PUBSUB_GET_CELERY_APP": _app,
        "PUBSUB_TASK_MAPPING": list(items) or [item()],
    }
    mapping.update(keys)
    return mapping


def error(mapping: dict[str, Any]) -> str:
    with pytest.raises(relay.ConfigurationError) as info:
        BridgeConfig.from_dict(mapping)
    return str(info.value)


# ------------------------------------------------------------------ the seed's keys
def test_the_seeds_keys_and_example_mapping_load_from_a_dict(caplog):
    seed = {
        "PUBSUB_BROKER_URL": "amqp://guest@rabbit//",
        "PUBSUB_EXCHANGE": "events",
        "PUBSUB_GET_CELERY_APP": _app,
        "PUBSUB_QUEUE_NAME": "reports-events",
        "PUBSUB_TASK_MAPPING": [
            {
                "routing_key": "app1.matches.published",
                "task": "query.tasks.execute_script",
                "should_schedule": lambda routing_key, body: True,
                "get_args": lambda routing_key, body: ([], dict()),
                "celery_kwargs": lambda routing, body: {"countdown": 10},
            },
            {
                "routing_key": "app2.exclusions.published",
                "task": "query.tasks.execute_script",
                "should_schedule": lambda routing_key, body: True,
                "get_args": lambda routing_key, body: ([], dict()),
            },
        ],
    }
    with caplog.at_level(logging.WARNING, "relay.contrib.celery"):
        built = BridgeConfig.from_dict(seed)

    assert built.exchange == "events"
    assert built.queue_name == "reports-events"
    assert [r.routing_key for r in built.routes] == [
        "app1.matches.published", "app2.exclusions.published",
    ]
    assert [r.task_name for r in built.routes] == ["query.tasks.execute_script"] * 2
    assert built.routes[0].celery_kwargs is not None and built.routes[1].celery_kwargs is None
    assert built.routing_key_attribute == "routing_key" and built.unrouted == "skip"
    # The broker URL means nothing to relay: said so, not silently dropped.
    assert "PUBSUB_BROKER_URL is ignored by the Celery bridge: relay reaches Pub/Sub" in (
        caplog.text
    )


def test_from_object_reads_a_flask_config_a_settings_class_and_a_module():
    class FlaskConfig(dict):  # what Flask's app.config is
        pass

    flask_config = FlaskConfig(config(), SECRET_KEY="x", PUBSUB_EMULATOR_HOST="localhost:1")
    settings_class = SimpleNamespace(**config(), DEBUG=True, PUBSUB_PROJECT_ID="p")
    module = SimpleNamespace(**config(PUBSUB_QUEUE_NAME="reports-events"))

    for source in (flask_config, settings_class, module):
        built = BridgeConfig.from_object(source)
        assert built.exchange == "events"
        assert [r.routing_key for r in built.routes] == ["app1.matches.published"]
    assert BridgeConfig.from_object(module).queue_name == "reports-events"
    assert CeleryBridge.from_object(settings_class).config.exchange == "events"


def test_a_django_setting_left_as_none_takes_the_default():
    built = BridgeConfig.from_object(
        SimpleNamespace(PUBSUB_EXCHANGE="events", PUBSUB_TASK_MAPPING=None,
                        PUBSUB_ROUTING_KEY_ATTRIBUTE=None)
    )
    assert built.routes == () and built.routing_key_attribute == "routing_key"


def test_a_publish_only_config_needs_the_exchange_alone_and_cannot_consume():
    bridge = CeleryBridge.from_dict({"PUBSUB_EXCHANGE": "events"})
    with pytest.raises(relay.ConfigurationError, match="no PUBSUB_TASK_MAPPING, so it can "
                       "publish events but not consume them"):
        bridge.subscription  # noqa: B018


def test_routes_may_be_route_objects_and_lazy_task_objects_are_not_evaluated():
    app = _app()

    @app.task(name="reports.build")
    def build(report_id: int) -> None: ...

    route = Route("reports.requested", build, _yes, _args)
    built = BridgeConfig(exchange="events", task_mapping=[route, item()], get_celery_app=app)
    assert built.routes[0] is route
    assert not app.finalized  # reading the settings did not finalize the Celery app
    assert route.task_name == "reports.build"


# ------------------------------------------------------------------ mapping items
@pytest.mark.parametrize("missing", ["routing_key", "task", "should_schedule", "get_args"])
def test_an_item_missing_a_mandatory_key_names_the_item_and_the_key(missing):
    message = error(config(item(), item(**{"routing_key": "app2.x", missing: _DROP})))
    where = "PUBSUB_TASK_MAPPING[1]" if missing == "routing_key" else (
        "PUBSUB_TASK_MAPPING[1] (routing_key 'app2.x')"
    )
    assert message.startswith(f"{where} has no {missing!r}, a mandatory key; every item needs "
                              "routing_key, task, should_schedule, get_args")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"routing_key": ""}, "PUBSUB_TASK_MAPPING[0]: 'routing_key' must be a non-empty string"),
        ({"routing_key": 7}, "'routing_key' must be a non-empty string like "
                             "'app1.matches.published', got 7"),
        ({"routing_key": "k" * 1025}, "'routing_key' is 1025 bytes; it travels as a message "
                                      "attribute, and Pub/Sub allows 1024"),
        ({"task": ""}, "(routing_key 'app1.matches.published'): 'task' is an empty string"),
        ({"task": 42}, "'task' must be a Celery task's name (a str) or the task object, got 42"),
        ({"task": _yes}, "'task' is the plain function tests.contrib.test_celery_config._yes, "
                         "not a Celery task; decorate it with @app.task"),
        ({"should_schedule": True}, "'should_schedule' must be a function of (routing_key, "
                                    "body), got True; for example lambda routing_key, body: True"),
        ({"get_args": lambda body: ([], {})}, "'get_args' (tests.contrib.test_celery_config."
                                              "<lambda>(body)) cannot be called as "
                                              "f(routing_key, body)"),
        ({"celery_kwargs": {"countdown": 10}}, "'celery_kwargs' must be a function of "
                                               "(routing_key, body), got {'countdown': 10}"),
        ({"celery_kwag": _yes}, "has the unknown key 'celery_kwag' (did you mean "
                                "'celery_kwargs'?)"),
    ],
)
def test_a_bad_item_value_names_the_item_the_key_and_the_fix(changes, expected):
    assert expected in error(config(item(**changes)))


def test_an_async_route_function_is_refused():
    async def should_schedule(routing_key: str, body: Any) -> bool:
        return True

    assert "'should_schedule' (tests.contrib.test_celery_config.test_an_async_route_function_"\
        "is_refused.<locals>.should_schedule) is async, but the bridge calls it without " \
        "awaiting it" in error(config(item(should_schedule=should_schedule)))


def test_an_item_that_is_not_a_dict_and_a_route_object_with_bad_values():
    assert error(config(item(), "app2.x")).startswith(
        "PUBSUB_TASK_MAPPING[1] is a str, not a dict; each item is a dict with the keys "
        "routing_key, task, should_schedule, get_args"
    )
    with pytest.raises(relay.ConfigurationError, match=r"Route\('k'\): 'get_args' must be a "):
        Route("k", "t", _yes, None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        (item(), "PUBSUB_TASK_MAPPING must be a list of dicts (one per routing key), got a dict; "
                 "wrap a single item in [...]"),
        ([], "PUBSUB_TASK_MAPPING is empty, so every message would be skipped"),
        ([item(), item(task="other.task")],
         "PUBSUB_TASK_MAPPING[1] maps routing key 'app1.matches.published' again "
         "(PUBSUB_TASK_MAPPING[0] maps it already); one route per key"),
    ],
)
def test_the_mapping_itself_must_be_a_non_empty_list_with_one_route_per_key(mapping, expected):
    assert expected in error(config(PUBSUB_TASK_MAPPING=mapping))


# ------------------------------------------------------------------ the other keys
@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"PUBSUB_EXCHANGE": None}, "PUBSUB_EXCHANGE is not set: it names the Pub/Sub topic"),
        ({"PUBSUB_EXCHANGE": "ex"}, "invalid PUBSUB_EXCHANGE topic name 'ex': it is 2 "
                                    "characters long"),
        ({"PUBSUB_GET_CELERY_APP": None}, "PUBSUB_GET_CELERY_APP is not set, but the route(s) "
                                          "app1.matches.published name their task by a string"),
        ({"PUBSUB_GET_CELERY_APP": "my_app.celery"}, "PUBSUB_GET_CELERY_APP must be the Celery "
                                                     "app or a function returning it"),
        ({"PUBSUB_QUEUE_NAME": "goog-q"}, "invalid PUBSUB_QUEUE_NAME subscription name "
                                          "'goog-q': it must not start with 'goog'"),
        ({"PUBSUB_ROUTING_KEY_ATTRIBUTE": ""}, "PUBSUB_ROUTING_KEY_ATTRIBUTE must be a "
                                               "non-empty string"),
        ({"PUBSUB_ROUTING_KEY_ATTRIBUTE": "topic"}, "attribute name(s) topic cannot be sent"),
        ({"PUBSUB_UNROUTED": "drop"}, "PUBSUB_UNROUTED is 'drop'; it must be 'skip' (ack and "
                                      "report the message as skipped, with a WARNING) or "
                                      "'dead_letter'"),
        ({"PUBSUB_SUBSCRIPTION_OPTIONS": {"ack_dedline": 60}}, "PUBSUB_SUBSCRIPTION_OPTIONS has "
                                                                "the unknown option(s) "
                                                                "ack_dedline"),
        ({"PUBSUB_SUBSCRIPTION_OPTIONS": [("ack_deadline", 60)]}, "PUBSUB_SUBSCRIPTION_OPTIONS "
                                                                  "must be a dict"),
        ({"PUBSUB_QUEUE_NAME": "reports", "PUBSUB_SUBSCRIPTION_OPTIONS": {"suffix": "x"}},
         "PUBSUB_QUEUE_NAME 'reports' names the subscription exactly, so "
         "PUBSUB_SUBSCRIPTION_OPTIONS cannot also set prefix or suffix"),
        ({"PUBSUB_TASK_MAPING": []}, "unknown Celery bridge key 'PUBSUB_TASK_MAPING' (did you "
                                     "mean PUBSUB_TASK_MAPPING?)"),
    ],
)
def test_each_key_is_checked_naming_it_and_the_fix(keys, expected):
    assert expected in error(config(**keys))


def test_subscription_options_are_checked_as_sub_checks_them():
    with pytest.raises(relay.ConfigurationError, match=r"ack_deadline of .* is 5; Pub/Sub "):
        CeleryBridge.from_dict(config(PUBSUB_SUBSCRIPTION_OPTIONS={"ack_deadline": 5}))


def test_from_object_refuses_a_near_miss_of_a_key_but_ignores_the_apps_other_settings():
    typo = SimpleNamespace(**config(), PUBSUB_QUEUE_NAEM="reports")
    with pytest.raises(relay.ConfigurationError, match="PUBSUB_QUEUE_NAEM is not a Celery "
                       "bridge key \\(did you mean PUBSUB_QUEUE_NAME\\?\\)"):
        BridgeConfig.from_object(typo)
    with pytest.raises(relay.ConfigurationError, match="PUBSUB_EXCHANGE is not set"):
        BridgeConfig.from_object(SimpleNamespace(DEBUG=True))
    with pytest.raises(relay.ConfigurationError, match="from_dict needs a dict of PUBSUB_"):
        BridgeConfig.from_dict(SimpleNamespace())  # type: ignore[arg-type]


def test_a_bridge_needs_a_bridge_config():
    with pytest.raises(relay.ConfigurationError, match=r"CeleryBridge needs a BridgeConfig, got "
                       r"dict; use CeleryBridge\.from_dict"):
        CeleryBridge(config())  # type: ignore[arg-type]


def test_get_celery_app_is_called_once_at_first_use_and_checked():
    calls = []

    def get_app() -> Celery:
        calls.append(1)
        return app

    app = _app()
    bridge = CeleryBridge.from_dict(config(PUBSUB_GET_CELERY_APP=get_app))
    assert calls == []
    assert bridge.celery_app is app and bridge.celery_app is app
    assert calls == [1]

    not_an_app = CeleryBridge.from_dict(config(PUBSUB_GET_CELERY_APP=lambda: "my_app.celery"))
    with pytest.raises(relay.ConfigurationError, match=r"PUBSUB_GET_CELERY_APP tests\.contrib\."
                       r"test_celery_config\..*<lambda> returned 'my_app\.celery', "
                       r"not a Celery app"):
        not_an_app.celery_app  # noqa: B018

    def broken() -> Celery:
        raise ImportError("no module named my_app")

    with pytest.raises(relay.ConfigurationError, match=r"PUBSUB_GET_CELERY_APP .*broken raised "
                       r"ImportError: no module named my_app; it must return your Celery app"):
        CeleryBridge.from_dict(config(PUBSUB_GET_CELERY_APP=broken)).celery_app  # noqa: B018


# ------------------------------------------------------------------ the subscription
def test_the_subscription_is_named_by_the_queue_name_or_by_relays_rule():
    settings = relay.Settings.load({"SUB_PREFIX": "reports"}, environ={})
    named = CeleryBridge.from_dict(config(PUBSUB_QUEUE_NAME="reports-events")).subscription
    default = CeleryBridge.from_dict(config()).subscription

    assert named.resolve(settings).name == "reports-events"
    assert default.resolve(settings).name == "reports-events"  # SUB_PREFIX-exchange
    branch = settings.replace(topic_prefix="feat1-")
    assert (named.resolve(branch).name, named.resolve(branch).full_topic) == (
        "feat1-reports-events", "feat1-events",
    )
    copy = named.with_options(ack_deadline=30)
    assert (type(copy), copy.name, copy.ack_deadline) == (type(named), "reports-events", 30)
    assert "<BridgeSubscription reports-events topic=events routes=app1.matches" in repr(named)


def test_unrouted_dead_letter_needs_a_dead_letter_topic_when_the_worker_is_built():
    bridge = CeleryBridge.from_dict(config(PUBSUB_UNROUTED="dead_letter"))
    with memory_app() as env, pytest.raises(
        relay.ConfigurationError,
        match="PUBSUB_UNROUTED is 'dead_letter' but subscription 'events' has no dead-letter "
              "topic; set PUBSUB_SUBSCRIPTION_OPTIONS=",
    ):
        env.worker([bridge.subscription])
    kept = CeleryBridge.from_dict(config(
        PUBSUB_UNROUTED="dead_letter",
        PUBSUB_SUBSCRIPTION_OPTIONS={"dead_letter_topic": "events-dead"},
    ))
    with memory_app() as env:
        assert env.worker([kept.subscription]).subscriptions[0].dead_letter is not None
    with memory_app(DEAD_LETTER_TOPIC="{topic}-dead") as env:  # relay's default works too
        assert env.worker([bridge.subscription]).subscriptions[0].dead_letter is not None


def test_publish_event_refuses_a_missing_routing_key_or_one_given_twice():
    bridge = CeleryBridge.from_dict({"PUBSUB_EXCHANGE": "events"})
    with memory_app() as env:
        with pytest.raises(relay.ConfigurationError, match="publish_event needs a routing key"):
            bridge.publish_event("", {"id": 1})
        with pytest.raises(relay.ConfigurationError, match="attrs holds 'routing_key', the "
                           "attribute the routing key travels in"):
            bridge.publish_event("a.b", {"id": 1}, attrs={"routing_key": "c.d"})
        assert env.published == []
        bridge.publish_event("a.b", {"id": 1}, attrs={"source": "web"}).result(timeout=5)
        (record,) = env.published
        assert (record.topic, dict(record.attributes)) == (
            "events", {"routing_key": "a.b", "source": "web",
                       "published_at": record.attributes["published_at"]},
        )


def test_relay_cli_discovery_finds_the_bridge_subscription_in_a_subs_module():
    from types import ModuleType

    from relay.contrib.celery import BridgeSubscription
    from relay.discovery import subscriptions_in

    module = ModuleType("shop.subs")
    module.CeleryBridge = CeleryBridge  # imported names are not taken for subscriptions
    module.BridgeSubscription = BridgeSubscription
    module.bridge = CeleryBridge.from_dict(config(PUBSUB_QUEUE_NAME="reports-events"))
    module.subscription = module.bridge.subscription

    assert subscriptions_in(module) == [module.bridge.subscription]
