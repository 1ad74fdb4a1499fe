"""The Celery bridge's configuration: ``BridgeConfig`` and its ``Route`` list.

Built from keywords, a dict (``BridgeConfig.from_dict``) or a Flask config /
Django settings / any object (``BridgeConfig.from_object``), under the key
names of the ``pubsub`` library it replaces (``PUBSUB_TASK_MAPPING``,
``PUBSUB_GET_CELERY_APP``, ``PUBSUB_QUEUE_NAME``, ``PUBSUB_EXCHANGE``). Every
key and every mapping item is checked when the config is built: an error names
the key, the item (its index and routing key) and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from celery import Celery
from celery.app.task import Task
from celery.local import Proxy

from relay.errors import ConfigurationError
from relay.filters import _is_async, describe
from relay.limits import MAX_ATTRIBUTE_VALUE_BYTES, validate_attributes, validate_name

logger = logging.getLogger("relay.contrib.celery")

#: The message attribute that carries the routing key, unless configured otherwise.
ROUTING_KEY_ATTRIBUTE = "routing_key"
#: What the bridge does with a message no route matches: ack it as skipped, or
#: dead-letter it (the subscription must then have a dead-letter topic).
UNROUTED_CHOICES = ("skip", "dead_letter")
#: Keys of a ``PUBSUB_TASK_MAPPING`` item; the first four are mandatory.
MANDATORY_ROUTE_KEYS = ("routing_key", "task", "should_schedule", "get_args")
ROUTE_KEYS = (*MANDATORY_ROUTE_KEYS, "celery_kwargs")
#: ``relay.sub`` options ``PUBSUB_SUBSCRIPTION_OPTIONS`` may set.
SUBSCRIPTION_OPTIONS = (
    "prefix", "suffix", "filter_by", "backend_filter_by", "retry_policy", "ack_deadline",
    "dead_letter_topic", "max_delivery_attempts", "enable_message_ordering",
    "enable_exactly_once_delivery",
)
#: Keys the ``pubsub`` library read that relay does not need, with the reason.
IGNORED_KEYS = {
    "PUBSUB_BROKER_URL": (
        "relay reaches Pub/Sub through its own settings (RELAY: GC_PROJECT_ID and "
        "credentials, or PUBSUB_EMULATOR_HOST); remove it"
    ),
}
PREFIX = "PUBSUB_"


def _accepts_two(func: Callable[..., Any]) -> bool:
    try:
        inspect.signature(func).bind("routing.key", {})
    except TypeError:
        return False
    except ValueError:  # no signature to read (a builtin): trust it
        return True
    return True


def _check_callable(value: Any, key: str, where: str, example: str) -> None:
    if not callable(value):
        raise ConfigurationError(
            f"{where}: {key!r} must be a function of (routing_key, body), got {value!r}; "
            f"for example {example}"
        )
    if _is_async(value):
        raise ConfigurationError(
            f"{where}: {key!r} ({describe(value)}) is async, but the bridge calls it without "
            f"awaiting it; make it a plain def, e.g. {example}"
        )
    if not _accepts_two(value):
        raise ConfigurationError(
            f"{where}: {key!r} ({describe(value)}{inspect.signature(value)}) cannot be called "
            f"as f(routing_key, body), which is how the bridge calls it; for example {example}"
        )


def _check_task(task: Any, where: str) -> None:
    if isinstance(task, str):
        if not task.strip():
            raise ConfigurationError(
                f"{where}: 'task' is an empty string; give the Celery task's name, "
                "e.g. 'query.tasks.execute_script', or the task object"
            )
        return
    # type() first: isinstance() on a lazy @app.task proxy would evaluate it (and
    # finalize the Celery app) while settings are still being read.
    if issubclass(type(task), Proxy) or isinstance(task, Task):
        return
    if inspect.isfunction(task) or inspect.ismethod(task):
        raise ConfigurationError(
            f"{where}: 'task' is the plain function {describe(task)}, not a Celery task; "
            "decorate it with @app.task, or give the task's name as a string"
        )
    raise ConfigurationError(
        f"{where}: 'task' must be a Celery task's name (a str) or the task object, got "
        f"{task!r} ({type(task).__name__})"
    )


@dataclass(frozen=True)
class Route:
    """Send messages carrying ``routing_key`` to the Celery task ``task``.

    For each such message the bridge calls ``should_schedule(routing_key, body)``
    (``True``: send the task; ``False``: skip the message), ``get_args(routing_key,
    body)`` for the task's ``(args, kwargs)`` and, if given, ``celery_kwargs(
    routing_key, body)`` for the options of ``apply_async`` (``countdown``,
    ``queue``, ``priority``...). ``task`` is a task object (sent with its own
    ``apply_async``, so its options apply) or a task name (sent with the Celery
    app's ``send_task``: the bridge need not import the task's code).
    """

    routing_key: str
    task: Any
    should_schedule: Callable[[str, Any], bool]
    get_args: Callable[[str, Any], Any]
    celery_kwargs: Callable[[str, Any], Mapping[str, Any]] | None = None

    def __post_init__(self) -> None:
        _check_route(self, f"Route({self.routing_key!r})")

    @property
    def task_name(self) -> str:
        """The task's name (evaluates a lazy task object)."""
        return self.task if isinstance(self.task, str) else str(self.task.name)

    @classmethod
    def from_item(cls, item: Any, index: int) -> Route:
        """A route from one ``PUBSUB_TASK_MAPPING`` dict; errors name the item and the key."""
        if isinstance(item, Route):
            return item
        where = f"PUBSUB_TASK_MAPPING[{index}]"
        if not isinstance(item, Mapping):
            raise ConfigurationError(
                f"{where} is a {type(item).__name__}, not a dict; each item is a dict with the "
                f"keys {', '.join(MANDATORY_ROUTE_KEYS)} (and optionally celery_kwargs), or a "
                "relay.contrib.celery.Route"
            )
        key = item.get("routing_key")
        if isinstance(key, str) and key:
            where = f"{where} (routing_key {key!r})"
        unknown = [k for k in item if k not in ROUTE_KEYS]
        if unknown:
            close = difflib.get_close_matches(str(unknown[0]), ROUTE_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigurationError(
                f"{where} has the unknown key {unknown[0]!r}{hint}; an item's keys are "
                f"{', '.join(ROUTE_KEYS)}"
            )
        for name in MANDATORY_ROUTE_KEYS:
            if name not in item:
                raise ConfigurationError(
                    f"{where} has no {name!r}, a mandatory key; every item needs "
                    f"{', '.join(MANDATORY_ROUTE_KEYS)} (celery_kwargs is optional)"
                )
        route = object.__new__(cls)
        for name in ROUTE_KEYS:
            object.__setattr__(route, name, item.get(name))
        _check_route(route, where)
        return route


def _check_route(route: Route, where: str) -> None:
    key = route.routing_key
    if not isinstance(key, str) or not key:
        raise ConfigurationError(
            f"{where}: 'routing_key' must be a non-empty string like 'app1.matches.published', "
            f"got {key!r}"
        )
    if len(key.encode()) > MAX_ATTRIBUTE_VALUE_BYTES:
        raise ConfigurationError(
            f"{where}: 'routing_key' is {len(key.encode())} bytes; it travels as a message "
            f"attribute, and Pub/Sub allows {MAX_ATTRIBUTE_VALUE_BYTES}"
        )
    _check_task(route.task, where)
    _check_callable(
        route.should_schedule, "should_schedule", where, "lambda routing_key, body: True"
    )
    _check_callable(
        route.get_args, "get_args", where, "lambda routing_key, body: ([body['id']], {})"
    )
    if route.celery_kwargs is not None:
        _check_callable(
            route.celery_kwargs, "celery_kwargs", where,
            "lambda routing_key, body: {'countdown': 10}",
        )


def _routes(value: Any) -> tuple[Route, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise ConfigurationError(
            f"PUBSUB_TASK_MAPPING must be a list of dicts (one per routing key), got a "
            f"{type(value).__name__}; wrap a single item in [...]"
        )
    routes = tuple(Route.from_item(item, i) for i, item in enumerate(value))
    if not routes:
        raise ConfigurationError(
            "PUBSUB_TASK_MAPPING is empty, so every message would be skipped; add a route, "
            "or leave the key out in a process that only publishes"
        )
    seen: dict[str, int] = {}
    for i, route in enumerate(routes):
        if route.routing_key in seen:
            raise ConfigurationError(
                f"PUBSUB_TASK_MAPPING[{i}] maps routing key {route.routing_key!r} again "
                f"(PUBSUB_TASK_MAPPING[{seen[route.routing_key]}] maps it already); one route "
                "per key: to start two tasks, send one that starts the other (or a Celery "
                "group), or run a second bridge with its own PUBSUB_QUEUE_NAME"
            )
        seen[route.routing_key] = i
    return routes


@dataclass(frozen=True)
class BridgeConfig:
    """What ``CeleryBridge`` needs; each field is the ``PUBSUB_<NAME>`` key in upper case.

    A process that only publishes needs ``exchange`` alone; one that consumes
    needs ``task_mapping`` and, if any route names its task by a string,
    ``get_celery_app``.
    """

    #: The Pub/Sub topic events are published to (``TOPIC_PREFIX`` applies).
    exchange: str
    #: The routes: ``Route`` objects or dicts with the ``Route`` field names
    #: (read them back, checked, from ``routes``).
    task_mapping: Sequence[Route | Mapping[str, Any]] | None = None
    #: The Celery app, or a function of no arguments returning it (called once,
    #: when the first message arrives or ``CeleryBridge.celery_app`` is read).
    get_celery_app: Any = None
    #: The subscription's exact name (``TOPIC_PREFIX`` applies); by default
    #: relay's ``SUB_PREFIX-exchange``.
    queue_name: str | None = None
    #: The attribute that carries the routing key.
    routing_key_attribute: str = ROUTING_KEY_ATTRIBUTE
    #: ``"skip"`` (ack, status skipped, a WARNING) or ``"dead_letter"``.
    unrouted: str = "skip"
    #: ``relay.sub`` options for the subscription (dead_letter_topic, retry_policy, ...).
    subscription_options: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({})
    )
    #: ``task_mapping``, checked: one ``Route`` per routing key.
    routes: tuple[Route, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        validate_name(self.exchange, "PUBSUB_EXCHANGE topic")
        object.__setattr__(self, "routes", _routes(self.task_mapping))
        object.__setattr__(self, "task_mapping", self.routes)
        source = self.get_celery_app
        if source is not None and not isinstance(source, Celery) and not callable(source):
            raise ConfigurationError(
                f"PUBSUB_GET_CELERY_APP must be the Celery app or a function returning it, got "
                f"{source!r}; e.g. def get_celery_app(): from my_app.celery import app; "
                "return app"
            )
        named = [r.routing_key for r in self.routes if isinstance(r.task, str)]
        if named and source is None:
            raise ConfigurationError(
                f"PUBSUB_GET_CELERY_APP is not set, but the route(s) {', '.join(named)} name "
                "their task by a string, which the bridge sends with the Celery app's "
                "send_task; set PUBSUB_GET_CELERY_APP to a function returning your Celery app"
            )
        if self.queue_name is not None:
            validate_name(self.queue_name, "PUBSUB_QUEUE_NAME subscription")
        attribute = self.routing_key_attribute
        if not isinstance(attribute, str) or not attribute:
            raise ConfigurationError(
                f"PUBSUB_ROUTING_KEY_ATTRIBUTE must be a non-empty string, got {attribute!r}"
            )
        validate_attributes({attribute: ""})
        if self.unrouted not in UNROUTED_CHOICES:
            raise ConfigurationError(
                f"PUBSUB_UNROUTED is {self.unrouted!r}; it must be 'skip' (ack and report the "
                "message as skipped, with a WARNING) or 'dead_letter' (send it to the "
                "subscription's dead-letter topic)"
            )
        options = self.subscription_options
        if not isinstance(options, Mapping):
            raise ConfigurationError(
                f"PUBSUB_SUBSCRIPTION_OPTIONS must be a dict of relay.sub options, got "
                f"{type(options).__name__}"
            )
        unknown = sorted(str(k) for k in options if k not in SUBSCRIPTION_OPTIONS)
        if unknown:
            raise ConfigurationError(
                f"PUBSUB_SUBSCRIPTION_OPTIONS has the unknown option(s) {', '.join(unknown)}; "
                f"it takes {', '.join(SUBSCRIPTION_OPTIONS)}"
            )
        if self.queue_name is not None and {"prefix", "suffix"} & set(options):
            raise ConfigurationError(
                f"PUBSUB_QUEUE_NAME {self.queue_name!r} names the subscription exactly, so "
                "PUBSUB_SUBSCRIPTION_OPTIONS cannot also set prefix or suffix; drop one"
            )
        object.__setattr__(self, "subscription_options", MappingProxyType(dict(options)))

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> BridgeConfig:
        """From a dict of ``PUBSUB_*`` keys; any other key is an error naming it."""
        if not isinstance(mapping, Mapping):
            raise ConfigurationError(
                f"BridgeConfig.from_dict needs a dict of PUBSUB_* keys, got "
                f"{type(mapping).__name__}; use BridgeConfig.from_object for a settings object"
            )
        values: dict[str, Any] = {}
        for key, value in mapping.items():
            name = _field_of(key)
            if name is None:
                if key in IGNORED_KEYS:
                    _ignored(key)
                    continue
                close = difflib.get_close_matches(str(key), KEYS, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise ConfigurationError(
                    f"unknown Celery bridge key {key!r}{hint}; the keys are {', '.join(KEYS)}"
                )
            values[name] = value
        return cls._build(values)

    @classmethod
    def from_object(cls, obj: Any) -> BridgeConfig:
        """From a Flask config, Django settings, a module or any object with ``PUBSUB_*`` keys.

        Other keys are ignored (it holds the whole application's settings), except
        a ``PUBSUB_*`` name one letter or two away from a bridge key, which is
        taken for a typo and refused.
        """
        get = obj.get if isinstance(obj, Mapping) else lambda k, d=None: getattr(obj, k, d)
        names = obj.keys() if isinstance(obj, Mapping) else dir(obj)
        values: dict[str, Any] = {}
        for key in KEYS:
            value = get(key, _MISSING)
            if value is not _MISSING:
                values[_field_of(key) or key] = value
        for name in names:
            if not isinstance(name, str) or not name.startswith(PREFIX) or name in KEYS:
                continue
            if name in IGNORED_KEYS:
                _ignored(name)
                continue
            close = difflib.get_close_matches(name, KEYS, n=1, cutoff=0.85)
            if close and close[0] not in values:
                raise ConfigurationError(
                    f"{name} is not a Celery bridge key (did you mean {close[0]}?); the keys "
                    f"are {', '.join(KEYS)}"
                )
        return cls._build(values)

    @classmethod
    def _build(cls, values: dict[str, Any]) -> BridgeConfig:
        if values.get("exchange") is None:
            raise ConfigurationError(
                "PUBSUB_EXCHANGE is not set: it names the Pub/Sub topic events are published "
                "to and consumed from, e.g. PUBSUB_EXCHANGE = 'events'"
            )
        # None is "not set" (a Django setting left as None), so the default applies.
        return cls(**{name: value for name, value in values.items() if value is not None})


_MISSING = object()
#: Every key ``from_dict``/``from_object`` read, from the field names.
KEYS = tuple(PREFIX + f.name.upper() for f in dataclasses.fields(BridgeConfig) if f.init)


def _field_of(key: Any) -> str | None:
    if isinstance(key, str) and key in KEYS:
        return key[len(PREFIX):].lower()
    return None


def _ignored(key: str) -> None:
    logger.warning("%s is ignored by the Celery bridge: %s", key, IGNORED_KEYS[key])
