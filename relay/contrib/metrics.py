"""``MetricsMiddleware``: OpenTelemetry metrics for every publish and every processed message.

Only ``opentelemetry-api`` is used: with no meter provider configured the
instruments are no-ops. Pass ``meter_provider=`` to use your own instead of the
global one; plug in any exporter (``docs/observability.md`` wires Prometheus).

Instruments, from the OpenTelemetry semantic conventions for messaging metrics
(status "Development"), https://github.com/open-telemetry/semantic-conventions
``docs/messaging/messaging-metrics.md`` (commit e767f263; the same names,
units and instrument types as ``opentelemetry-semantic-conventions`` 0.66b2):

* ``messaging.client.sent.messages``: Counter, ``{message}``; one per publish
  outcome, success or failure;
* ``messaging.client.operation.duration``: Histogram, ``s``; per publish, from
  sending to Pub/Sub's answer;
* ``messaging.client.consumed.messages``: Counter, ``{message}``; one per
  processed message, whatever its outcome;
* ``messaging.process.duration``: Histogram, ``s``; per processed message, from
  taking it up to the handler's end (``outcome.elapsed``).

The histograms carry the bucket advice of the conventions (0.005 s to 10 s).
Attributes: ``messaging.system`` (``gcp_pubsub``), ``messaging.operation.name``
and ``messaging.operation.type`` (``send`` or ``process``),
``messaging.destination.name`` (the topic, prefix included),
``messaging.destination.subscription.name`` (processing only), ``error.type``
(the exception's class, only on failure, as ``docs/general/recording-errors.md``
says) and relay's own ``relay.outcome`` (``success``, ``failure``, ``skipped``).
Acks and nacks are queued to google-cloud-pubsub and not timed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from opentelemetry import metrics
from opentelemetry.util.types import AttributeValue

from relay import __version__
from relay.contrib.tracing import (
    DESTINATION_NAME,
    ERROR_TYPE,
    GCP_PUBSUB,
    MESSAGING_SYSTEM,
    OPERATION_NAME,
    OPERATION_TYPE,
    OUTCOME,
    PROCESS,
    SCOPE,
    SEND,
    SUBSCRIPTION_NAME,
    error_type,
)
from relay.middleware import BaseMiddleware

if TYPE_CHECKING:
    from relay.message import Message, Outcome, OutgoingMessage
    from relay.subscription import Subscription

SENT_MESSAGES = "messaging.client.sent.messages"
CONSUMED_MESSAGES = "messaging.client.consumed.messages"
OPERATION_DURATION = "messaging.client.operation.duration"
PROCESS_DURATION = "messaging.process.duration"

#: ``ExplicitBucketBoundaries`` advice of both duration histograms, in seconds.
DURATION_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
)

_Attributes = dict[str, AttributeValue]


def _histogram(
    meter: metrics.Meter, name: str, description: str, buckets: Sequence[float]
) -> metrics.Histogram:
    try:
        return meter.create_histogram(
            name, unit="s", description=description,
            explicit_bucket_boundaries_advisory=buckets,
        )
    except TypeError:  # opentelemetry-api < 1.23 takes no advice
        return meter.create_histogram(name, unit="s", description=description)


class MetricsMiddleware(BaseMiddleware):
    """Counts and times publishes and processed messages with OpenTelemetry metrics.

    One instance serves every thread; it keeps nothing per message.
    """

    def __init__(self, *, meter_provider: metrics.MeterProvider | None = None) -> None:
        meter = metrics.get_meter(SCOPE, __version__, meter_provider=meter_provider)
        self._sent = meter.create_counter(
            SENT_MESSAGES, unit="{message}",
            description="Number of messages producer attempted to send to the broker.",
        )
        self._consumed = meter.create_counter(
            CONSUMED_MESSAGES, unit="{message}",
            description="Number of messages that were delivered to the application.",
        )
        self._operation_duration = _histogram(
            meter, OPERATION_DURATION,
            "Duration of messaging operation initiated by a producer or consumer client.",
            DURATION_BUCKETS,
        )
        self._process_duration = _histogram(
            meter, PROCESS_DURATION, "Duration of processing operation.", DURATION_BUCKETS
        )
        # Attribute sets repeat: build each once. A lost race builds an equal dict twice.
        self._cache: dict[tuple[str, ...], _Attributes] = {}

    def _send_attributes(self, topic: str, failure: str | None) -> _Attributes:
        key = (SEND, topic, failure or "")
        attributes = self._cache.get(key)
        if attributes is None:
            attributes = {
                MESSAGING_SYSTEM: GCP_PUBSUB,
                OPERATION_NAME: SEND,
                OPERATION_TYPE: SEND,
                DESTINATION_NAME: topic,
                OUTCOME: "success" if failure is None else "failure",
            }
            if failure is not None:
                attributes[ERROR_TYPE] = failure
            self._cache[key] = attributes
        return attributes

    # publishing -------------------------------------------------------------
    def post_publish_success(self, message: OutgoingMessage, elapsed: float) -> None:
        attributes = self._send_attributes(message.topic, None)
        self._sent.add(1, attributes)
        self._operation_duration.record(elapsed, attributes)

    def post_publish_failure(
        self, message: OutgoingMessage, exception: BaseException, elapsed: float
    ) -> None:
        attributes = self._send_attributes(message.topic, error_type(exception))
        self._sent.add(1, attributes)
        self._operation_duration.record(elapsed, attributes)

    # processing -------------------------------------------------------------
    def post_process_message(
        self, subscription: Subscription, message: Message, outcome: Outcome
    ) -> None:
        failure = None if outcome.exception is None else error_type(outcome.exception)
        status = outcome.status.value
        key = (PROCESS, subscription.full_topic, subscription.name, status, failure or "")
        attributes = self._cache.get(key)
        if attributes is None:
            attributes = {
                MESSAGING_SYSTEM: GCP_PUBSUB,
                OPERATION_NAME: PROCESS,
                OPERATION_TYPE: PROCESS,
                DESTINATION_NAME: subscription.full_topic,
                SUBSCRIPTION_NAME: subscription.name,
                OUTCOME: status,
            }
            if failure is not None:
                attributes[ERROR_TYPE] = failure
            self._cache[key] = attributes
        self._consumed.add(1, attributes)
        self._process_duration.record(outcome.elapsed, attributes)
