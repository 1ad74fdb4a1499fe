"""``DjangoDBMiddleware``: no stale or leaked database connection in a worker.

Django keeps one connection per alias per thread and closes it at the end of
each request (``close_old_connections``, on the request signals). A relay
worker has no requests: its handler threads live as long as the worker, so
without this middleware a connection the database dropped (a restart, an idle
timeout) stays in the thread and fails the next handler, and with
``CONN_MAX_AGE = 0`` (Django's default) a connection is never closed at all.

What it does, on the handler's own thread (connections are per thread):

* before each message, ``close_old_connections()`` (Django's, except that a
  connection inside an atomic block is left alone): a connection that is
  unusable or past ``CONN_MAX_AGE`` is closed, and Django opens a fresh one
  when the handler queries;
* after each message, last of all (it is the outermost middleware, so the
  results store's write has happened), ``close_old_connections()`` again: with
  ``CONN_MAX_AGE = 0`` every connection the message opened is closed;
* it remembers the connections a handler thread keeps open (persistent
  connections, ``CONN_MAX_AGE > 0`` or None), and when a worker stops it
  closes those of every thread that is not in the middle of a message.

``async def`` handlers are left alone: they run on the worker's event loop,
where Django's ORM is not allowed; their ``sync_to_async`` calls run on
asgiref's threads, which Django manages.

The Django app puts it first in ``MIDDLEWARE`` (see ``relay.contrib.django.conf``);
``RELAY_CLOSE_DB_CONNECTIONS = False`` in Django settings leaves it out.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from relay.middleware import BaseMiddleware

if TYPE_CHECKING:
    from relay.message import Message, Outcome
    from relay.subscription import Subscription
    from relay.worker import Worker

logger = logging.getLogger("relay.contrib.django")


@dataclass
class _HandlerThread:
    """What one handler thread holds: the connections it left open, and whether it
    is processing a message right now (then they are not ours to close)."""

    thread: threading.Thread
    busy: bool = False
    open: list[Any] = field(default_factory=list)


class DjangoDBMiddleware(BaseMiddleware):
    """Closes stale Django database connections before and after each message,
    and at worker stop the connections handler threads kept open."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._threads: dict[int, _HandlerThread] = {}

    def _current(self) -> _HandlerThread:
        ident = threading.get_ident()
        entry = self._threads.get(ident)
        if entry is None or entry.thread is not threading.current_thread():
            entry = self._threads[ident] = _HandlerThread(threading.current_thread())
        return entry

    def pre_process_message(self, subscription: Subscription, message: Message) -> None:
        if subscription.is_async:
            return
        with self._lock:
            self._current().busy = True
        close_old_connections()

    def post_process_message(
        self, subscription: Subscription, message: Message, outcome: Outcome
    ) -> None:
        if subscription.is_async:
            return
        from django.db import connections

        try:
            close_old_connections()
        finally:
            still_open = [
                c for c in connections.all(initialized_only=True) if c.connection is not None
            ]
            with self._lock:
                entry = self._current()
                entry.busy = False
                entry.open = still_open

    def post_worker_stop(self, worker: Worker) -> None:
        closed = self.close_idle_connections()
        if closed:
            logger.info("closed %d database connection(s) kept by handler threads", closed)

    def close_idle_connections(self) -> int:
        """Close the connections kept by handler threads that are not processing a
        message (from any thread); return how many were open. Threads that are
        busy (a handler past the drain timeout) keep theirs."""
        closed = 0
        # Under the lock: a thread cannot take up a message while its connection
        # is being closed from here (pre_process_message waits for the lock).
        with self._lock:
            for ident, entry in list(self._threads.items()):
                if entry.busy:
                    continue
                for wrapper in entry.open:
                    closed += _close_from_here(wrapper, entry.thread)
                entry.open = []
                if not entry.thread.is_alive():
                    del self._threads[ident]
        return closed


def close_old_connections() -> None:
    """Django's ``close_old_connections``, except for a connection inside an atomic
    block: that one belongs to a transaction still going on (a test's
    ``TestCase``/``django_db`` transaction around ``env.deliver()``), which a close
    would break."""
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


def _close_from_here(wrapper: Any, owner: threading.Thread) -> int:
    """Close another thread's connection (Django allows it once sharing is declared)."""
    if wrapper.connection is None:
        return 0
    wrapper.inc_thread_sharing()
    try:
        wrapper.close()
    except Exception:
        logger.exception(
            "closing database connection %r of thread %s failed", wrapper.alias, owner.name
        )
        return 0
    finally:
        wrapper.dec_thread_sharing()
    return 1


__all__ = ["DjangoDBMiddleware", "close_old_connections"]
