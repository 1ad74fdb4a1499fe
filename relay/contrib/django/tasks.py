"""Django's task framework on Pub/Sub: ``PubSubBackend`` and ``backend_subscriptions()``.

::

    TASKS = {
        "default": {
            "BACKEND": "relay.contrib.django.tasks.PubSubBackend",
            "QUEUES": ["default", "reports"],
            "OPTIONS": {"TOPIC": "django-tasks-{queue}"},     # the default
        }
    }

``task.enqueue(*args, **kwargs)`` validates the task and its arguments (Django's
own checks), writes a ``pending`` row (``relay.contrib.django.models.StoredResult``)
and publishes one message through relay's process-wide publisher to the
queue's topic, ``django-tasks-<queue>`` (``TOPIC_PREFIX`` applied by the
publisher). A relay worker consuming ``backend_subscriptions()`` (one
subscription per queue of every ``PubSubBackend`` alias) imports the task by its
module path, records it started, runs it, and records it succeeded or failed
before the message is acked. ``get_result(id)`` reads the row from any process.

The wire format, version 1: data ``{"args": [...], "kwargs": {...}}`` (the shape
of relay's own task calls); attributes ``django_task`` (the version, required),
``django_task_id`` (the result id) and ``django_task_path`` (the task's module
path). A worker refuses another version, or a message without them, with
``UnrecoverableError``: dead-lettered if the subscription has a dead-letter
topic, else acked with an ERROR line, never retried.

Failures: an exception in the task makes the result ``FAILED`` with the
exception's class and traceback, and the message is acked: Django's framework
has no retries, so the task is not run again (enqueue it again to retry). Only
a failure to record the outcome (the database is down) nacks the message, and
Pub/Sub redelivers it after the subscription's retry policy. A delivery of a
task already finished (Pub/Sub delivers at least once) is acked without running.

``run_after`` is not supported (``supports_defer = False``): relay holds
delayed messages only for its own ``@task`` subscriptions.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from functools import partial
from typing import Any

from relay.app import get_publisher
from relay.contrib.django.results import write
from relay.errors import ConfigurationError, UnrecoverableError
from relay.limits import validate_name
from relay.results import TaskRecord, TaskStatus
from relay.subscription import Subscription
from relay.task_wire import call_data, read_call

# The one compatibility shim: Django 6.0+ has django.tasks; on Django 5.2 the
# django-tasks backport has the same API under another package name.
_PACKAGE = "django.tasks" if importlib.util.find_spec("django.tasks") else "django_tasks"
framework: Any = importlib.import_module(_PACKAGE)
_base: Any = importlib.import_module(f"{_PACKAGE}.base")
_backends: Any = importlib.import_module(f"{_PACKAGE}.backends.base")
_signals: Any = importlib.import_module(f"{_PACKAGE}.signals")
_errors: Any = importlib.import_module(f"{_PACKAGE}.exceptions")
InvalidTask: Any = getattr(_errors, "InvalidTask", None) or _errors.InvalidTaskError
InvalidTaskBackend: Any = (
    getattr(_errors, "InvalidTaskBackend", None) or _errors.InvalidTaskBackendError
)
TaskResultDoesNotExist: Any = _errors.TaskResultDoesNotExist
_normalize_json: Callable[[Any], Any] = _base.normalize_json  # what Django applies to values

logger = logging.getLogger("relay.django.tasks")

#: The wire format version this relay writes and reads.
WIRE_VERSION = "1"
ATTR_VERSION = "django_task"
ATTR_ID = "django_task_id"
ATTR_PATH = "django_task_path"
#: ``OPTIONS["TOPIC"]`` by default: ``{queue}`` and ``{alias}`` are filled in.
DEFAULT_TOPIC = "django-tasks-{queue}"
#: What ``OPTIONS["SUBSCRIPTION"]`` may set: ``@sub``'s options of the same names.
SUBSCRIPTION_OPTIONS = frozenset({
    "prefix", "suffix", "retry_policy", "ack_deadline", "dead_letter_topic",
    "max_delivery_attempts", "enable_exactly_once_delivery",
})
_STATUS = {
    TaskStatus.PENDING: "READY", TaskStatus.STARTED: "RUNNING",
    TaskStatus.SUCCEEDED: "SUCCESSFUL", TaskStatus.FAILED: "FAILED",
}


class PubSubBackend(_backends.BaseTaskBackend):  # type: ignore[misc]
    """A ``TASKS`` backend that sends tasks through Pub/Sub to relay workers.

    ``QUEUES`` (required, not empty) are the queues tasks may use; each is a
    topic named by ``OPTIONS["TOPIC"]`` (default ``"django-tasks-{queue}"``) and
    one subscription. ``OPTIONS["SUBSCRIPTION"]`` gives those subscriptions
    ``@sub`` options (``dead_letter_topic``, ``max_delivery_attempts``,
    ``retry_policy``, ``ack_deadline``, ...).
    """

    supports_defer = False
    supports_async_task = True
    supports_get_result = True
    supports_priority = False

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        where = f"TASKS[{alias!r}]"
        if not self.queues:
            raise InvalidTaskBackend(
                f"{where}: QUEUES is empty; list the queue names, e.g. ['default']: each is "
                "a Pub/Sub topic and a subscription that workers consume"
            )
        options = dict(self.options)
        template = options.pop("TOPIC", DEFAULT_TOPIC)
        sub_options = dict(options.pop("SUBSCRIPTION", None) or {})
        if options:
            raise InvalidTaskBackend(
                f"{where}: unknown OPTIONS {', '.join(sorted(options))}; "
                "PubSubBackend takes TOPIC and SUBSCRIPTION"
            )
        unknown = set(sub_options) - SUBSCRIPTION_OPTIONS
        if unknown:
            raise InvalidTaskBackend(
                f"{where}: OPTIONS['SUBSCRIPTION'] has unknown key(s) "
                f"{', '.join(sorted(unknown))}; it takes {', '.join(sorted(SUBSCRIPTION_OPTIONS))}"
            )
        #: The topic of each queue, before ``TOPIC_PREFIX``.
        self.topics = {queue: self._topic(template, queue) for queue in sorted(self.queues)}
        if len(set(self.topics.values())) < len(self.topics):
            raise InvalidTaskBackend(
                f"{where}: OPTIONS['TOPIC']={template!r} gives several queues the same topic; "
                "put {queue} in it"
            )
        try:
            self._subscriptions = [
                Subscription(_handler(alias, queue), topic, **sub_options)
                for queue, topic in self.topics.items()
            ]
        except ConfigurationError as exc:
            raise InvalidTaskBackend(f"{where}: OPTIONS['SUBSCRIPTION']: {exc}") from exc

    def _topic(self, template: Any, queue: str) -> str:
        try:
            name = str(template).format(queue=queue, alias=self.alias)
            return validate_name(name, "topic")
        except (KeyError, IndexError, ValueError) as exc:  # ConfigurationError is a ValueError
            raise InvalidTaskBackend(
                f"TASKS[{self.alias!r}]: queue {queue!r} cannot be a topic with "
                f"OPTIONS['TOPIC']={template!r}: {exc}"
            ) from exc

    def subscriptions(self) -> list[Subscription]:
        """One subscription per queue; a Worker runs this backend's tasks with them."""
        return list(self._subscriptions)

    # --------------------------------------------------------------- caller
    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        """Validate, write a pending row, publish; return the ``READY`` ``TaskResult``.

        Arguments that are not JSON raise Django's ``TypeError`` and a bad task
        ``InvalidTask``, before anything is written or sent. If the publish
        raises, the row is deleted and the error propagates; if a
        non-blocking publish fails later, the result becomes ``FAILED`` with
        the publish error.
        """
        from django.utils import timezone

        from relay.contrib.django.models import StoredResult

        self.validate_task(task)
        result = _base.TaskResult(
            task=task, id=uuid.uuid4().hex, status=_base.TaskResultStatus.READY,
            enqueued_at=timezone.now(), started_at=None, finished_at=None,
            last_attempted_at=None, args=args, kwargs=kwargs, backend=self.alias,
            errors=[], worker_ids=[],
        )
        StoredResult.objects.create(
            id=result.id, task=task.module_path, backend=self.alias,
            queue_name=task.queue_name, args=result.args, kwargs=result.kwargs,
            enqueued_at=result.enqueued_at, version=1,
        )
        attributes = {ATTR_VERSION: WIRE_VERSION, ATTR_ID: result.id, ATTR_PATH: task.module_path}
        try:
            future = get_publisher().publish(
                self.topics[task.queue_name], call_data(result.args, result.kwargs),
                attrs=attributes,
            )
        except BaseException:
            StoredResult.objects.filter(pk=result.id).delete()
            raise
        future.add_done_callback(
            partial(_publish_done, result.id, task.module_path, threading.get_ident())
        )
        _signals.task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> Any:
        """The ``TaskResult`` of ``result_id`` from the database, in any process."""
        from relay.contrib.django.models import StoredResult

        row = StoredResult.objects.filter(pk=result_id, backend=self.alias).first()
        if row is None:
            raise TaskResultDoesNotExist(result_id)
        return self.task_result(row)

    def task_result(self, row: Any, task: Any = None) -> Any:
        """Django's ``TaskResult`` of a ``StoredResult`` row."""
        if task is None:
            task = load_task(row.task).using(backend=self.alias, queue_name=row.queue_name or None)
        status = TaskStatus(row.status)
        errors = []
        if status is TaskStatus.FAILED and row.error_type:
            errors.append(_base.TaskError(
                exception_class_path=row.error_type,
                traceback=row.traceback or f"{row.error_type}: {row.error_message}",
            ))
        result = _base.TaskResult(
            task=task, id=row.id, status=_base.TaskResultStatus[_STATUS[status]],
            enqueued_at=row.enqueued_at, started_at=row.started_at,
            finished_at=row.finished_at, last_attempted_at=row.last_attempted_at,
            args=row.args, kwargs=row.kwargs, backend=self.alias, errors=errors,
            worker_ids=list(row.worker_ids),
        )
        if status is TaskStatus.SUCCEEDED:
            object.__setattr__(result, "_return_value", row.result)
        return result

    def check(self, **kwargs: Any) -> list[Any]:
        from django.apps import apps
        from django.core import checks

        if apps.is_installed("relay.contrib.django"):
            return []
        return [checks.Error(
            f"TASKS[{self.alias!r}] uses PubSubBackend, which keeps results in the database",
            hint="add 'relay.contrib.django' to INSTALLED_APPS and run manage.py migrate",
            id="relay.E001",
        )]


def load_task(path: str) -> Any:
    """The task at ``path`` (``module.function``); ``ImportError`` or ``InvalidTask``."""
    from django.utils.module_loading import import_string

    found = import_string(path)
    if not isinstance(found, _base.Task):
        raise InvalidTask(
            f"{path} is a {type(found).__name__}, not a task: decorate the function with "
            f"@task from {_PACKAGE}"
        )
    return found


def backend_subscriptions() -> list[Subscription]:
    """The subscriptions of every ``PubSubBackend`` in ``TASKS``: give them to a
    ``relay.Worker`` (``manage.py runrelay`` does) to run Django tasks."""
    subscriptions: list[Subscription] = []
    owner: dict[str, str] = {}
    for backend in framework.task_backends.all():
        if not isinstance(backend, PubSubBackend):
            continue
        for sub in backend.subscriptions():
            other = owner.setdefault(sub.topic, backend.alias)
            if other != backend.alias:
                raise ConfigurationError(
                    f"TASKS[{other!r}] and TASKS[{backend.alias!r}] both use topic {sub.topic!r}, "
                    "so both would run its tasks; give one OPTIONS={'TOPIC': "
                    "'django-tasks-{alias}-{queue}'}"
                )
            subscriptions.append(sub)
    return subscriptions


# ----------------------------------------------------------------- worker
def _handler(alias: str, queue: str) -> Callable[..., None]:
    def run_django_task(
        data: Any, /, *, delivery_attempt: int | None = None, **attributes: str
    ) -> None:
        run_message(alias, queue, data, attributes, delivery_attempt)

    run_django_task.__qualname__ = f"run_django_task[{alias}:{queue}]"
    return run_django_task


def run_message(
    alias: str, queue: str, data: Any, attributes: dict[str, str], attempt: int | None
) -> None:
    """Run one task message; returns once its outcome is recorded (then relay acks)."""
    version = attributes.get(ATTR_VERSION)
    task_id, path = attributes.get(ATTR_ID), attributes.get(ATTR_PATH)
    if version != WIRE_VERSION:
        raise UnrecoverableError(
            f"queue {queue!r} of TASKS[{alias!r}]: the message is in Django task wire format "
            f"version {version!r} and this worker reads version {WIRE_VERSION}; upgrade relay "
            "on the workers before the senders" if version else
            f"queue {queue!r} of TASKS[{alias!r}]: the message has no {ATTR_VERSION!r} "
            "attribute, so it was not sent by PubSubBackend.enqueue(); it is not run"
        )
    if not task_id or not path:
        raise UnrecoverableError(
            f"queue {queue!r} of TASKS[{alias!r}]: the message lacks {ATTR_ID!r} or "
            f"{ATTR_PATH!r}; it is not run"
        )
    args, kwargs = read_call(path, data, {})
    backend = framework.task_backends[alias]
    try:
        task = load_task(path).using(backend=alias, queue_name=queue)
    except Exception as exc:
        logger.error("task %s (%s) cannot be loaded: %s: %s", path, task_id,
                     type(exc).__name__, exc)
        _record_failure(task_id, path, exc, attempt)
        return
    worker = f"{socket.gethostname()}:{os.getpid()}"[:64]

    def starting(row: Any) -> None:
        row.task, row.backend, row.queue_name = path, alias, queue
        row.args, row.kwargs = args, kwargs
        row.worker_ids = [*row.worker_ids, worker]

    row = write(TaskRecord(task_id, path, TaskStatus.STARTED, at=time.time(),
                           attempt=attempt), starting)
    if row is None:
        logger.warning("task %s (%s) has already finished; this delivery is acked, not run",
                       path, task_id)
        return
    result = backend.task_result(row, task)
    _signals.task_started.send(type(backend), task_result=result)
    try:
        if task.takes_context:
            value = task.call(_base.TaskContext(task_result=result), *args, **kwargs)
        else:
            value = task.call(*args, **kwargs)
        value = _normalize_json(value)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        row = _record_failure(task_id, path, exc, attempt)
        if row is not None:  # sent here, so Django's log line carries the exception
            _signals.task_finished.send(type(backend), task_result=backend.task_result(row, task))
        return
    row = write(TaskRecord(task_id, path, TaskStatus.SUCCEEDED, result=value, at=time.time(),
                           attempt=attempt))
    if row is not None:
        _signals.task_finished.send(type(backend), task_result=backend.task_result(row, task))


def _record_failure(
    task_id: str, path: str, exc: BaseException, attempt: int | None
) -> Any:
    kind = type(exc)
    text = "".join(traceback.format_exception(kind, exc, exc.__traceback__))

    def with_traceback(row: Any) -> None:
        row.traceback = text

    return write(TaskRecord(
        task_id, path, TaskStatus.FAILED, error_type=f"{kind.__module__}.{kind.__qualname__}",
        error_message=str(exc), at=time.time(), attempt=attempt,
    ), with_traceback)


def _publish_done(task_id: str, path: str, caller: int, future: Future[str]) -> None:
    """A non-blocking publish ended: if it failed, the result says so."""
    error = CancelledError() if future.cancelled() else future.exception()
    if error is None:
        return
    try:
        _record_failure(task_id, path, error, None)
    except Exception:
        logger.exception("task %s (%s) was not sent, and that could not be recorded",
                         path, task_id)
    finally:
        if threading.get_ident() != caller:  # a publisher thread: leave no connection open
            from django.db import connections

            connections.close_all()


__all__ = ["PubSubBackend", "backend_subscriptions", "load_task"]
