"""``@task``: a function other processes call through Pub/Sub, Celery-style.

A task IS a ``Subscription``: its handler reads the task wire format
(``relay.task_wire``) and calls the function, so discovery, provisioning,
``relay-cli subs``/``plan``/``run``, the Worker, middleware, the ack policy and
dead letters treat it like any ``@sub``::

    from relay import task

    @task
    def add(x: int, y: int) -> int:
        return x + y

    add(2, 3)                       # runs here, now: 5
    handle = add.delay(2, 3)        # a worker runs it
    handle.result(timeout=10)       # 5 (with RESULTS set)

Naming: a task's topic is ``<module>.<qualname>`` of its function
(``shop.billing.subs.charge``) unless ``topic=`` names one; its subscription
is named from the topic like any subscription's (``SUB_PREFIX`` before it,
``suffix`` after), and ``TOPIC_PREFIX`` applies to the topic. The module name
is the one the function was imported under, so the sender and the worker must
import it by the same name (``relay-cli run`` imports ``shop/billing/subs.py``
as ``shop.billing.subs`` from the project root). Functions in ``__main__`` or
nested in other functions need ``topic=``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import math
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, overload

from relay.async_result import AsyncResult
from relay.errors import ConfigurationError, EncodeError, UnrecoverableError
from relay.filters import Filter
from relay.filters import describe as _describe
from relay.limits import validate_name
from relay.policies import RetryPolicy
from relay.subscription import SUB_OPTIONS, Subscription
from relay.task_wire import (
    ATTR_ETA,
    ATTR_ID,
    ATTR_REPLY_TO,
    ATTR_VERSION,
    RESERVED_ATTRIBUTES,
    VERSION,
    Reviver,
    call_data,
    check_eta,
    format_eta,
    read_call,
)

F = TypeVar("F", bound=Callable[..., Any])

#: ``@task``'s options besides ``@sub``'s (``SUB_OPTIONS``).
TASK_OPTIONS = ("ignore_result", "track_started")


def task_name(fn: Callable[..., Any]) -> str:
    """``<module>.<qualname>``: the name a task goes by in logs, records and errors."""
    return f"{getattr(fn, '__module__', None) or '?'}.{getattr(fn, '__qualname__', repr(fn))}"


def default_topic(fn: Callable[..., Any]) -> str:
    """The topic of a task declared without ``topic=``: its ``task_name``."""
    name = task_name(fn)
    if fn.__module__ == "__main__":
        raise ConfigurationError(
            f"task {name} is defined in __main__, a module name the sender and the worker "
            "do not share; move it into a module, or name its topic: @task('my-topic')"
        )
    if "<locals>" in fn.__qualname__:
        raise ConfigurationError(
            f"task {name} is defined inside a function; declare it at module level, or "
            "name its topic: @task('my-topic')"
        )
    try:
        return validate_name(name, "topic")
    except ConfigurationError as exc:
        raise ConfigurationError(f"task {name}: {exc}; name its topic: @task('my-topic')") from None


class Task(Subscription):
    """A function called through Pub/Sub. Build it with ``@task``.

    Calling it runs the function here; ``delay``/``apply_async`` send it to a
    worker and return an ``AsyncResult``.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        topic: str | None = None,
        *,
        ignore_result: bool = False,
        track_started: bool = True,
        topic_prefix: str = "",
        **options: Any,
    ) -> None:
        if not inspect.isroutine(fn) or isinstance(fn, Subscription):
            raise ConfigurationError(f"@task decorates a function, got {fn!r}")
        for option, value in (("ignore_result", ignore_result), ("track_started", track_started)):
            if not isinstance(value, bool):
                raise ConfigurationError(
                    f"{option} of task {task_name(fn)} must be True or False, got {value!r}"
                )
        self.fn = fn
        self.task_name = task_name(fn)
        try:  # annotations as types, for errors that read like the code
            self.signature = inspect.signature(fn, eval_str=True)
        except Exception:  # a forward reference not defined yet
            self.signature = inspect.signature(fn)
        #: Keep no outcome (the caller never reads it): no reply, no record.
        self.ignore_result = ignore_result
        #: Record ``started`` when a worker takes it up (one more result message).
        self.track_started = track_started
        self._reviver = Reviver(fn)
        super().__init__(
            _handler_for(self), default_topic(fn) if topic is None else topic,
            topic_prefix=topic_prefix, **options,
        )
        self.handler_name = _describe(fn)
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    # --------------------------------------------------------------- calling
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function here and now, as if it were not a task."""
        return self.fn(*args, **kwargs)

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        """Send ``fn(*args, **kwargs)`` to a worker: ``apply_async(args, kwargs)``."""
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: dt.datetime | None = None,
        ordering_key: str = "",
        attrs: Mapping[str, str] | None = None,
    ) -> AsyncResult:
        """Send a call to a worker; returns its ``AsyncResult`` at once.

        Before anything is sent: the arguments are bound to the function's
        signature (``TypeError`` naming the task), encoded as JSON
        (``relay.EncodeError`` naming the argument) and the delay is checked
        (``ConfigurationError`` beyond ``relay.delays.max_delay``). ``countdown``
        is seconds from now, ``eta`` a timezone-aware ``datetime``; a worker
        runs the task no earlier. ``attrs`` are extra message attributes
        (``relay_*`` names are relay's). Publishing follows ``PUBLISHER_BLOCKING``;
        a task that could not be sent makes the handle raise ``PublishError``.
        """
        from relay.app import get_app
        from relay.delays import max_delay
        from relay.results import results_backend

        if isinstance(args, (str, bytes)) or not isinstance(args, Sequence):
            raise TypeError(f"task {self.task_name}: args must be a tuple or list, got {args!r}")
        call_kwargs = dict(kwargs or {})
        self.check_arguments(args, call_kwargs)
        app = get_app()
        due = _due(self.task_name, countdown, eta, max_delay(app.settings))
        attributes = dict(attrs or {})
        taken = RESERVED_ATTRIBUTES.intersection(attributes)
        if taken:
            raise ConfigurationError(
                f"task {self.task_name}: attribute(s) {', '.join(sorted(taken))} are relay's "
                "own (the task wire format); rename yours"
            )
        task_id = uuid.uuid4().hex
        attributes[ATTR_VERSION] = VERSION
        attributes[ATTR_ID] = task_id
        if due is not None:
            attributes[ATTR_ETA] = format_eta(due)
        backend = None if self.ignore_result else results_backend(app.middleware)
        if backend is not None:
            reply_to = backend.watch(task_id)
            if reply_to:
                attributes[ATTR_REPLY_TO] = reply_to
        try:
            future = app.publisher.publish(
                self.topic, call_data(args, call_kwargs), ordering_key=ordering_key,
                attrs=attributes,
            )
        except EncodeError as exc:
            if backend is not None:
                backend.unwatch(task_id)
            text = re.sub(r"at data\['args'\]\[(\d+)\]", r"in positional argument \1", str(exc))
            text = re.sub(r"at data\['kwargs'\]\[('[^']*')\]", r"in argument \1", text)
            raise EncodeError(f"cannot send task {self.task_name}: {text}") from exc
        except BaseException:
            if backend is not None:
                backend.unwatch(task_id)
            raise
        return AsyncResult(
            task_id, task=self.task_name, backend=backend, published=future,
            topic=self.topic, ignore_result=self.ignore_result, _watched=True,
        )

    def check_arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """``TypeError`` naming the task if ``fn(*args, **kwargs)`` would not bind."""
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"task {self.task_name}{self.signature}: {exc}") from None

    # --------------------------------------------------------------- working
    def arguments(self, data: Any, attributes: Mapping[str, str]) -> inspect.BoundArguments:
        """A received message's call, bound and typed; ``UnrecoverableError`` if it
        cannot be (another wire version, arguments the function no longer takes)."""
        args, kwargs = read_call(self.task_name, data, attributes)
        check_eta(self.task_name, attributes)
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise UnrecoverableError(
                f"task {self.task_name}: the message's arguments do not fit "
                f"{self.fn.__name__}{self.signature} ({exc}); was the function changed "
                "after the message was sent? It is not retried"
            ) from exc
        self._reviver.revive(self.task_name, bound)
        return bound

    def with_options(self, **changes: Any) -> Task:
        """A copy with some options changed (validated again)."""
        current = {
            **self._declared(),
            "ignore_result": self.ignore_result, "track_started": self.track_started,
            **changes,
        }
        return Task(self.fn, topic_prefix=self.topic_prefix, **current)

    def __repr__(self) -> str:
        return f"<Task {self.task_name} topic={self.full_topic} subscription={self.name}>"


def _handler_for(task: Task) -> Callable[..., Any]:
    """The subscription handler: ``(data, /, **attributes)``, sync or async like ``fn``."""
    fn = task.fn
    if asyncio.iscoroutinefunction(fn):

        async def run_async(data: Any, /, **attributes: str) -> Any:
            bound = task.arguments(data, attributes)
            return await fn(*bound.args, **bound.kwargs)

        return run_async

    def run(data: Any, /, **attributes: str) -> Any:
        bound = task.arguments(data, attributes)
        return fn(*bound.args, **bound.kwargs)

    return run


def _due(name: str, countdown: float | None, eta: dt.datetime | None, limit: float) -> float | None:
    """Epoch seconds the task is due at, or None for now; checks the delay."""
    if countdown is not None and eta is not None:
        raise ConfigurationError(f"task {name}: pass countdown or eta, not both")
    now = time.time()
    if countdown is not None:
        if isinstance(countdown, bool) or not isinstance(countdown, (int, float)) or not (
            math.isfinite(countdown) and countdown >= 0
        ):
            raise ConfigurationError(
                f"task {name}: countdown={countdown!r}; expected seconds from now, 0 or more"
            )
        when = now + countdown
    elif eta is not None:
        if not isinstance(eta, dt.datetime) or eta.tzinfo is None:
            raise ConfigurationError(
                f"task {name}: eta={eta!r}; expected a timezone-aware datetime, e.g. "
                "datetime.now(timezone.utc) + timedelta(minutes=5)"
            )
        when = eta.timestamp()
    else:
        return None
    if when - now > limit:
        raise ConfigurationError(
            f"task {name}: a delay of {when - now:.0f} s is longer than relay can hold a task "
            f"({limit:.0f} s, FLOW_MAX_LEASE_DURATION minus a margin): Pub/Sub has no delayed "
            "delivery, so a worker keeps the message leased until it is due. Raise "
            "FLOW_MAX_LEASE_DURATION on senders and workers, or schedule the call later "
            "(Cloud Scheduler)"
        )
    return when if when - now > 0 else None


@overload
def task(fn: F, /) -> Task: ...
@overload
def task(
    topic: str | None = None,
    /,
    *,
    prefix: str | None = ...,
    suffix: str | None = ...,
    filter_by: Filter | Sequence[Filter] | None = ...,
    backend_filter_by: str | None = ...,
    retry_policy: RetryPolicy | None = ...,
    ack_deadline: int | None = ...,
    dead_letter_topic: str | None = ...,
    max_delivery_attempts: int | None = ...,
    enable_message_ordering: bool = ...,
    enable_exactly_once_delivery: bool = ...,
    push_endpoint: str | None = ...,
    push_service_account: str | None = ...,
    push_audience: str | None = ...,
    ignore_result: bool = ...,
    track_started: bool = ...,
) -> Callable[[F], Task]: ...
def task(topic: Any = None, /, **options: Any) -> Any:
    """Declare a task: ``@task``, ``@task("topic")`` or ``@task(topic=..., **options)``.

    The options are ``@sub``'s (``prefix``, ``suffix``, ``filter_by``,
    ``backend_filter_by``, ``retry_policy``, ``ack_deadline``,
    ``dead_letter_topic``, ``max_delivery_attempts``, ``enable_message_ordering``,
    ``enable_exactly_once_delivery``, ``push_endpoint``, ``push_service_account``,
    ``push_audience``), checked the same way, plus
    ``ignore_result`` (keep no outcome) and ``track_started`` (record
    ``started``; default True).
    """
    if "topic" in options:
        if topic is not None:
            raise ConfigurationError("@task got the topic twice")
        topic = options.pop("topic")
    unknown = set(options) - set(SUB_OPTIONS) - set(TASK_OPTIONS)
    if unknown:
        raise ConfigurationError(
            f"@task got unknown option(s) {', '.join(sorted(unknown))}; it takes topic, "
            f"{', '.join(SUB_OPTIONS)}, {', '.join(TASK_OPTIONS)}"
        )
    if topic is not None and not isinstance(topic, str):
        if callable(topic) and not options:
            return Task(topic)  # bare @task
        raise ConfigurationError(
            f"@task takes a topic name or nothing, got {topic!r}: write @task or @task('topic')"
        )

    def decorator(fn: F) -> Task:
        return Task(fn, topic, **options)

    return decorator


__all__ = ["Task", "default_topic", "task", "task_name"]
