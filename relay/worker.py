"""``Worker``: provision, consume, dispatch, supervise, drain.

* ``setup()`` provisions as the ``PROVISIONING`` setting says (see
  ``relay.provisioning``): by default it creates missing topics (dead-letter
  topics too) and creates or updates each subscription to match its
  declaration; ``verify`` only checks, ``off`` does nothing.
* ``start()`` opens one stream per subscription. Every message takes one path
  (``relay.pipeline``): taken into one in-flight record, run through the
  ``Processor`` where its handler runs (a sync handler on ONE bounded thread
  pool shared by all subscriptions, ``CONCURRENCY`` threads; an ``async def``
  one on the worker's event loop, at most ``CONCURRENCY`` at a time), then
  released. Flow control bounds what each stream holds.
* A supervisor thread restarts a stream that fails, with exponential backoff.
* ``stop()`` stops pulling, waits for in-flight handlers up to
  ``DRAIN_TIMEOUT``, closes the streams (flushing acks) and the transport.

Library code never exits the process or installs signal handlers: that is the
CLI's job (``relay.cli``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from typing import Any

from relay import provisioning
from relay.codec import Codec
from relay.delays import holder_for
from relay.middleware import MiddlewareChain
from relay.pipeline import Delivery, InFlight, Runner, StopSignal
from relay.processing import Processor
from relay.settings import Settings
from relay.subscription import Subscription, check_unique
from relay.supervision import StreamState
from relay.transports.base import ProvisionResult, ReceivedMessage, Transport

logger = logging.getLogger("relay.worker")

RESTART_BACKOFF_MIN = 1.0
RESTART_BACKOFF_MAX = 60.0
#: A restarted stream that stays up this long resets its backoff.
HEALTHY_AFTER = 30.0


class Worker:
    """Consumes a set of subscriptions. See the module docstring for the lifecycle."""

    def __init__(
        self,
        subscriptions: Iterable[Subscription],
        *,
        settings: Settings | None = None,
        transport: Transport | None = None,
        middleware: MiddlewareChain | None = None,
        concurrency: int | None = None,
        drain_timeout: float | None = None,
    ) -> None:
        self.settings = settings or Settings.load()
        self.subscriptions = check_unique(s.resolve(self.settings) for s in subscriptions)
        self.middleware = (
            middleware if middleware is not None else MiddlewareChain.from_settings(self.settings)
        )
        self._owns_transport = transport is None
        self._transport = transport
        self.concurrency = concurrency or self.settings.concurrency
        self.drain_timeout = self.settings.drain_timeout if drain_timeout is None else drain_timeout
        self._stopping = StopSignal()
        processor = Processor(
            self.middleware, Codec(self.settings.encoder), self.settings.filter_subs_by,
            dead_letters=self._publish_dead_letter, stopping=self._stopping,
        )
        #: Push subscriptions are provisioned, never pulled: Pub/Sub POSTs their
        #: messages to their endpoint (relay.push serves it), and refuses a pull.
        self.pushed = [s for s in self.subscriptions if s.push_endpoint]
        self._states = {s.name: StreamState(s) for s in self.subscriptions if not s.push_endpoint}
        #: The one record of messages taken in and not finished (relay.pipeline).
        self._inflight = InFlight(self._stopping)
        self._runner = Runner(processor.run, self._inflight, self.concurrency)
        self._supervisor: threading.Thread | None = None
        self._stopped = threading.Event()
        self._drained = True
        self._lifecycle = threading.Lock()
        self.provisioned: list[ProvisionResult] = []
        self._provisioned = False
        self.started = False

    def _publish_dead_letter(
        self, topic: str, data: bytes, attributes: Mapping[str, str]
    ) -> Future[str]:
        return self.transport.publish(topic, data, attributes)

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            from relay.app import build_transport

            self._transport = build_transport(self.settings)
        return self._transport

    # ------------------------------------------------------------ provisioning
    def setup(self) -> list[ProvisionResult]:
        """Provision per ``PROVISIONING``: create/update (default), verify, or nothing.

        See ``relay.provisioning``. Raises ``ProvisioningError`` in ``verify``
        mode when Pub/Sub does not match the code.
        """
        wanted = provisioning.desired(self.subscriptions, self.settings)
        results = provisioning.provision(self.transport, wanted, self.settings.provisioning)
        self.provisioned = results
        self._provisioned = True
        return results

    # -------------------------------------------------------------- consuming
    def start(self) -> None:
        """Open every stream (provisioning first if ``setup()`` has not run)."""
        with self._lifecycle:
            if self.started:
                return
            self.middleware.run("pre_worker_start", self)
            if not self._provisioned:
                self.setup()
            self._runner.start(with_loop=any(st.subscription.is_async
                                             for st in self._states.values()))
            for state in self._states.values():
                self._open(state)
            self._supervisor = threading.Thread(
                target=self._supervise, name="relay-supervisor", daemon=True
            )
            self._supervisor.start()
            self.started = True
        logger.info(
            "worker consuming %d subscription(s) with concurrency %d: %s",
            len(self._states), self.concurrency, ", ".join(self._states) or "none",
        )
        if self.pushed:
            logger.log(
                logging.WARNING if not self._states else logging.INFO,
                "not pulling %d push subscription(s), provisioned only (Pub/Sub POSTs their "
                "messages to their endpoints; serve them with relay.push): %s",
                len(self.pushed),
                ", ".join(f"{s.name} -> {s.push_endpoint}" for s in self.pushed),
            )
        self.middleware.run("post_worker_start", self)

    def _open(self, state: StreamState) -> None:
        sub = state.subscription
        flow = self.settings.flow_control
        if not flow.max_lease_extension:
            # Lease in steps of the subscription's ack deadline, so ACK_DEADLINE is
            # also how soon a crashed or cut-off worker's messages come back
            # (google's client would otherwise use 60 s whatever the deadline).
            flow = dataclasses.replace(
                flow, max_lease_extension=sub.ack_deadline or self.settings.ack_deadline
            )
        state.stream = self.transport.subscribe(sub.name, self._callback_for(sub), flow)
        state.state = "open"
        state.opened_at = time.monotonic()

    def _callback_for(self, sub: Subscription) -> Callable[[ReceivedMessage], None]:
        # Runs on a transport thread: hand off and return at once. The same for
        # every handler; where it runs is the Runner's business.
        admit, submit, release = self._inflight.admit, self._runner.submit, self._inflight.release
        # A task message that is not due yet waits in a Holder, not on a handler
        # (relay.delays); None for other subscriptions.
        holder = holder_for(sub, self.settings, lambda: self.transport, self._stopping)

        # The Holder's two callbacks: a held message is due, or was handed back.
        def due(held: ReceivedMessage) -> None:
            assert isinstance(held, Delivery)
            submit(held)

        def handed_back(held: ReceivedMessage) -> None:
            assert isinstance(held, Delivery)
            release(held)

        def on_message(received: ReceivedMessage) -> None:
            delivery = admit(received, sub)
            if delivery is None:  # the worker is stopping: straight back, no hooks
                received.nack()
            elif holder is None or not holder.hold(delivery, due, handed_back):
                submit(delivery)

        return on_message

    # ------------------------------------------------------------ supervision
    def _supervise(self) -> None:
        while not self._stopping.wait(0.25):
            now = time.monotonic()
            for state in self._states.values():
                try:
                    self._check(state, now)
                except Exception:  # supervision itself must never die
                    logger.exception("supervising %s failed", state.subscription.name)

    def _check(self, state: StreamState, now: float) -> None:
        stream = state.stream
        if state.state == "open" and stream is not None:
            if not stream.done():
                state.watch(stream, now)
                if state.failures and now - state.opened_at > HEALTHY_AFTER:
                    state.failures = 0
                return
            delay = self._failed(state, stream.exception(), now)
            state.state = "restarting"
            logger.error(
                "stream for %s failed (%s); restarting in %.1f s (failure %d)",
                state.subscription.name, state.last_error, delay, state.failures,
            )
            try:
                stream.close(timeout=5)
            except Exception:
                logger.debug("closing the failed stream raised", exc_info=True)
        elif state.state == "restarting" and now >= state.retry_at:
            try:
                self._open(state)
                logger.info("stream for %s restarted", state.subscription.name)
            except Exception as exc:
                delay = self._failed(state, exc, now)
                logger.error(
                    "restarting %s failed (%s); next try in %.1f s",
                    state.subscription.name, state.last_error, delay,
                )

    @staticmethod
    def _failed(state: StreamState, error: BaseException | None, now: float) -> float:
        return state.failed(error, now, RESTART_BACKOFF_MIN, RESTART_BACKOFF_MAX)

    def status(self) -> dict[str, Any]:
        """A snapshot of the worker and every stream, for health probes and the CLI.

        A subscription's ``state`` is ``idle``, ``open`` (streaming and
        connected), ``connecting`` (open, but the broker cannot be reached),
        ``failing`` (open, but its streaming pull keeps ending with an error
        the client retries by itself; ``last_error`` says which),
        ``restarting`` or ``stopped``; ``unhealthy_for`` is how many seconds it
        has been restarting, failing or disconnected (None when healthy).
        """
        now = time.monotonic()
        supervisor = self._supervisor
        return {
            "started": self.started,
            "stopping": self._stopping.is_set(),
            "provisioned": self._provisioned,
            "supervisor_alive": supervisor is not None and supervisor.is_alive(),
            "inflight": len(self._inflight),
            "subscriptions": [st.snapshot(now) for st in self._states.values()],
            "push_subscriptions": [s.name for s in self.pushed],
        }

    # ---------------------------------------------------------------- stopping
    def stop(self, timeout: float | None = None) -> bool:
        """Stop pulling, drain in-flight handlers, close. Idempotent.

        Waits up to ``timeout`` (default ``DRAIN_TIMEOUT``) for handlers already
        running or queued. Returns True if every one finished. At the deadline,
        every message not finished is nacked, once, the streams close (sending
        those nacks once they no longer receive) and Pub/Sub redelivers it
        promptly, to another consumer: queued ones never start; a sync handler
        still running is abandoned (its thread is a daemon and does not hold
        the process open), an async one is cancelled; either way its hooks
        still close and its own ack or nack is not sent.
        """
        with self._lifecycle:
            if self._stopping.is_set():
                self._stopped.wait()
                return self._drained
            self._inflight.stop()  # the one stop decision: nothing is taken in after it
        if not self.started:
            self._finish_stop()
            return True
        self.middleware.run("pre_worker_stop", self)
        for state in self._states.values():
            if state.stream is not None:
                try:
                    state.stream.cancel()
                except Exception:
                    logger.exception("cancelling the stream of %s failed", state.subscription.name)
        wait = self.drain_timeout if timeout is None else timeout
        # Every message still held at the deadline is nacked there, once.
        unfinished = self._runner.drain(wait)
        self._drained = not unfinished
        if unfinished:
            logger.warning(
                "drain timeout (%.1f s) reached with %d message(s) unfinished; nacked, so "
                "Pub/Sub redelivers them", wait, len(unfinished),
            )
        self._close_streams()
        self._runner.close()
        self._finish_stop()
        logger.info("worker stopped")
        self.middleware.run("post_worker_stop", self)
        return self._drained

    def _close_streams(self) -> None:
        """Close every stream, all at once: a close may wait seconds for the broker."""

        def close(state: StreamState) -> None:
            if state.stream is not None:
                try:
                    state.stream.close(timeout=10)
                except Exception:
                    logger.exception("closing the stream of %s failed", state.subscription.name)
            state.state = "stopped"

        closing = [
            threading.Thread(target=close, args=(state,), name="relay-close", daemon=True)
            for state in self._states.values()
        ]
        for thread in closing:
            thread.start()
        for thread in closing:
            thread.join(15)

    def _finish_stop(self) -> None:
        if self._owns_transport and self._transport is not None:
            try:
                self._transport.close()
            except Exception:
                logger.exception("closing the transport failed")
        self._stopped.set()

    def run_forever(self) -> None:
        """``start()`` (which provisions), then block until ``stop()`` is called."""
        self.start()
        while not self._stopped.wait(1.0):
            pass

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the worker has stopped; True if it has."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> Worker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
