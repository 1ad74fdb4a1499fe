"""``PushHandler``: one push request through relay's pipeline, framework-free.

For each request, in this order: the OIDC token is verified (401/403, nothing
else runs), the body is parsed (400), the subscription found by its full or
short name (404), then the message runs through the same ``Processor`` as a
pulled one (decode, filters, middleware hooks, handler, in-process retries,
the ack policy, dead letters), and the verdict it settles on becomes the
status code:

==========================================  ======  ===========================
what happened                               status  Pub/Sub then
==========================================  ======  ===========================
acked (handler returned, filtered out,      200     acknowledged
``SkipMessage``, ``UnrecoverableError``
without a dead-letter topic, undecodable
payload without one)
dead-lettered (relay published it to the    200     acknowledged
dead-letter topic)
nacked (handler raised, a filter failed,    503     redelivers (retry policy)
the dead-letter publish failed)
no verdict within ``settle_timeout``        503     redelivers
a task not due before the ack deadline      503     redelivers (it waits in
(``countdown``/``eta``)                             the request when it can)
not a push request / bad base64 / bad       400     redelivers (every non-ack
metadata                                            code does); a dead-letter
                                                    policy on the subscription
                                                    ends it
unknown subscription                        404     the same
missing / invalid token                     401     the same
token for another audience, issuer, or      403     the same
service account
==========================================  ======  ===========================

Pub/Sub counts 102, 200, 201, 202 and 204 as an ack and anything else as a
nack (cloud.google.com/pubsub/docs/push). Nothing here answers 500: an
unexpected error in relay itself is logged and answered 503.

Where the handler runs: ``handle()`` (WSGI) calls it on the server's request
thread, as the pull worker's pool thread would (an ``async def`` handler is
run to completion there). ``handle_async()`` (ASGI) awaits an ``async def``
handler on the server's loop and runs a sync one on a bounded ``HandlerPool``
of ``concurrency`` threads. Both take the one path, ``Processor.run``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from relay.codec import Codec
from relay.delays import EARLY
from relay.executor import HandlerPool
from relay.pipeline import StopSignal, drive
from relay.processing import Processor
from relay.push.auth import OidcVerifier, PushAuthError, Unverified
from relay.push.envelope import BadPush, PushMessage, parse
from relay.subscription import Subscription, check_unique
from relay.task_wire import ATTR_ETA, parse_eta

if TYPE_CHECKING:
    from relay.app import App

logger = logging.getLogger("relay.push")

#: Pub/Sub's message limit is 10 MB; base64 and the envelope add a third.
MAX_BODY = 16 * 1024 * 1024
#: Seconds to wait for a verdict the pipeline settles later (a dead-letter publish).
SETTLE_TIMEOUT = 30.0
ACK_STATUS = 200
NACK_STATUS = 503
#: Seconds a push request keeps in hand below the ack deadline while it waits
#: for a delayed task to be due.
DEADLINE_MARGIN = 5.0
#: The clock push requests are timed with (a test can set its own).
_clock = time.monotonic


@dataclass
class PushResponse:
    status: int
    body: str
    headers: list[tuple[str, str]] = field(
        default_factory=lambda: [("content-type", "text/plain; charset=utf-8")]
    )


class PushHandler:
    """Verifies, parses, routes and runs one push request. See the module docstring.

    ``verifier`` is required: ``OidcVerifier(audience=..., service_account_email=...)``
    in production, ``Unverified()`` (logged loudly) for local development.
    ``app`` (default: the process-wide ``relay.get_app()``) supplies the
    settings, the middleware chain and the transport dead letters are
    published on.
    """

    def __init__(
        self,
        subscriptions: Iterable[Subscription],
        *,
        verifier: OidcVerifier | Unverified,
        app: App | None = None,
        concurrency: int | None = None,
        settle_timeout: float = SETTLE_TIMEOUT,
    ) -> None:
        from relay.app import get_app

        if not isinstance(verifier, OidcVerifier | Unverified):
            raise TypeError(
                "verifier must be OidcVerifier(audience=..., service_account_email=...) or, "
                f"for local development only, Unverified(); got {verifier!r}"
            )
        self.app = app if app is not None else get_app()
        settings = self.app.settings
        self.verifier = verifier
        self.subscriptions = check_unique(s.resolve(settings) for s in subscriptions)
        self._by_name = {s.name: s for s in self.subscriptions}
        self.concurrency = concurrency or settings.concurrency
        self.settle_timeout = settle_timeout
        self._stopping = StopSignal()
        self._processor = Processor(
            self.app.middleware, Codec(settings.encoder), settings.filter_subs_by,
            dead_letters=lambda topic, data, attrs: self.app.transport.publish(
                topic, data, attrs
            ),
            stopping=self._stopping,
        )
        self._pool: HandlerPool | None = None

    # ------------------------------------------------------------ the steps
    def find(self, name: str) -> Subscription:
        """The subscription named ``projects/p/subscriptions/name`` or ``name``."""
        found = self._by_name.get(name.rsplit("/", 1)[-1])
        if found is None:
            raise BadPush(
                f"no subscription named {name!r} is served here (serving: "
                f"{', '.join(sorted(self._by_name)) or 'none'})", status=404,
            )
        return found

    def _admit(
        self, headers: Mapping[str, str], body: bytes, subscription: str
    ) -> tuple[Subscription, PushMessage] | PushResponse:
        """Parse and route (after ``verify``): the message, or the 4xx response."""
        try:
            if len(body) > MAX_BODY:
                raise BadPush(f"the body is {len(body)} bytes, over {MAX_BODY}", status=413)
            message = parse(headers, body, subscription=subscription)
            return self.find(message.subscription), message
        except BadPush as exc:
            logger.warning("push request refused with %d: %s", exc.status, exc.reason)
            return PushResponse(exc.status, exc.reason + "\n")

    def _verify(self, headers: Mapping[str, str]) -> PushResponse | None:
        try:
            self.verifier.verify(headers.get("authorization"))
        except PushAuthError as exc:
            logger.warning("push request refused with %d: %s", exc.status, exc.reason)
            text = "unauthenticated" if exc.status == 401 else "forbidden"
            return PushResponse(exc.status, text + "\n")
        return None

    def _respond(
        self, sub: Subscription, message: PushMessage, verdict: str | None
    ) -> PushResponse:
        if verdict == "ack":
            return PushResponse(ACK_STATUS, "ack\n")
        if verdict is None:
            logger.error(
                "push message %s on %s: no ack or nack within %.0f s; answered %d so Pub/Sub "
                "delivers it again", message.message_id, sub.name, self.settle_timeout,
                NACK_STATUS,
            )
        return PushResponse(NACK_STATUS, "nack\n")

    def _ack_deadline(self, sub: Subscription) -> float:
        return float(sub.ack_deadline or self.app.settings.ack_deadline)

    def _eta_wait(self, sub: Subscription, message: PushMessage) -> tuple[float, bool]:
        """A task sent with ``countdown``/``eta``: how long this request waits for it,
        and whether it is due then. Pub/Sub has no delayed delivery, and a push
        request cannot be held past the ack deadline (the pull worker holds the
        message under lease instead): a task due later is answered with a nack."""
        from relay.tasks import Task

        due = parse_eta(message.attributes.get(ATTR_ETA)) if isinstance(sub, Task) else None
        left = 0.0 if due is None else due - time.time()
        if left <= EARLY:
            return 0.0, True
        room = max(0.0, self._ack_deadline(sub) - DEADLINE_MARGIN)
        return (left, True) if left <= room else (room, False)

    def _not_due(
        self, sub: Subscription, message: PushMessage, *, closing: bool = False
    ) -> PushResponse:
        why = ("the push app is closing" if closing else "later than one push request can "
               f"wait (ack deadline {self._ack_deadline(sub):.0f} s)")
        logger.info(
            "task message %s on %s is not due yet (relay_eta %s), %s; answered %d: Pub/Sub "
            "delivers it again after the retry policy's backoff, and each delivery counts "
            "toward max_delivery_attempts",
            message.message_id, sub.name, message.attributes.get(ATTR_ETA), why, NACK_STATUS,
        )
        return PushResponse(NACK_STATUS, "not due\n")

    def _report_overrun(self, sub: Subscription, message: PushMessage, began: float) -> None:
        took, deadline = _clock() - began, self._ack_deadline(sub)
        if took > deadline:
            logger.warning(
                "push message %s on %s took %.1f s, past the subscription's ack deadline "
                "(%.0f s): Pub/Sub counted this delivery as failed and sends the message "
                "again, maybe while it was still running; raise ack_deadline (up to 600) or "
                "make the handler faster", message.message_id, sub.name, took, deadline,
            )

    # ------------------------------------------------------- the one path
    def handle(
        self, headers: Mapping[str, str], body: bytes, *, subscription: str = ""
    ) -> PushResponse:
        """One request, on the calling thread (WSGI). ``headers`` keys lower-case;
        ``subscription`` names it for a route per subscription (unwrapped format)."""
        return drive(self._handle(headers, body, subscription, on_loop=False))

    async def handle_async(
        self, headers: Mapping[str, str], body: bytes, *, subscription: str = ""
    ) -> PushResponse:
        """One request on the running loop (ASGI); a sync handler goes to the bounded pool."""
        return await self._handle(headers, body, subscription, on_loop=True)

    async def _handle(
        self, headers: Mapping[str, str], body: bytes, subscription: str, *, on_loop: bool
    ) -> PushResponse:
        """Both ``handle`` and ``handle_async``: off the loop it never suspends (its
        waits block the calling thread), so ``drive`` runs it to its end."""
        began = _clock()
        try:
            if on_loop and not self.verifier.ready():  # fetching certificates: off the loop
                refused = await asyncio.to_thread(self._verify, headers)
            else:
                refused = self._verify(headers)
            if refused is not None:
                return refused
            admitted = self._admit(headers, body, subscription)
            if isinstance(admitted, PushResponse):
                return admitted
            sub, message = admitted
            wait, due = self._eta_wait(sub, message)
            if wait and (await self._stopping.wait_async(wait) if on_loop
                         else self._stopping.wait(wait)):
                return self._not_due(sub, message, closing=True)
            if not due:
                return self._not_due(sub, message)
            if not on_loop or sub.is_async:
                await self._processor.run(sub, message, on_loop)
            else:
                await asyncio.wrap_future(self._on_pool(sub, message))
            verdict: str | None = None
            try:
                if message.verdict.done() or not on_loop:  # usually done: no loop wake-up
                    verdict = message.verdict.result(self.settle_timeout)
                else:  # settled later (a dead-letter publish)
                    verdict = await asyncio.wait_for(
                        asyncio.wrap_future(message.verdict), self.settle_timeout
                    )
            except (FutureTimeout, asyncio.TimeoutError):
                pass
            self._report_overrun(sub, message, began)
            return self._respond(sub, message, verdict)
        except Exception:
            logger.exception("push request failed inside relay; answered %d", NACK_STATUS)
            return PushResponse(NACK_STATUS, "error\n")

    def _on_pool(self, sub: Subscription, message: PushMessage) -> Future[None]:
        if self._pool is None:
            self._pool = HandlerPool(self.concurrency, name="relay-push")
        done: Future[None] = Future()

        def run(_: object) -> None:
            try:
                drive(self._processor.run(sub, message, False))
            except BaseException as exc:
                done.set_exception(exc)
            else:
                done.set_result(None)

        self._pool.submit(run, None)
        return done

    def close(self) -> None:
        """Stop in-process retries and let the pool's threads go. Idempotent."""
        self._stopping.set()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
