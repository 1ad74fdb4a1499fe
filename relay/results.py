"""Task results: the record of an outcome, the backend interface, the in-memory
backend, and the middleware that stores outcomes as a worker runs tasks.

Results are off unless the ``RESULTS`` setting names a backend; then
``MiddlewareChain.from_settings`` puts a ``ResultsMiddleware`` first in the
chain (so its post hooks run last and see the final ``outcome.action``). With
``RESULTS=None`` there is no such middleware and a worker does no result work
at all. Backends:

* ``"pubsub"``: ``relay.replies.PubSubReplies``, outcomes published to
  ``RESULTS_TOPIC`` and read by the caller on a reply subscription of its own;
* ``"memory"``: ``MemoryResults``, in the process (for tests, with
  ``relay.testing.memory_app``);
* a dotted path to a ``ResultBackend`` subclass, built as ``cls(settings)``.

A task's status moves ``pending`` -> ``started`` -> ``succeeded`` or
``failed``. A failed attempt that Pub/Sub will deliver again (a nack) stores
nothing: the task stays ``started`` until an attempt ends it (succeeds, raises
``UnrecoverableError`` or ``SkipMessage``, or fails on the last delivery a
dead-letter policy allows).

The record on the wire (version 1), the data of a message on ``RESULTS_TOPIC``
and what a backend stores::

    {"v": 1, "id": "<task id>", "task": "<task name>", "status": "succeeded",
     "result": <JSON>, "error": null, "at": <epoch seconds>, "attempt": 1}

with ``"error": {"type": "<module.Class>", "message": "..."}`` for a failure.
"""

from __future__ import annotations

import abc
import enum
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from relay.codec import Codec
from relay.errors import ConfigurationError, EncodeError, RelayError
from relay.limits import MAX_PAYLOAD_BYTES
from relay.message import Action, Status
from relay.middleware import BaseMiddleware

if TYPE_CHECKING:
    from relay.message import Message, Outcome
    from relay.settings import Settings
    from relay.subscription import Subscription
    from relay.worker import Worker

logger = logging.getLogger("relay.results")

#: The version of the record format this relay writes and reads.
RECORD_VERSION = 1
#: Seconds ``post_worker_stop`` waits for outcomes still being sent.
FLUSH_TIMEOUT = 10.0
NOT_ENABLED = (
    "task results are not enabled: set RESULTS='pubsub' (replies on Pub/Sub, nothing else "
    "to run), 'memory' (in-process, for tests with relay.testing.memory_app) or a dotted "
    "path to a relay.results.ResultBackend class; see docs/tasks.md#results"
)


class TaskStatus(str, enum.Enum):
    """Where a task is. Compares equal to its value: ``status == "succeeded"``."""

    PENDING = "pending"
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def ready(self) -> bool:
        return self in (TaskStatus.SUCCEEDED, TaskStatus.FAILED)


class TaskFailed(RelayError):
    """``AsyncResult.result()`` of a task that failed: the remote error, by name.

    ``type`` is the remote exception's class (``"ValueError"``,
    ``"shop.errors.OutOfStock"``), ``message`` its text; the class itself is not
    re-created (nothing is unpickled).
    """

    def __init__(self, task_id: str, task: str, type: str, message: str) -> None:
        super().__init__(f"task {task} ({task_id}) failed: {type}: {message}")
        self.task_id = task_id
        self.task = task
        self.type = type
        self.message = message


class ResultError(RelayError):
    """The task ran, but its return value cannot be sent back as its result."""


@dataclass
class TaskRecord:
    """One task's outcome (or progress), as backends store and return it."""

    id: str
    task: str
    status: TaskStatus
    result: Any = None
    error_type: str | None = None
    error_message: str | None = None
    #: When the worker wrote it (epoch seconds, the worker's clock).
    at: float = 0.0
    #: Pub/Sub's delivery attempt (None where Pub/Sub does not count them).
    attempt: int | None = None

    def to_data(self) -> dict[str, Any]:
        error = None
        if self.error_type is not None:
            error = {"type": self.error_type, "message": self.error_message or ""}
        return {
            "v": RECORD_VERSION, "id": self.id, "task": self.task, "status": self.status.value,
            "result": self.result, "error": error, "at": self.at, "attempt": self.attempt,
        }

    @classmethod
    def from_data(cls, data: Any) -> TaskRecord:
        """The record in ``data``; ``ValueError`` saying what is wrong with it."""
        if not isinstance(data, dict):
            raise ValueError(f"a task record is a JSON object, got {type(data).__name__}")
        if data.get("v") != RECORD_VERSION:
            raise ValueError(
                f"task record version {data.get('v')!r}; this relay reads version "
                f"{RECORD_VERSION}: upgrade relay where results are read"
            )
        try:
            error = data.get("error") or {}
            return cls(
                id=str(data["id"]), task=str(data.get("task", "")),
                status=TaskStatus(data["status"]), result=data.get("result"),
                error_type=error.get("type"), error_message=error.get("message"),
                at=float(data.get("at") or 0.0), attempt=data.get("attempt"),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not a task record ({type(exc).__name__}: {exc})") from None

    def supersedes(self, other: TaskRecord | None) -> bool:
        """Whether this record should replace ``other`` (they may arrive out of order):
        a finished task stays finished; otherwise the later record wins."""
        if other is None:
            return True
        if other.status.ready and not self.status.ready:
            return False
        if self.status.ready and not other.status.ready:
            return True
        return self.at >= other.at


def error_name(exc: BaseException) -> str:
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


# ------------------------------------------------------------------- backends
class ResultBackend(abc.ABC):
    """Where task outcomes are kept: the one interface a results store implements.

    Worker side: ``store``. Caller side: ``watch`` (a handle was made; before
    its task is sent), ``get``, ``wait`` and ``unwatch`` (no handle holds the
    id any more). ``flush`` and ``close`` end its work. Thread-safe.

    A store that any process can query by id (a database, Redis) implements
    ``store`` (keep ``payload`` under ``record.id``, unless the record it holds
    ``supersedes`` it) and ``get`` (``TaskRecord.from_data(Codec.decode(...))``);
    the defaults do the rest. See docs/tasks.md#your-own-backend.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        """``RESULTS='dotted.path.Class'`` builds it as ``Class(settings)``."""
        return None

    def watch(self, task_id: str) -> str | None:
        """Called before a task is sent with a handle. Returns where the worker
        must send the outcome (the ``relay_reply_to`` attribute), or None when the
        worker needs no address (a shared store)."""
        return None

    def unwatch(self, task_id: str) -> None:
        """No handle holds ``task_id`` any more (its outcome may be dropped)."""
        return None

    @abc.abstractmethod
    def store(self, record: TaskRecord, payload: bytes, reply_to: str | None) -> None:
        """Keep ``record`` (``payload`` is its JSON, already checked to fit a message).
        ``reply_to`` is what ``watch`` returned to the caller, or None."""

    @abc.abstractmethod
    def get(self, task_id: str) -> TaskRecord | None:
        """The latest record of ``task_id``, or None if nothing is known yet."""

    def wait(self, task_id: str, timeout: float | None) -> TaskRecord | None:
        """Block until ``task_id`` is finished or ``timeout`` seconds have passed;
        return its latest record. This default polls ``get``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.01
        while True:
            record = self.get(task_id)
            if record is not None and record.status.ready:
                return record
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return record
            time.sleep(pause if left is None else min(pause, left))
            pause = min(pause * 1.5, 0.5)

    def flush(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for outcomes still being sent."""
        return None

    def close(self) -> None:
        """Release what the backend holds (connections, subscriptions). Idempotent."""
        return None


class RecordsInProcess(ResultBackend):
    """A backend whose records arrive in this process: ``get`` and ``wait`` read
    ``_records`` under ``_cond``, which ``store`` (or a reply stream) notifies."""

    _cond: threading.Condition
    _records: dict[str, TaskRecord | None]

    def get(self, task_id: str) -> TaskRecord | None:
        with self._cond:
            return self._records.get(task_id)

    def wait(self, task_id: str, timeout: float | None) -> TaskRecord | None:
        def finished() -> bool:
            record = self._records.get(task_id)
            return record is not None and record.status.ready

        with self._cond:
            self._cond.wait_for(finished, timeout)
            return self._records.get(task_id)


class MemoryResults(RecordsInProcess):
    """Outcomes kept in this process: for tests, where worker and caller share it.

    A record is stored as its JSON and read back, so a test sees the result as
    a caller in another process would (a ``datetime`` comes back as a string).
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self._cond = threading.Condition()
        self._records = {}

    def store(self, record: TaskRecord, payload: bytes, reply_to: str | None) -> None:
        stored = TaskRecord.from_data(Codec.decode(payload))
        with self._cond:
            if stored.supersedes(self._records.get(record.id)):
                self._records[record.id] = stored
                self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._records.clear()


def backend_from_settings(settings: Settings) -> ResultBackend:
    """The backend the ``RESULTS`` setting names (``ConfigurationError`` if none)."""
    name = settings.results
    if name is None:
        raise ConfigurationError(NOT_ENABLED)
    if name == "memory":
        return MemoryResults(settings)
    if name == "pubsub":
        from relay.replies import PubSubReplies

        return PubSubReplies(settings)
    from relay.setting_values import import_string

    cls = import_string(name, "RESULTS")
    if not (isinstance(cls, type) and issubclass(cls, ResultBackend)):
        raise ConfigurationError(
            f"RESULTS: {name!r} is not a relay.results.ResultBackend subclass"
        )
    return cls(settings)


def results_backend(middleware: Iterable[BaseMiddleware]) -> ResultBackend | None:
    """The backend of the ``ResultsMiddleware`` in a chain (an app's ``middleware``)."""
    for item in middleware:
        if isinstance(item, ResultsMiddleware) and item.backend is not None:
            return item.backend
    return None


# ----------------------------------------------------------------- the worker
class ResultsMiddleware(BaseMiddleware):
    """Stores each task's outcome in a backend; ignores plain subscriptions.

    ``RESULTS`` adds one to every chain built from the settings. Listed in
    ``MIDDLEWARE`` by hand (or given a backend instance), it is used as it is.
    """

    def __init__(self, backend: ResultBackend | None = None) -> None:
        from relay.tasks import Task

        self.backend = backend
        self._task = Task
        self._codec = Codec()

    def setup(self, settings: Settings, **kwargs: Any) -> None:
        self._codec = Codec(settings.encoder)
        if self.backend is None:  # listed in MIDDLEWARE by hand: RESULTS, or Pub/Sub replies
            if settings.results is None:
                from relay.replies import PubSubReplies

                self.backend = PubSubReplies(settings)
            else:
                self.backend = backend_from_settings(settings)

    def pre_process_message(self, subscription: Subscription, message: Message) -> None:
        sub = subscription
        if isinstance(sub, self._task) and sub.track_started and not sub.ignore_result:
            self._store(sub, message, TaskRecord(
                _task_id(message), sub.task_name, TaskStatus.STARTED,
                at=time.time(), attempt=message.delivery_attempt,
            ))

    def post_process_message(
        self, subscription: Subscription, message: Message, outcome: Outcome
    ) -> None:
        sub = subscription
        if not isinstance(sub, self._task) or sub.ignore_result:
            return
        record = TaskRecord(
            _task_id(message), sub.task_name, TaskStatus.FAILED, at=time.time(),
            attempt=message.delivery_attempt,
        )
        if outcome.status is Status.SUCCESS:
            record.status, record.result = TaskStatus.SUCCEEDED, outcome.result
        elif outcome.exception is None:
            record.error_type = "relay.errors.SkipMessage"
            record.error_message = "a filter_by filter skipped it"
        else:
            if outcome.action is Action.NACK and not _last_attempt(sub, message):
                return  # Pub/Sub delivers it again: still started
            record.error_type = error_name(outcome.exception)
            record.error_message = str(outcome.exception)
        self._store(sub, message, record)

    def _store(self, sub: Subscription, message: Message, record: TaskRecord) -> None:
        assert self.backend is not None
        payload = self._encode(record)
        try:
            self.backend.store(record, payload, message.attributes.get("relay_reply_to"))
        except Exception as exc:
            logger.error(
                "the %s outcome of task %s (%s, message %s) could not be stored: %s: %s",
                record.status.value, record.task, record.id, message.id,
                type(exc).__name__, exc,
            )

    def _encode(self, record: TaskRecord) -> bytes:
        """The record's JSON; a result that cannot be sent becomes a ``ResultError``."""
        problem: str
        try:
            payload = self._codec.encode(record.to_data())
        except EncodeError as exc:
            problem = (
                f"it returned {type(record.result).__name__} {record.result!r:.80}, which "
                f"cannot be sent as JSON ({exc}); return JSON-able data"
            )
        else:
            if len(payload) <= MAX_PAYLOAD_BYTES:
                return payload
            problem = (
                f"its result encodes to {len(payload)} bytes and a Pub/Sub message holds at "
                f"most {MAX_PAYLOAD_BYTES}; store it elsewhere (e.g. Cloud Storage) and "
                "return a reference"
            )
        logger.error("task %s (%s) succeeded but %s", record.task, record.id, problem)
        record.status, record.result = TaskStatus.FAILED, None
        record.error_type = error_name(ResultError())
        record.error_message = f"the task ran, but {problem}"
        return self._codec.encode(record.to_data())

    def post_worker_stop(self, worker: Worker) -> None:
        if self.backend is not None:
            self.backend.flush(FLUSH_TIMEOUT)

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()


def _task_id(message: Message) -> str:
    return message.attributes.get("relay_task_id") or message.id


def _last_attempt(sub: Subscription, message: Message) -> bool:
    """Whether Pub/Sub will dead-letter this message rather than deliver it again."""
    policy, attempt = sub.dead_letter, message.delivery_attempt
    return policy is not None and attempt is not None and attempt >= policy.max_delivery_attempts


def close_results(middleware: Iterable[BaseMiddleware]) -> None:
    """Close the results backend of a chain, if it has one (``App.close`` does)."""
    for item in middleware:
        if isinstance(item, ResultsMiddleware):
            item.close()
