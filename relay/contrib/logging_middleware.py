"""``LoggingMiddleware`` (the default) and ``VerboseLoggingMiddleware``.

Every record goes to the ``relay.events`` logger with ``extra`` fields an
operator can index: ``operation`` (``publish``, ``process`` or ``worker_stop``),
``topic``, ``subscription``, ``message_id``, ``status``, ``duration_ms``
(``relay.logs.JsonFormatter`` writes them as JSON keys; the text format shows
only the message). Payloads are logged only on failure, and then truncated
(``relay.message.PAYLOAD_PREVIEW_BYTES``); ``VerboseLoggingMiddleware`` also
logs a truncated payload on success.

The text of a record never holds a private key: an exception's text and a
payload preview pass through ``relay.redaction.redact`` before they are
formatted, so even a handler with a formatter of its own (not relay's) writes
no key. A traceback (``exc_info``) is formatted by the handler: relay's
formatters redact it too.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from relay.errors import DecodeError
from relay.message import Status, preview
from relay.middleware import BaseMiddleware
from relay.redaction import redact

if TYPE_CHECKING:
    from relay.message import Message, Outcome, OutgoingMessage
    from relay.subscription import Subscription
    from relay.worker import Worker


class LoggingMiddleware(BaseMiddleware):
    """Logs publishes at DEBUG, processed messages at INFO, failures at ERROR."""

    logger = logging.getLogger("relay.events")
    verbose = False

    def post_publish_success(self, message: OutgoingMessage, elapsed: float) -> None:
        log = self.logger
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "published %s to %s in %.1f ms", message.message_id, message.topic,
                elapsed * 1000,
                extra=self._extra("publish", message.topic, None, message.message_id,
                                  "success", elapsed),
            )

    def post_publish_failure(
        self, message: OutgoingMessage, exception: BaseException, elapsed: float
    ) -> None:
        self.logger.error(
            "publishing to %s failed after %.1f ms: %s: %s; payload: %s",
            message.topic, elapsed * 1000, type(exception).__name__, redact(str(exception)),
            redact(preview(message.payload)),
            extra=self._extra("publish", message.topic, None, None, "failure", elapsed),
        )

    def post_process_message(
        self, subscription: Subscription, message: Message, outcome: Outcome
    ) -> None:
        exception = outcome.exception
        log = self.logger
        if exception is None and not log.isEnabledFor(logging.INFO):
            return  # the common production case: nothing to format
        if isinstance(exception, DecodeError):
            return  # the worker already logged it, with the message id and payload
        status = outcome.status.value
        extra = self._extra(
            "process", subscription.full_topic, subscription.name, message.id, status,
            outcome.elapsed,
        )
        if outcome.status is Status.SKIPPED and exception is not None:  # SkipMessage
            log.info(
                "message %s on %s skipped in %.1f ms: %s", message.id, subscription.name,
                outcome.elapsed * 1000, redact(str(exception)), extra=extra,
            )
            return
        if exception is not None:
            log.error(
                "message %s on %s failed (%s) in %.1f ms: %s: %s; payload: %s",
                message.id, subscription.name, outcome.action.value, outcome.elapsed * 1000,
                type(exception).__name__, redact(str(exception)), redact(message.preview()),
                extra=extra, exc_info=exception,
            )
            return
        if self.verbose:
            log.info(
                "message %s on %s %s in %.1f ms; payload: %s", message.id, subscription.name,
                status, outcome.elapsed * 1000, redact(message.preview()), extra=extra,
            )
        else:
            log.info(
                "message %s on %s %s in %.1f ms", message.id, subscription.name, status,
                outcome.elapsed * 1000, extra=extra,
            )

    def pre_worker_stop(self, worker: Worker) -> None:
        self.logger.info(
            "stopping worker with %d subscription(s)", len(worker.subscriptions),
            extra={"operation": "worker_stop"},
        )

    @staticmethod
    def _extra(
        operation: str, topic: str, subscription: str | None, message_id: str | None,
        status: str, elapsed: float,
    ) -> dict[str, Any]:
        return {
            "operation": operation,
            "topic": topic,
            "subscription": subscription,
            "message_id": message_id,
            "status": status,
            "duration_ms": round(elapsed * 1000, 3),
        }


class VerboseLoggingMiddleware(LoggingMiddleware):
    """Like ``LoggingMiddleware``, plus a truncated payload on every processed message."""

    verbose = True
