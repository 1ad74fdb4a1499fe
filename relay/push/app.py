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
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from relay.codec import Codec
from relay.executor import HandlerPool
from relay.pipeline import StopSignal, drive
from relay.processing import Processor
from relay.push.auth import OidcVerifier, PushAuthError, Unverified
from relay.push.envelope import BadPush, PushMessage, parse
from relay.subscription import Subscription, check_unique

if TYPE_CHECKING:
    from relay.app import App

logger = logging.getLogger("relay.push")

#: Pub/Sub's message limit is 10 MB; base64 and the envelope add a third.
MAX_BODY = 16 * 1024 * 1024
#: Seconds to wait for a verdict the pipeline settles later (a dead-letter publish).
SETTLE_TIMEOUT = 30.0
ACK_STATUS = 200
NACK_STATUS = 503


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

    # ------------------------------------------------------------ sync (WSGI)
    def handle(
        self, headers: Mapping[str, str], body: bytes, *, subscription: str = ""
    ) -> PushResponse:
        """One request, on the calling thread. ``headers`` keys lower-case;
        ``subscription`` names it for a route per subscription (unwrapped format)."""
        try:
            refused = self._verify(headers)
            if refused is not None:
                return refused
            admitted = self._admit(headers, body, subscription)
            if isinstance(admitted, PushResponse):
                return admitted
            sub, message = admitted
            drive(self._processor.run(sub, message, False))
            try:
                verdict: str | None = message.verdict.result(self.settle_timeout)
            except FutureTimeout:
                verdict = None
            return self._respond(sub, message, verdict)
        except Exception:
            logger.exception("push request failed inside relay; answered %d", NACK_STATUS)
            return PushResponse(NACK_STATUS, "error\n")

    # ----------------------------------------------------------- async (ASGI)
    async def handle_async(
        self, headers: Mapping[str, str], body: bytes, *, subscription: str = ""
    ) -> PushResponse:
        """One request on the running loop; a sync handler goes to the bounded pool."""
        try:
            if self.verifier.ready():
                refused = self._verify(headers)
            else:  # the certificates must be fetched: not on the loop
                refused = await asyncio.to_thread(self._verify, headers)
            if refused is not None:
                return refused
            admitted = self._admit(headers, body, subscription)
            if isinstance(admitted, PushResponse):
                return admitted
            sub, message = admitted
            if sub.is_async:
                await self._processor.run(sub, message, True)
            else:
                await asyncio.wrap_future(self._on_pool(sub, message))
            try:
                verdict: str | None = await asyncio.wait_for(
                    asyncio.wrap_future(message.verdict), self.settle_timeout
                )
            except asyncio.TimeoutError:
                verdict = None
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
