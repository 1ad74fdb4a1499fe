"""``AsyncResult``: the handle ``.delay()`` and ``.apply_async()`` return.

It reads the task's outcome from the results backend of the process-wide app
(``RESULTS``): ``status()`` and ``ready()`` never block; ``result(timeout)``
blocks until the task has finished; ``await handle`` (or ``aresult``) waits
without blocking the event loop. While a handle exists its backend keeps the
task's outcome; once no handle holds the id the backend may drop it (Pub/Sub
replies do: they ack and drop outcomes nobody waits for).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Generator
from concurrent.futures import Future
from typing import Any

from relay.errors import ConfigurationError, PublishError
from relay.results import NOT_ENABLED, ResultBackend, TaskFailed, TaskRecord, TaskStatus


class AsyncResult:
    """A task sent with ``.delay()``/``.apply_async()``, or looked up by id.

    ``AsyncResult(task_id)`` builds one for an id you kept (Celery's form); it
    uses the process-wide app's backend. Of a task sent with
    ``ignore_result=True`` only ``id`` is known.
    """

    def __init__(
        self,
        task_id: str,
        *,
        task: str = "",
        backend: ResultBackend | None = None,
        published: Future[str] | None = None,
        topic: str = "",
        ignore_result: bool = False,
        _watched: bool = False,
    ) -> None:
        if not isinstance(task_id, str) or not task_id:
            raise ConfigurationError(f"a task id is a non-empty string, got {task_id!r}")
        self.id = task_id
        self.task = task
        self._published = published
        self._topic = topic
        self._ignore_result = ignore_result
        if backend is None and not _watched and not ignore_result:
            from relay.app import get_app
            from relay.results import results_backend

            backend = results_backend(get_app().middleware)
        self._backend = backend
        if backend is not None and not ignore_result:
            if not _watched:
                backend.watch(task_id)
            weakref.finalize(self, backend.unwatch, task_id)

    # ---------------------------------------------------------------- reading
    def status(self) -> TaskStatus:
        """``pending``, ``started``, ``succeeded`` or ``failed``, now (never blocks).

        A task whose attempt failed and that Pub/Sub will deliver again is still
        ``started``. Raises ``PublishError`` if the task message could not be sent.
        """
        backend = self._reader()
        self._check_sent(0.0)
        record = backend.get(self.id)
        return TaskStatus.PENDING if record is None else record.status

    def ready(self) -> bool:
        """True once the task has succeeded or failed."""
        return self.status().ready

    def successful(self) -> bool:
        return self.status() is TaskStatus.SUCCEEDED

    def failed(self) -> bool:
        return self.status() is TaskStatus.FAILED

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the task and return what it returned (as JSON carried it).

        Raises ``TaskFailed`` (the remote error's type and message) if it
        failed, ``TimeoutError`` if it has not finished within ``timeout``
        seconds (None: wait for ever), ``PublishError`` if it was never sent.
        """
        backend = self._reader()
        deadline = None if timeout is None else time.monotonic() + timeout
        self._check_sent(timeout)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        return self._value(backend.wait(self.id, left), timeout)

    get = result  # Celery's name

    async def aresult(self, timeout: float | None = None) -> Any:
        """``result()`` for ``async`` code: polls the backend without blocking the loop."""
        backend = self._reader()
        deadline = None if timeout is None else time.monotonic() + timeout
        published = self._published
        if published is not None and not published.done():
            try:
                await asyncio.wait_for(asyncio.wrap_future(published), timeout)
            except asyncio.TimeoutError:
                pass
            except Exception:
                pass  # _check_sent raises it below
        self._check_sent(0.0)
        pause = 0.005
        while True:
            record = backend.get(self.id)
            if record is not None and record.status.ready:
                return self._value(record, timeout)
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return self._value(record, timeout)
            await asyncio.sleep(pause if left is None else min(pause, left))
            pause = min(pause * 1.5, 0.2)

    def __await__(self) -> Generator[Any, None, Any]:
        return self.aresult().__await__()

    # ---------------------------------------------------------------- helpers
    def _reader(self) -> ResultBackend:
        if self._ignore_result:
            raise ConfigurationError(
                f"task {self.task or self.id} is declared with ignore_result=True, so its "
                "outcome is not kept; drop ignore_result to read it"
            )
        if self._backend is None:
            raise ConfigurationError(NOT_ENABLED)
        return self._backend

    def _check_sent(self, timeout: float | None) -> None:
        """Raise ``PublishError`` if the task message failed to send (waiting up to
        ``timeout`` for the publish to settle)."""
        published = self._published
        if published is None or (timeout == 0.0 and not published.done()):
            return
        try:
            published.result(timeout)
        except TimeoutError:
            return
        except Exception as exc:
            raise PublishError(self._topic or self.task, exc) from exc

    def _value(self, record: TaskRecord | None, timeout: float | None) -> Any:
        if record is None or not record.status.ready:
            status = TaskStatus.PENDING if record is None else record.status
            raise TimeoutError(
                f"task {self.task or '?'} ({self.id}) has not finished within {timeout} s "
                f"(status {status.value})"
            )
        if record.status is TaskStatus.FAILED:
            raise TaskFailed(
                self.id, record.task or self.task, record.error_type or "Exception",
                record.error_message or "",
            )
        return record.result

    def __repr__(self) -> str:
        return f"<AsyncResult {self.task or 'task'} id={self.id}>"
