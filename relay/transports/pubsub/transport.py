"""``PubSubTransport``: google-cloud-pubsub's clients behind relay's ``Transport``."""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

import grpc
from google.api_core import exceptions as gexc
from google.api_core import gapic_v1
from google.api_core import retry as gretry
from google.auth import exceptions as auth_exceptions
from google.cloud import pubsub_v1
from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

from relay.errors import ConfigurationError, TransportError
from relay.settings import Settings
from relay.transports.base import FlowControl, MessageCallback, Stream, Transport
from relay.transports.futures import BatchCondition, PublishFuture
from relay.transports.pubsub.admin import PubSubAdmin
from relay.transports.pubsub.calls import PullCalls
from relay.transports.pubsub.credentials import load_credentials
from relay.transports.pubsub.stream import PubSubStream, _Connectivity

logger = logging.getLogger("relay.transports.pubsub")

#: How many publish futures share one Condition (google's default batch size).
_SHARED_BY = 100

#: The options google's own transports give the channels they build
#: (``create_channel``): no size limit on a message, either way. For the emulator
#: google opens a bare ``grpc.insecure_channel`` instead, whose 4 MiB receive limit
#: is below Pub/Sub's 10 MB: a larger message broke every streaming pull that
#: carried it. (google's keepalive option is left out: the emulator does not ask
#: for it, and it is on loopback.)
EMULATOR_CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_metadata_size", 4 * 1024 * 1024),
)

#: Errors a publish is retried on (the client library's own list).
_RETRYABLE_PUBLISH_ERRORS = (
    gexc.Aborted,
    gexc.Cancelled,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.ResourceExhausted,
    gexc.ServiceUnavailable,
    gexc.Unknown,
)


class _BoundedRetry(gretry.Retry):
    """A publish retry whose total deadline the client library cannot lift.

    With message ordering enabled, ``PublisherClient.publish`` replaces the retry
    deadline of *every* publish (ordered or not) with 2**32 seconds, so a publish
    to an unreachable endpoint would never fail. relay promises that
    ``PUBLISHER_RETRY_TIMEOUT`` bounds each publish, so this retry keeps its own.
    """

    def with_deadline(self, deadline: float | None) -> _BoundedRetry:
        return self

    def with_timeout(self, timeout: float | None) -> _BoundedRetry:
        return self


class _SubscriberClient(pubsub_v1.SubscriberClient):  # type: ignore[misc]
    """google's subscriber client for ONE stream, on the transport's gRPC transport.

    google's stream manager opens (and reopens) its streaming pull by calling
    the public ``streaming_pull`` of the client it was subscribed through. Here
    that method

    * puts ``stream_lifetime`` (``STREAM_LIFETIME``) as the deadline of each call
      instead of google's 30 minutes, so a server that never notices a vanished
      client (the emulator) stops serving that client's stream within it; and
    * hands each call to the stream's ``PullCalls``, which can half-close it and
      records how it ended: one client per stream is what ties a call, and its
      failure, to the right subscription.

    The gRPC transport (channel) is shared: close the transport's own client,
    never this one.
    """

    def __init__(
        self, *args: Any, calls: PullCalls, stream_lifetime: float | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._relay_calls = calls
        self._relay_stream_lifetime = stream_lifetime

    def streaming_pull(
        self,
        requests: Any = None,
        *,
        retry: Any = gapic_v1.method.DEFAULT,
        timeout: Any = gapic_v1.method.DEFAULT,
        metadata: Any = (),
    ) -> Any:
        if timeout is gapic_v1.method.DEFAULT and self._relay_stream_lifetime:
            timeout = self._relay_stream_lifetime
        start = functools.partial(
            super().streaming_pull, retry=retry, timeout=timeout, metadata=metadata
        )
        return self._relay_calls.open(start, requests)


class PubSubTransport(PubSubAdmin, Transport):
    """relay's transport over google-cloud-pubsub. Thread-safe; clients are lazy."""

    #: google's ``publish(topic, data, ordering_key, retry, timeout, **attrs)``
    #: takes these as its own parameters, so they cannot be attribute names here
    #: (``relay.limits.UNSENDABLE_ATTRIBUTES``, which a test keeps equal).
    unsendable_attributes = frozenset({"self", "topic", "data", "ordering_key", "retry", "timeout"})

    def __init__(
        self,
        settings: Settings,
        *,
        publisher_client: Any = None,
        subscriber_client: Any = None,
    ) -> None:
        """``publisher_client``/``subscriber_client``: google clients built by the
        caller (say, on a gRPC channel with interceptors), used instead of building
        them from the settings; the credentials settings do not apply to them. Each
        stream runs on a client of its own over the given subscriber's gRPC
        transport, so ``STREAM_LIFETIME`` does apply. A given publisher needs
        ``enable_message_ordering`` for ordering keys. The transport closes them in
        ``close()``.
        """
        self.settings = settings
        self._lock = threading.Lock()
        self._project: str | None = None
        self._publisher: Any = publisher_client
        self._subscriber: Any = subscriber_client
        self._topic_paths: dict[str, str] = {}
        self._streams: list[PubSubStream] = []
        self._connectivity: _Connectivity | None = None
        #: google's future of each publish in flight -> the one ``publish()`` returned.
        self._pending: dict[Future[str], PublishFuture] = {}
        #: Shared by the futures ``publish()`` returns (see ``PublishFuture``), a new
        #: one every ``_SHARED_BY`` of them: a wait in ``result()`` is woken by the
        #: resolution of any future sharing its Condition, so few should share one.
        self._condition = BatchCondition()
        self._made = 0
        self._closed = False
        timeout = settings.publisher_retry_timeout
        self._publish_timeout = timeout
        self._publish_retry = _BoundedRetry(
            initial=0.1,
            maximum=min(60.0, timeout),
            multiplier=4,
            predicate=gretry.if_exception_type(*_RETRYABLE_PUBLISH_ERRORS),
            timeout=timeout,
        )

    # ---------------------------------------------------------------- clients
    @property
    def project(self) -> str:
        if self._project is None:
            self._project = self.settings.project_id()
        return self._project

    def _client_kwargs(self) -> dict[str, Any]:
        if self.settings.emulator_host:
            # The client library switches to an insecure channel to the emulator
            # by itself; any credentials or endpoint given here would be wrong.
            return {}
        kwargs: dict[str, Any] = {}
        credentials = self._load_credentials()
        if credentials is not None:
            kwargs["credentials"] = credentials
        if self.settings.client_options:
            kwargs["client_options"] = dict(self.settings.client_options)
        return kwargs

    def _load_credentials(self) -> Any:
        return load_credentials(self.settings)

    def _build(
        self, factory: Callable[..., Any], grpc_transport: Callable[..., Any], **options: Any
    ) -> Any:
        host = self.settings.emulator_host
        if host:
            channel = grpc.insecure_channel(host, options=EMULATOR_CHANNEL_OPTIONS)
            return factory(transport=grpc_transport(channel=channel), **options)
        kwargs = self._client_kwargs()
        try:
            return factory(**options, **kwargs)
        except auth_exceptions.DefaultCredentialsError as exc:
            raise ConfigurationError(
                f"no Google credentials were found ({exc}): set GC_CREDENTIALS_PATH to a "
                "service-account key file or GC_CREDENTIALS_JSON to its contents, run "
                "'gcloud auth application-default login', or set PUBSUB_EMULATOR_HOST to "
                "use the emulator"
            ) from exc

    def _publisher_client(self) -> Any:
        client = self._publisher
        if client is None:
            with self._lock:
                if self._closed:
                    raise TransportError("the transport is closed")
                if self._publisher is None:
                    self._publisher = self._build(
                        pubsub_v1.PublisherClient,
                        PublisherGrpcTransport,
                        publisher_options=pubsub_v1.types.PublisherOptions(
                            enable_message_ordering=True
                        ),
                    )
                client = self._publisher
        return client

    def _subscriber_client(self) -> Any:
        client = self._subscriber
        if client is None:
            with self._lock:
                if self._closed:
                    raise TransportError("the transport is closed")
                if self._subscriber is None:
                    self._subscriber = self._build(
                        pubsub_v1.SubscriberClient, SubscriberGrpcTransport
                    )
                client = self._subscriber
        return client

    # ------------------------------------------------------------- publishing
    def publish(
        self, topic: str, data: bytes, attributes: Mapping[str, str], *, ordering_key: str = ""
    ) -> Future[str]:
        # Attribute names google's publish() takes as parameters (unsendable_attributes)
        # are refused by relay's Publisher before they get here.
        try:
            sent: Future[str] = self._publisher_client().publish(
                self.topic_path(topic),
                data,
                ordering_key=ordering_key,
                retry=self._publish_retry,
                timeout=self._publish_timeout,
                **attributes,
            )
        except ConfigurationError:
            raise  # e.g. no credentials: the caller must see it now, not in a future
        except Exception as exc:
            failed: Future[str] = Future()
            failed.set_exception(exc)
            return failed
        # The caller gets relay's light future, not google's: a kept google future
        # is a dozen objects for the garbage collector to walk (its Condition, lock,
        # deque, lists), which cost more CPU than publishing; relay's is one, once resolved.
        self._made += 1  # racy across threads, and harmless: it only spreads the sharing
        if self._made % _SHARED_BY == 0:
            self._condition = BatchCondition()
        future = PublishFuture(self._condition)
        self._pending[sent] = future
        sent.add_done_callback(self._forward)
        if ordering_key:
            sent.add_done_callback(lambda f: self._resume_if_failed(f, topic, ordering_key))
        return future

    def _forward(self, sent: Future[str]) -> None:
        """google's future is done: resolve the caller's the same way."""
        future = self._pending.pop(sent)
        try:
            message_id = sent.result()
        except BaseException as exc:  # done: it raises at once
            future.set_exception(exc)
        else:
            future.set_result(message_id)

    def _resume_if_failed(self, future: Future[str], topic: str, ordering_key: str) -> None:
        """After a failed ordered publish google pauses the key (every later publish
        with it fails at once); the failure has been reported, so resume it."""
        if future.cancelled() or future.exception() is None:
            return
        client = self._publisher
        if client is None:
            return
        try:
            client.resume_publish(self.topic_path(topic), ordering_key)
            logger.warning(
                "an ordered publish to %s failed; ordering key %r resumed, so later messages "
                "with that key are sent (the failed one is not: publish it again if needed)",
                topic, ordering_key,
            )
        except Exception:
            logger.exception("resuming ordering key %r on %s failed", ordering_key, topic)

    # -------------------------------------------------------------- consuming
    def subscribe(
        self, subscription: str, on_message: MessageCallback, flow_control: FlowControl
    ) -> Stream:
        if self._closed:
            raise TransportError("the transport is closed; build a new one to subscribe")
        client = self._subscriber_client()
        with self._lock:
            if self._connectivity is None:
                channel = getattr(getattr(client, "transport", None), "grpc_channel", None)
                if channel is not None:
                    self._connectivity = _Connectivity(channel)
        # google's stream ack deadline: how long a message handed to a call lasts.
        lease = int(flow_control.max_lease_extension)
        stream_ack_deadline = min(max(lease, 10), 600) if lease else 60
        stream = PubSubStream(
            subscription, on_message, self._connectivity, heal_after=stream_ack_deadline + 5
        )
        stream_client = _SubscriberClient(
            transport=client.transport,
            subscriber_options=getattr(client, "subscriber_options", ()),
            calls=stream.calls,
            stream_lifetime=self.settings.effective_stream_lifetime,
        )
        stream._future = stream_client.subscribe(
            self.subscription_path(subscription),
            stream._deliver,
            flow_control=pubsub_v1.types.FlowControl(
                max_bytes=flow_control.max_bytes,
                max_messages=flow_control.max_messages,
                max_lease_duration=flow_control.max_lease_duration,
                max_duration_per_lease_extension=int(flow_control.max_lease_extension),
            ),
            scheduler=stream.scheduler,
        )
        with self._lock:
            self._streams = [s for s in self._streams if not s.done()]
            self._streams.append(stream)
        return stream

    # ---------------------------------------------------------------- closing
    def close(self) -> None:
        """Close open streams, flush pending publishes, close both clients."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            streams, self._streams = self._streams, []
            publisher, subscriber = self._publisher, self._subscriber
        for stream in streams:
            stream.close(timeout=10)
        if self._connectivity is not None:
            self._connectivity.close()
        if publisher is not None:
            publisher.stop()  # sends what is still batched
            pending = list(self._pending)
            if pending:
                _, not_done = concurrent.futures.wait(
                    pending, timeout=self._publish_timeout + 1
                )
                if not_done:
                    logger.warning("%d publish(es) unconfirmed at close", len(not_done))
            publisher.transport.close()
        if subscriber is not None:
            subscriber.close()
