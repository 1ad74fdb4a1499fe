"""``TracingMiddleware``: an OpenTelemetry span for every publish and every processed message.

Only ``opentelemetry-api`` is used. Pass ``tracer_provider=`` (and
``propagator=``) to use your own instead of the global ones, which are looked
up on use, so a provider installed after the middleware was built is honoured.
While there is no provider (none set, or a ``NoOpTracerProvider``) no span is
made at all; context still flows: a received message's context is current
while its handler runs (``parent="child"``) and the current context is injected
into published messages, so a service without the SDK passes traces on.

Spans (``docs/observability.md`` has the full list):

* ``send {topic}``, kind PRODUCER, from ``pre_publish`` until Pub/Sub confirmed
  or refused the message. relay's ``publish()`` takes one message, so there is
  no separate "create" span: the send span's context is the message's creation
  context and is injected into its attributes with the propagator (W3C
  ``traceparent``/``tracestate``/``baggage`` by default). Propagation keys
  already in the attributes (forwarded from a received message) are replaced,
  and the send span links to the context they carried. If the keys would break
  Pub/Sub's attribute limits, the message goes out without them (logged once).
* ``process {subscription}``, kind CONSUMER, from ``pre_process_message`` to
  ``post_process_message``, current while the handler runs (a handler that
  publishes makes child send spans). With ``parent="child"`` (the default) its
  parent is the message's creation context; with ``parent="link"`` it starts in
  the ambient context (a new trace, on a worker thread). Either way it links to
  the creation context, and, as a child, also to an ambient span if there is one.
  The context is read from the propagator's keys, or else from the
  ``googclient_traceparent``/``googclient_tracestate`` attributes that
  google-cloud-pubsub writes when its own tracing is on
  (``PublisherOptions(enable_open_telemetry_tracing=True)``).

Names, kinds and attributes follow the OpenTelemetry semantic conventions for
messaging (status "Development"), as published in
https://github.com/open-telemetry/semantic-conventions:

* ``docs/messaging/messaging-spans.md`` (commit 2b42499a): span name
  ``{messaging.operation.name} {destination}``, operation types ``send`` and
  ``process``, kinds PRODUCER for a send whose context is the creation context
  and CONSUMER for process, links to the creation context, creation context as
  parent of a single-message process span as a documented option;
* ``docs/messaging/gcp-pubsub.md`` (commit 003738ea): ``messaging.system`` =
  ``gcp_pubsub`` and the ``messaging.gcp_pubsub.message.*`` attributes;
* ``docs/general/recording-errors.md`` (commit 023348a8): on failure, status
  ERROR with a description and ``error.type``; no exception event.

The Python package ``opentelemetry-semantic-conventions`` 0.66b2 (newest schema
1.44.0) defines the same names; relay does not depend on it. The ``relay.outcome``
(``success``, ``failure``, ``skipped``) and ``relay.action`` (``ack``, ``nack``)
attributes are relay's own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import get_global_textmap
from opentelemetry.propagators.textmap import Getter, TextMapPropagator
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from relay import __version__
from relay.errors import ConfigurationError
from relay.limits import MAX_ATTRIBUTES, validate_attributes
from relay.middleware import BaseMiddleware

if TYPE_CHECKING:
    from relay.message import Message, Outcome, OutgoingMessage
    from relay.subscription import Subscription

logger = logging.getLogger("relay.contrib.tracing")

#: Instrumentation scope of relay's spans and metrics.
SCOPE = "relay"
#: Seconds between looks for a global tracer provider while there is none.
RECHECK_INTERVAL = 1.0

# Attribute names and values, from the semantic conventions cited above.
MESSAGING_SYSTEM = "messaging.system"
GCP_PUBSUB = "gcp_pubsub"
OPERATION_NAME = "messaging.operation.name"
OPERATION_TYPE = "messaging.operation.type"
DESTINATION_NAME = "messaging.destination.name"
SUBSCRIPTION_NAME = "messaging.destination.subscription.name"
MESSAGE_ID = "messaging.message.id"
BODY_SIZE = "messaging.message.body.size"
ORDERING_KEY = "messaging.gcp_pubsub.message.ordering_key"
DELIVERY_ATTEMPT = "messaging.gcp_pubsub.message.delivery_attempt"
ERROR_TYPE = "error.type"
SEND = "send"
PROCESS = "process"
# relay's own attributes.
OUTCOME = "relay.outcome"
ACTION = "relay.action"

#: What google-cloud-pubsub puts before the W3C keys it writes into attributes.
GOOGLE_PREFIX = "googclient_"

#: Where the middleware keeps its per-message state, in ``message.state``.
STATE_KEY = "relay.tracing"

_MAX_DESCRIPTION = 256


def error_type(exception: BaseException) -> str:
    """The ``error.type`` of an exception: its class name, qualified unless built in."""
    cls = type(exception)
    module = cls.__module__
    if module == "builtins":
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


def _describe(exception: BaseException) -> str:
    text = f"{type(exception).__name__}: {exception}"
    return text if len(text) <= _MAX_DESCRIPTION else text[: _MAX_DESCRIPTION - 3] + "..."


class _AttributeGetter(Getter[Mapping[str, str]]):
    """Reads propagation keys from message attributes, optionally behind a prefix."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
        value = carrier.get(self.prefix + key)
        return None if value is None else [value]

    def keys(self, carrier: Mapping[str, str]) -> list[str]:
        size = len(self.prefix)
        return [k[size:] for k in carrier if k.startswith(self.prefix)]


_PLAIN = _AttributeGetter()
_GOOGLE = _AttributeGetter(GOOGLE_PREFIX)
_GOOGLE_TRACEPARENT = GOOGLE_PREFIX + "traceparent"
# google-cloud-pubsub always writes W3C trace context, whatever the global propagator.
_W3C = TraceContextTextMapPropagator()


class TracingMiddleware(BaseMiddleware):
    """OpenTelemetry spans for publishing and processing, with context propagation.

    Put it first in ``MIDDLEWARE`` (outermost): its span then covers every other
    middleware's hooks, so their logs and spans belong to the message's trace.
    One instance serves every thread; per-message state lives in
    ``message.state`` only.
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        propagator: TextMapPropagator | None = None,
        parent: Literal["child", "link"] = "child",
    ) -> None:
        if parent not in ("child", "link"):
            raise ConfigurationError(
                f"TracingMiddleware(parent={parent!r}): use 'child' (the consumer span is a "
                "child of the producer span) or 'link' (it starts a trace and links to it)"
            )
        self.parent = parent
        self._child = parent == "child"
        self._tracer = trace.get_tracer(SCOPE, __version__, tracer_provider=tracer_provider)
        self._provider = tracer_provider
        # Once a real provider is seen it stays: OpenTelemetry sets the global one once.
        self._enabled = tracer_provider is not None and not _is_noop(tracer_provider)
        self._propagator = propagator
        self._fields: tuple[TextMapPropagator | None, frozenset[str]] = (None, frozenset())
        self._warned = False
        self._warn_lock = threading.Lock()
        self._next_check = 0.0

    def _tracing(self) -> bool:
        """Whether spans are made: a provider other than a no-op is there.

        Without one, the global provider is looked up again at most once a
        second (the lookup reads the environment, which costs more than the
        rest of a no-op hook): a provider installed later is picked up within
        a second.
        """
        if self._enabled:
            return True
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + RECHECK_INTERVAL
        provider = self._provider if self._provider is not None else trace.get_tracer_provider()
        if _is_noop(provider):
            return False
        self._enabled = True
        return True

    # context propagation -----------------------------------------------------
    def _current_propagator(self) -> TextMapPropagator:
        return self._propagator if self._propagator is not None else get_global_textmap()

    def _fields_of(self, propagator: TextMapPropagator) -> frozenset[str]:
        cached, fields = self._fields
        if cached is not propagator:  # a composite builds its set on every call: cache it
            fields = frozenset(propagator.fields)
            self._fields = (propagator, fields)  # one atomic store; racing writers agree
        return fields

    def _extract(self, attributes: Mapping[str, str]) -> otel_context.Context:
        """The creation context carried by message attributes (empty if none).

        The propagator's own keys win; without them, the ``googclient_``-prefixed
        W3C keys of google-cloud-pubsub's tracing are used.
        """
        empty = otel_context.Context()
        extracted = self._current_propagator().extract(attributes, empty, _PLAIN)
        if _GOOGLE_TRACEPARENT in attributes and not _is_valid(extracted):
            return _W3C.extract(attributes, extracted, _GOOGLE)
        return extracted

    def _carries_context(self, attributes: Mapping[str, str]) -> bool:
        fields = self._fields_of(self._current_propagator())
        return _GOOGLE_TRACEPARENT in attributes or not fields.isdisjoint(attributes)

    def _inject(
        self, message: OutgoingMessage, ctx: otel_context.Context | None, stale: frozenset[str]
    ) -> None:
        carrier: dict[str, str] = {}
        self._current_propagator().inject(carrier, ctx)
        if not carrier:  # nothing to propagate: leave the attributes as they are
            return
        attributes = message.attributes
        added = sum(1 for key in carrier if key not in attributes)
        try:
            if len(attributes) + added > MAX_ATTRIBUTES:
                raise ConfigurationError(
                    f"the message has {len(attributes)} attributes and the trace context "
                    f"needs {added} more; Pub/Sub allows at most {MAX_ATTRIBUTES}"
                )
            validate_attributes(carrier)
        except ConfigurationError as exc:
            self._warn_once(message.topic, str(exc))
            return
        for key in stale.difference(carrier):  # e.g. a forwarded tracestate of the old trace
            del attributes[key]
        attributes.update(carrier)

    def _warn_once(self, topic: str, reason: str) -> None:
        with self._warn_lock:
            if self._warned:
                return
            self._warned = True
        logger.warning(
            "TracingMiddleware: a message to %s was published without its trace context, "
            "which would break Pub/Sub's attribute limits: %s (logged once; the consumer "
            "will start a new trace for such messages)",
            topic, reason,
        )

    # publishing -------------------------------------------------------------
    def pre_publish(self, message: OutgoingMessage) -> None:
        # Propagation keys already in the attributes (forwarded from a received
        # message, publish(..., **attrs) in a handler) carry that message's context:
        # they are replaced, so the next consumer follows this send, and the send
        # span links to the replaced context.
        stale = self._fields_of(self._current_propagator()).intersection(message.attributes)
        if not self._tracing():
            # No spans; still pass on the current context (an incoming one, or baggage).
            if otel_context.get_current():  # an empty context has nothing to inject
                self._inject(message, None, stale)
            return
        attributes: dict[str, AttributeValue] = {
            MESSAGING_SYSTEM: GCP_PUBSUB,
            OPERATION_NAME: SEND,
            OPERATION_TYPE: SEND,
            DESTINATION_NAME: message.topic,
            BODY_SIZE: len(message.payload),
        }
        if message.ordering_key:
            attributes[ORDERING_KEY] = message.ordering_key
        links = None
        if stale:
            replaced = trace.get_current_span(self._extract(message.attributes))
            if replaced.get_span_context().is_valid:
                links = [Link(replaced.get_span_context())]
        span = self._tracer.start_span(
            f"{SEND} {message.topic}", kind=SpanKind.PRODUCER, attributes=attributes,
            links=links,
        )
        message.state[STATE_KEY] = span
        self._inject(message, trace.set_span_in_context(span), stale)

    def post_publish_success(self, message: OutgoingMessage, elapsed: float) -> None:
        span: trace.Span | None = message.state.pop(STATE_KEY, None)
        if span is None:
            return
        if message.message_id is not None and span.is_recording():
            span.set_attribute(MESSAGE_ID, message.message_id)
        span.end()

    def post_publish_failure(
        self, message: OutgoingMessage, exception: BaseException, elapsed: float
    ) -> None:
        span: trace.Span | None = message.state.pop(STATE_KEY, None)
        if span is None:
            return
        if span.is_recording():
            span.set_attribute(ERROR_TYPE, error_type(exception))
            span.set_status(Status(StatusCode.ERROR, _describe(exception)))
        span.end()

    # processing -------------------------------------------------------------
    def pre_process_message(self, subscription: Subscription, message: Message) -> None:
        if not self._tracing():
            # No spans; as a child, the handler still runs in the message's context,
            # so what it publishes carries that context on.
            carrier = message.attributes
            if self._child and self._carries_context(carrier):
                creation = self._extract(carrier)
                if creation:
                    message.state[STATE_KEY] = (None, otel_context.attach(creation))
            return
        creation = self._extract(message.attributes)
        created = trace.get_current_span(creation).get_span_context()
        parent: otel_context.Context | None = None
        links: list[Link] = []
        if created.is_valid:
            links.append(Link(created))
            if self._child:
                parent = creation
                ambient = trace.get_current_span().get_span_context()
                if ambient.is_valid:  # keep the ambient span reachable, as a link
                    links.append(Link(ambient))
        attributes: dict[str, AttributeValue] = {
            MESSAGING_SYSTEM: GCP_PUBSUB,
            OPERATION_NAME: PROCESS,
            OPERATION_TYPE: PROCESS,
            DESTINATION_NAME: subscription.full_topic,
            SUBSCRIPTION_NAME: subscription.name,
            MESSAGE_ID: message.id,
            BODY_SIZE: len(message.raw),
        }
        if message.ordering_key:
            attributes[ORDERING_KEY] = message.ordering_key
        attempt = message.delivery_attempt
        if attempt is not None:
            attributes[DELIVERY_ATTEMPT] = attempt
        span = self._tracer.start_span(
            f"{PROCESS} {subscription.name}", context=parent, kind=SpanKind.CONSUMER,
            attributes=attributes, links=links,
        )
        # Current until post_process_message, on this thread (or in this task).
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        message.state[STATE_KEY] = (span, token)

    def post_process_message(
        self, subscription: Subscription, message: Message, outcome: Outcome
    ) -> None:
        entry = message.state.pop(STATE_KEY, None)
        if entry is None:
            return
        span, token = entry
        try:
            if span is None:
                return
            if span.is_recording():
                span.set_attribute(OUTCOME, outcome.status.value)
                span.set_attribute(ACTION, outcome.action.value)
                if outcome.exception is not None:
                    span.set_attribute(ERROR_TYPE, error_type(outcome.exception))
                    span.set_status(Status(StatusCode.ERROR, _describe(outcome.exception)))
            span.end()
        finally:
            otel_context.detach(token)


def _is_noop(provider: trace.TracerProvider) -> bool:
    # The proxy is what get_tracer_provider() returns while no global provider is set.
    return isinstance(provider, (trace.NoOpTracerProvider, trace.ProxyTracerProvider))


def _is_valid(ctx: otel_context.Context) -> bool:
    return trace.get_current_span(ctx).get_span_context().is_valid
