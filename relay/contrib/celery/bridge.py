"""``CeleryBridge``: Pub/Sub events in, Celery tasks out; ``publish_event`` to send them.

The bridge is a relay ``Subscription`` (``bridge.subscription``) whose handler
routes each message by its routing-key attribute, so the Worker, middleware,
the ack policy, dead letters, tracing, provisioning and ``relay-cli run`` apply
to it unchanged. For one message, the handler:

==========================================  ===========================================
what happens                                the message
==========================================  ===========================================
no routing-key attribute, or a key no       acked, status ``skipped``, a WARNING
route maps (``PUBSUB_UNROUTED='skip'``)     (``SkipMessage``)
the same, with                              dead-lettered, a WARNING (``UnrecoverableError``)
``PUBSUB_UNROUTED='dead_letter'``
``should_schedule`` returned False          acked, status ``skipped`` (``SkipMessage``), INFO
Celery accepted the task                    acked, status ``success``; ``outcome.result``
                                            is the Celery task id
``apply_async``/``send_task`` raised        nacked (``SendError``): Pub/Sub delivers it
(broker down or refusing, ...)              again
a route's function raised, or returned      nacked (``RouteError`` naming the route and the
the wrong thing                             function); after ``max_delivery_attempts``
                                            Pub/Sub moves it to the dead-letter topic,
                                            if the subscription has one
a route's function raised                   dead-lettered where there is a dead-letter
``relay.UnrecoverableError``                topic, else acked with an ERROR
==========================================  ===========================================

A message is acked only after Celery accepted the task: after ``apply_async``
returned, which for RabbitMQ with ``confirm_publish`` means the broker confirmed
it.
"""

from __future__ import annotations

import logging
import reprlib
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, NoReturn

from celery import Celery

from relay.app import get_app, publish
from relay.errors import ConfigurationError, RelayError, SkipMessage, UnrecoverableError
from relay.filters import describe
from relay.limits import validate_name
from relay.subscription import Subscription
from relay.worker import Worker

from .config import BridgeConfig, Route

if TYPE_CHECKING:
    from relay.settings import Settings
    from relay.transports.base import Transport

logger = logging.getLogger("relay.contrib.celery")

_REDELIVERED = (
    "the message is nacked, so Pub/Sub delivers it again (and, if the subscription has a "
    "dead-letter topic, moves it there after max_delivery_attempts)"
)


class RouteError(RelayError):
    """A route's ``should_schedule``, ``get_args`` or ``celery_kwargs`` raised, or
    returned something the bridge cannot use. The message is nacked; ``__cause__``
    holds what the function raised."""


class SendError(RelayError):
    """Celery did not accept the task (``apply_async`` or ``send_task`` raised: the
    broker is down or refused it, the arguments cannot be serialised...). The
    message is nacked; ``__cause__`` holds Celery's error."""


class CeleryBridge:
    """Routes the messages of one Pub/Sub topic to Celery tasks; publishes such events.

    Build it from a ``BridgeConfig``, or with ``CeleryBridge.from_dict`` /
    ``CeleryBridge.from_object``. Run it by putting ``bridge.subscription`` in
    a ``subs`` module (``relay-cli run`` finds it) or with ``Subscriber``.
    """

    def __init__(self, config: BridgeConfig) -> None:
        if not isinstance(config, BridgeConfig):
            raise ConfigurationError(
                f"CeleryBridge needs a BridgeConfig, got {type(config).__name__}; use "
                "CeleryBridge.from_dict(...) or CeleryBridge.from_object(settings)"
            )
        self.config = config
        self.routes: dict[str, Route] = {r.routing_key: r for r in config.routes}
        self._celery_app: Any = None
        self._lock = threading.Lock()
        self._subscription = BridgeSubscription(self) if self.routes else None

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> CeleryBridge:
        return cls(BridgeConfig.from_dict(mapping))

    @classmethod
    def from_object(cls, obj: Any) -> CeleryBridge:
        return cls(BridgeConfig.from_object(obj))

    @property
    def subscription(self) -> BridgeSubscription:
        """The relay subscription that consumes ``PUBSUB_EXCHANGE`` for this bridge."""
        if self._subscription is None:
            raise ConfigurationError(
                "this Celery bridge has no PUBSUB_TASK_MAPPING, so it can publish events but "
                "not consume them; add the routes to consume"
            )
        return self._subscription

    @property
    def celery_app(self) -> Any:
        """The Celery app, from ``PUBSUB_GET_CELERY_APP`` (called once, at first use)."""
        if self._celery_app is None:
            with self._lock:
                if self._celery_app is None:
                    self._celery_app = self._load_celery_app()
        return self._celery_app

    def _load_celery_app(self) -> Any:
        source = self.config.get_celery_app
        if source is None:
            raise ConfigurationError(
                "PUBSUB_GET_CELERY_APP is not set; set it to a function returning your Celery app"
            )
        if isinstance(source, Celery):
            return source
        try:
            app = source()
        except Exception as exc:
            raise ConfigurationError(
                f"PUBSUB_GET_CELERY_APP {describe(source)} raised {type(exc).__name__}: {exc}; "
                "it must return your Celery app"
            ) from exc
        if not isinstance(app, Celery):
            raise ConfigurationError(
                f"PUBSUB_GET_CELERY_APP {describe(source)} returned {reprlib.repr(app)}, not a "
                "Celery app; return the app itself, e.g. from my_app.celery import app; "
                "return app"
            )
        return app

    # ------------------------------------------------------------- publishing
    def publish_event(
        self,
        routing_key: str,
        body: Any,
        *,
        attrs: Mapping[str, str] | None = None,
        ordering_key: str = "",
        blocking: bool | None = None,
        timeout: float | None = None,
    ) -> Future[str]:
        """Publish ``body`` (as JSON) to ``PUBSUB_EXCHANGE`` with the routing key attribute.

        Goes through relay's process-wide publisher (``relay.publish``), so its
        settings, middleware, validation and errors apply; returns its future.
        """
        if not isinstance(routing_key, str) or not routing_key:
            raise ConfigurationError(
                f"publish_event needs a routing key (a non-empty string such as "
                f"'app1.matches.published'), got {routing_key!r}"
            )
        attribute = self.config.routing_key_attribute
        merged = dict(attrs or {})
        if attribute in merged:
            raise ConfigurationError(
                f"attrs holds {attribute!r}, the attribute the routing key travels in; pass "
                "the routing key as publish_event's first argument only"
            )
        merged[attribute] = routing_key
        future: Future[str] = publish(
            self.config.exchange, body, attrs=merged, ordering_key=ordering_key,
            blocking=blocking, timeout=timeout,
        )
        return future

    # ------------------------------------------------------------- consuming
    def handle(self, body: Any, /, **attributes: str) -> str:
        """Route one message (see the module docstring); returns the Celery task id."""
        key = attributes.get(self.config.routing_key_attribute)
        route = self.routes.get(key) if key is not None else None
        if route is None or key is None:
            self._unrouted(key)
        scheduled = self._call(route, "should_schedule", key, body)
        if scheduled is False:
            raise SkipMessage(
                f"route {key!r}: should_schedule returned False, so task "
                f"{_label(route)} was not sent"
            )
        if scheduled is not True:
            raise RouteError(
                f"route {key!r}: should_schedule {describe(route.should_schedule)} returned "
                f"{reprlib.repr(scheduled)} ({type(scheduled).__name__}), not a bool: return "
                f"True to send the task or False to skip the message; {_REDELIVERED}"
            )
        args, kwargs = self._arguments(route, key, body)
        options = self._options(route, key, body)
        return self._send(route, key, args, kwargs, options)

    def _unrouted(self, key: str | None) -> NoReturn:
        config = self.config
        what = (
            f"no {config.routing_key_attribute!r} attribute" if key is None
            else f"the routing key {key!r}, which no route maps"
        )
        routes = ", ".join(self.routes)
        detail = f"a message on topic {config.exchange!r} has {what} (routes: {routes})"
        if config.unrouted == "dead_letter":
            logger.warning("%s; it goes to the dead-letter topic", detail)
            raise UnrecoverableError(f"no Celery route: {detail}")
        logger.warning("%s; acked and reported as skipped", detail)
        raise SkipMessage(f"no Celery route: {detail}")

    @staticmethod
    def _call(route: Route, what: str, key: str, body: Any) -> Any:
        func = getattr(route, what)
        try:
            return func(key, body)
        except SkipMessage as exc:
            raise SkipMessage(f"route {key!r}: {what} skipped the message: {exc}") from exc
        except UnrecoverableError as exc:
            raise UnrecoverableError(
                f"route {key!r}: {what} {describe(func)} raised UnrecoverableError: {exc}"
            ) from exc
        except Exception as exc:
            raise RouteError(
                f"route {key!r}: {what} {describe(func)} raised {type(exc).__name__}: {exc}; "
                f"{_REDELIVERED}"
            ) from exc

    def _arguments(
        self, route: Route, key: str, body: Any
    ) -> tuple[list[Any], dict[str, Any]]:
        value = self._call(route, "get_args", key, body)
        if isinstance(value, (tuple, list)) and len(value) == 2:
            args, kwargs = value
            if (
                isinstance(args, Sequence) and not isinstance(args, (str, bytes))
                and isinstance(kwargs, Mapping) and all(isinstance(k, str) for k in kwargs)
            ):
                return list(args), dict(kwargs)
        raise RouteError(
            f"route {key!r}: get_args {describe(route.get_args)} returned "
            f"{reprlib.repr(value)}, not (args, kwargs): return a list of positional "
            f"arguments and a dict of keyword arguments, e.g. ([body['id']], {{}}); "
            f"{_REDELIVERED}"
        )

    def _options(self, route: Route, key: str, body: Any) -> dict[str, Any]:
        if route.celery_kwargs is None:
            return {}
        value = self._call(route, "celery_kwargs", key, body)
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise RouteError(
                f"route {key!r}: celery_kwargs {describe(route.celery_kwargs)} returned "
                f"{reprlib.repr(value)}, not a dict of apply_async options such as "
                f"{{'countdown': 10, 'queue': 'reports'}}; {_REDELIVERED}"
            )
        clash = sorted({"args", "kwargs"} & set(value))
        if clash:
            raise RouteError(
                f"route {key!r}: celery_kwargs {describe(route.celery_kwargs)} sets "
                f"{', '.join(clash)}, which get_args gives; return only apply_async options; "
                f"{_REDELIVERED}"
            )
        return dict(value)

    def _send(
        self, route: Route, key: str, args: list[Any], kwargs: dict[str, Any],
        options: dict[str, Any],
    ) -> str:
        task = route.task
        app = self.celery_app if isinstance(task, str) else None
        try:
            if app is not None:
                result = app.send_task(task, args=args, kwargs=kwargs, **options)
            else:
                result = task.apply_async(args=args, kwargs=kwargs, **options)
        except Exception as exc:
            raise SendError(
                f"Celery did not accept task {_label(route)} for routing key {key!r} "
                f"({type(exc).__name__}: {exc}); the message is nacked, so Pub/Sub delivers "
                "it again"
            ) from exc
        task_id = str(result.id)
        logger.debug("routing key %r: sent task %s as %s", key, _label(route), task_id)
        return task_id


def _label(route: Route) -> str:
    try:
        return repr(route.task_name)
    except Exception:  # a lazy task that cannot even be evaluated
        return describe(route.task)


class BridgeSubscription(Subscription):
    """The bridge's subscription to ``PUBSUB_EXCHANGE``; its handler is ``bridge.handle``.

    Named ``PUBSUB_QUEUE_NAME`` exactly (with ``TOPIC_PREFIX`` in front, like
    every relay subscription name carries the prefixed topic) if that is set,
    else by relay's rule (``SUB_PREFIX-exchange``). ``PUBSUB_SUBSCRIPTION_OPTIONS``
    are ``@sub``'s options.
    """

    def __init__(self, bridge: CeleryBridge) -> None:
        self.bridge = bridge
        self.queue_name = bridge.config.queue_name
        config = bridge.config
        super().__init__(bridge.handle, config.exchange, **config.subscription_options)

    def _set_names(self) -> None:
        super()._set_names()
        if self.queue_name is not None:
            self.name = validate_name(f"{self.topic_prefix}{self.queue_name}", "subscription")

    def resolve(self, settings: Settings) -> Subscription:
        clone = super().resolve(settings)
        if self.bridge.config.unrouted == "dead_letter" and clone.dead_letter is None:
            raise ConfigurationError(
                f"PUBSUB_UNROUTED is 'dead_letter' but subscription {clone.name!r} has no "
                "dead-letter topic; set PUBSUB_SUBSCRIPTION_OPTIONS={'dead_letter_topic': ...} "
                "or relay's DEAD_LETTER_TOPIC, or PUBSUB_UNROUTED='skip'"
            )
        return clone

    def with_options(self, **changes: Any) -> Subscription:
        plain = super().with_options(**changes)
        clone = object.__new__(type(self))
        clone.__dict__.update(plain.__dict__)
        clone.bridge, clone.queue_name = self.bridge, self.queue_name
        clone._set_names()
        return clone

    def __repr__(self) -> str:
        return (
            f"<BridgeSubscription {self.name} topic={self.full_topic} "
            f"routes={', '.join(self.bridge.routes)}>"
        )


class Subscriber:
    """``Subscriber(config).start()``, as in the ``pubsub`` library: a relay Worker
    consuming the bridge's subscription, on the process-wide app's settings and
    middleware (``relay.configure``).

    ``start()`` blocks until ``stop()`` is called (from another thread) or the
    process gets KeyboardInterrupt, then drains (``DRAIN_TIMEOUT``). It installs
    no signal handler: in production run ``relay-cli run``, which drains on SIGTERM.
    """

    def __init__(
        self, config: BridgeConfig | CeleryBridge, *, transport: Transport | None = None
    ) -> None:
        self.bridge = config if isinstance(config, CeleryBridge) else CeleryBridge(config)
        self._transport = transport
        self._stop = threading.Event()
        self.worker: Worker | None = None
        #: After ``start()`` returned: whether every in-flight message finished.
        self.drained: bool | None = None

    def start(self) -> None:
        subscription = self.bridge.subscription
        if any(isinstance(r.task, str) for r in self.bridge.routes.values()):
            self.bridge.celery_app  # noqa: B018 (a bad PUBSUB_GET_CELERY_APP fails here)
        app = get_app()
        worker = Worker(
            [subscription], settings=app.settings, middleware=app.middleware,
            transport=self._transport,
        )
        self.worker = worker
        try:
            worker.start()
            self._stop.wait()
        finally:
            self.drained = worker.stop()

    def stop(self) -> None:
        """Ask ``start()`` to drain and return."""
        self._stop.set()
