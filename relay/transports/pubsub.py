"""The Google Cloud Pub/Sub transport: the only module in relay that imports Google.

``PubSubTransport(settings)`` builds its two clients on first use:

* With ``PUBSUB_EMULATOR_HOST`` set, no credentials are loaded or passed at all:
  the client library sees the variable and opens an insecure channel to the
  emulator (passing credentials there is what Relé's issue #339 was about).
* Otherwise the credentials come from ``GC_CREDENTIALS_PATH`` (a service-account
  key file), ``GC_CREDENTIALS_JSON`` (the key itself) or, with neither, from
  Application Default Credentials. Credentials that cannot be loaded raise
  ``ConfigurationError`` naming the setting, when the first client is built.
  Nothing here probes the network to find out whether it is online.

Consuming: ``subscribe()`` runs google's streaming pull, but google's own thread
pool is replaced by ``InlineScheduler``: google's dispatching thread calls the
relay callback directly, and that callback only hands the message to the
Worker's one bounded executor. Acks and nacks go onto the stream's request
queue and google's dispatcher thread sends them as unary RPCs in batches
(every 10 ms); ``Stream.close()`` shuts the streaming pull down, and google's
shutdown drains that queue before it resolves the stream, so acks issued before
``close()`` are sent. An ack issued after ``close()`` is dropped (the message's
lease lapses and Pub/Sub redelivers it).

Publishing: every publish is retried on transient errors for at most
``PUBLISHER_RETRY_TIMEOUT`` seconds in total, ordered or not, then its future
fails with the error (``google.api_core.exceptions.RetryError``, whose
``cause`` is the last underlying error).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import json
import logging
import queue
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.auth import exceptions as auth_exceptions
from google.cloud import pubsub_v1
from google.cloud.pubsub_v1.subscriber.scheduler import Scheduler
from google.protobuf import field_mask_pb2
from google.pubsub_v1 import types as gtypes

from relay.errors import ConfigurationError, TransportError
from relay.settings import Settings
from relay.subscription import RetryPolicy
from relay.transports.base import (
    FlowControl,
    MessageCallback,
    ReceivedMessage,
    Stream,
    SubscriptionSpec,
    Transport,
)

logger = logging.getLogger("relay.transports.pubsub")

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

#: ``ProvisionResult.changed`` uses relay's spec field names; the field mask
#: uses Pub/Sub's.
_FIELD_MASK_PATHS = {
    "ack_deadline": "ack_deadline_seconds",
    "retry_policy": "retry_policy",
    "labels": "labels",
    "dead_letter_topic": "dead_letter_policy",
    "max_delivery_attempts": "dead_letter_policy",
    "enable_exactly_once_delivery": "enable_exactly_once_delivery",
}


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


class InlineScheduler(Scheduler):  # type: ignore[misc]
    """Runs google's message callback on the thread that dispatches it.

    relay's callback only submits the message to the Worker's executor, so there
    is no point in a thread pool per subscription (google's default). One
    scheduler per stream: its ``queue`` carries that stream's acks and nacks to
    google's dispatcher thread.
    """

    def __init__(self) -> None:
        self._queue: queue.Queue[Any] = queue.Queue()

    @property
    def queue(self) -> queue.Queue[Any]:
        return self._queue

    def schedule(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        callback(*args, **kwargs)

    def shutdown(self, await_msg_callbacks: bool = False) -> list[Any]:
        # Nothing is ever queued here and nothing is owned: the executor the
        # callbacks feed belongs to the Worker, which shuts it down itself.
        return []


class PubSubMessage(ReceivedMessage):
    """A google ``Message`` seen through relay's ``ReceivedMessage``; settles once."""

    __slots__ = (
        "_message",
        "_settled",
        "attributes",
        "data",
        "delivery_attempt",
        "message_id",
        "ordering_key",
        "publish_time",
    )

    #: One lock for every message's settle-once check: held for a flag flip only.
    _settle_lock = threading.Lock()

    def __init__(self, message: Any) -> None:
        self._message = message
        self._settled = False
        self.data = message.data
        # The protobuf map itself (read-only use), not a copy.
        self.attributes = message.attributes
        self.message_id = message.message_id
        self.publish_time = message.publish_time
        # None unless the subscription has a dead-letter policy.
        self.delivery_attempt = message.delivery_attempt
        self.ordering_key = message.ordering_key

    def _claim(self) -> bool:
        with self._settle_lock:
            if self._settled:
                return False
            self._settled = True
            return True

    def ack(self) -> None:
        if self._claim():
            self._message.ack()

    def nack(self) -> None:
        if self._claim():
            self._message.nack()

    def ack_with_response(self) -> Future[None]:
        if not self._claim():
            done: Future[None] = Future()
            done.set_result(None)
            return done
        # Resolves once Pub/Sub confirmed the ack (exactly-once subscriptions);
        # fails with google's AcknowledgeError if it was not applied.
        future: Future[None] = self._message.ack_with_response()
        return future

    def __repr__(self) -> str:
        return f"<PubSubMessage id={self.message_id}>"


class _Connectivity:
    """Follows the subscriber channel's gRPC state: is Pub/Sub reachable right now?

    google's streaming pull reconnects by itself after a network failure, so the
    stream's future does not end; the channel's state is what shows the outage.
    """

    def __init__(self, channel: Any) -> None:
        self._channel = channel
        self.state: Any = None
        try:
            channel.subscribe(self._changed, try_to_connect=True)
        except Exception:  # a channel that cannot report: treat as always connected
            logger.debug("the subscriber channel cannot report its state", exc_info=True)
            self._channel = None

    def _changed(self, state: Any) -> None:
        self.state = state

    @property
    def ready(self) -> bool:
        import grpc

        return self._channel is None or self.state is grpc.ChannelConnectivity.READY

    def close(self) -> None:
        if self._channel is not None:
            with contextlib.suppress(Exception):
                self._channel.unsubscribe(self._changed)


class PubSubStream(Stream):
    """One streaming pull. See ``Stream`` for the contract."""

    def __init__(
        self,
        subscription: str,
        on_message: MessageCallback,
        connectivity: _Connectivity | None = None,
    ) -> None:
        self.subscription = subscription
        self._connectivity = connectivity
        self._on_message = on_message
        self._cancelled = False
        self._error: BaseException | None = None
        self._future: Any = None
        self._close_lock = threading.Lock()
        self._closing = False

    def _deliver(self, message: Any) -> None:
        """google's callback, run inline by ``InlineScheduler``; must not block."""
        if self._cancelled:
            # Not ours any more: hand it straight back so it is redelivered soon.
            message.nack()
            return
        received = PubSubMessage(message)
        try:
            self._on_message(received)
        except BaseException as exc:  # a callback bug ends the stream, visibly
            received.nack()
            if self._error is None:
                self._error = exc
                logger.error(
                    "the message callback of subscription %s raised; closing the stream",
                    self.subscription, exc_info=True,
                )
            self._cancelled = True
            if self._future is not None:
                self._future.cancel()  # non-blocking: google shuts down on its own thread

    def cancel(self) -> None:
        self._cancelled = True

    def close(self, timeout: float | None = None) -> None:
        self._cancelled = True
        future = self._future
        if future is None:
            return
        with self._close_lock:
            if not self._closing:
                self._closing = True
                future.cancel()
        try:
            # Resolves once google's shutdown has flushed the ack queue.
            future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            logger.warning(
                "the stream of subscription %s did not shut down within %s s",
                self.subscription, timeout,
            )
        except Exception:
            pass  # the stream failed; exception() reports why

    def done(self) -> bool:
        return self._future is not None and bool(self._future.done())

    def connected(self) -> bool:
        if self.done():
            return False
        return self._connectivity is None or self._connectivity.ready

    def exception(self) -> BaseException | None:
        if self._error is not None:
            return self._error
        if not self.done():
            return None
        try:
            error: BaseException | None = self._future.exception(timeout=0)
        except BaseException as exc:  # pragma: no cover - google never cancels the state
            return exc
        return error


class PubSubTransport(Transport):
    """relay's transport over google-cloud-pubsub. Thread-safe; clients are lazy."""

    def __init__(
        self,
        settings: Settings,
        *,
        publisher_client: Any = None,
        subscriber_client: Any = None,
    ) -> None:
        """``publisher_client``/``subscriber_client``: google clients built by the
        caller (say, on a gRPC channel with interceptors), used instead of building
        them from the settings; the credentials settings do not apply to them. A
        given publisher needs ``enable_message_ordering`` for ordering keys. The
        transport closes them in ``close()``.
        """
        self.settings = settings
        self._lock = threading.Lock()
        self._project: str | None = None
        self._publisher: Any = publisher_client
        self._subscriber: Any = subscriber_client
        self._topic_paths: dict[str, str] = {}
        self._streams: list[PubSubStream] = []
        self._connectivity: _Connectivity | None = None
        self._pending: set[Future[str]] = set()
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
        from google.oauth2 import service_account

        s = self.settings
        if s.gc_credentials_path:
            try:
                return service_account.Credentials.from_service_account_file(
                    s.gc_credentials_path
                )
            except (OSError, ValueError, auth_exceptions.GoogleAuthError) as exc:
                raise ConfigurationError(
                    f"GC_CREDENTIALS_PATH={s.gc_credentials_path!r}: cannot load service-account "
                    f"credentials ({type(exc).__name__}: {exc}); point it at a service-account "
                    "key file (JSON), or unset it to use Application Default Credentials"
                ) from exc
        if s.gc_credentials_json:
            try:
                return service_account.Credentials.from_service_account_info(
                    json.loads(s.gc_credentials_json)
                )
            except (ValueError, TypeError, auth_exceptions.GoogleAuthError) as exc:
                raise ConfigurationError(
                    f"GC_CREDENTIALS_JSON: not usable service-account credentials "
                    f"({type(exc).__name__}: {exc}); paste a service-account key file's "
                    "contents, or unset it to use Application Default Credentials"
                ) from exc
        return None

    def _build(self, factory: Callable[..., Any], **options: Any) -> Any:
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
                    self._subscriber = self._build(pubsub_v1.SubscriberClient)
                client = self._subscriber
        return client

    @property
    def endpoint(self) -> str:
        """Where the clients connect: the emulator, a configured endpoint, or Google."""
        options = self.settings.client_options or {}
        return (
            self.settings.emulator_host
            or str(options.get("api_endpoint") or "")
            or "pubsub.googleapis.com"
        )

    def topic_path(self, topic: str) -> str:
        path = self._topic_paths.get(topic)
        if path is None:
            path = self._topic_paths[topic] = f"projects/{self.project}/topics/{topic}"
        return path

    def subscription_path(self, subscription: str) -> str:
        return f"projects/{self.project}/subscriptions/{subscription}"

    # ------------------------------------------------------------- publishing
    def publish(
        self, topic: str, data: bytes, attributes: Mapping[str, str], *, ordering_key: str = ""
    ) -> Future[str]:
        # Attribute names google's publish() takes as parameters are rejected by
        # relay.limits.validate_attributes before they get here.
        try:
            future: Future[str] = self._publisher_client().publish(
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
        pending = self._pending
        pending.add(future)
        future.add_done_callback(pending.discard)
        if ordering_key:
            future.add_done_callback(
                lambda f: self._resume_if_failed(f, topic, ordering_key)
            )
        return future

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

    # ----------------------------------------------------------- provisioning
    def ensure_topic(self, topic: str) -> bool:
        client = self._publisher_client()
        request: dict[str, Any] = {"name": self.topic_path(topic)}
        if self.settings.gc_storage_regions:
            request["message_storage_policy"] = {
                "allowed_persistence_regions": list(self.settings.gc_storage_regions)
            }
        try:
            client.create_topic(request=request, **self._admin())
            return True
        except gexc.AlreadyExists:
            return False
        except gexc.PermissionDenied as exc:
            # Allowed to use the topic but not to create topics: fine if it exists.
            try:
                client.get_topic(topic=request["name"], **self._admin())
            except gexc.GoogleAPICallError:
                raise _provisioning_error(
                    f"creating topic {topic!r}", exc, self.endpoint
                ) from exc
            return False
        except gexc.GoogleAPIError as exc:
            raise _provisioning_error(f"creating topic {topic!r}", exc, self.endpoint) from exc

    def topic_exists(self, topic: str) -> bool:
        try:
            self._publisher_client().get_topic(topic=self.topic_path(topic), **self._admin())
        except gexc.NotFound:
            return False
        except gexc.GoogleAPIError as exc:
            raise _provisioning_error(f"reading topic {topic!r}", exc, self.endpoint) from exc
        return True

    def get_subscription(self, name: str) -> SubscriptionSpec | None:
        client = self._subscriber_client()
        try:
            sub = client.get_subscription(
                subscription=self.subscription_path(name), **self._admin()
            )
        except gexc.NotFound:
            return None
        except gexc.GoogleAPIError as exc:
            raise _provisioning_error(
                f"reading subscription {name!r}", exc, self.endpoint
            ) from exc
        policy = None
        if "retry_policy" in sub:
            policy = RetryPolicy(
                sub.retry_policy.minimum_backoff.total_seconds() or 10.0,
                sub.retry_policy.maximum_backoff.total_seconds() or 600.0,
            )
        dead_letter, attempts = "", 0
        if "dead_letter_policy" in sub and sub.dead_letter_policy.dead_letter_topic:
            dead_letter = self._short_topic(sub.dead_letter_policy.dead_letter_topic)
            attempts = sub.dead_letter_policy.max_delivery_attempts or 5
        return SubscriptionSpec(
            name=name,
            topic=self._short_topic(sub.topic),
            ack_deadline=sub.ack_deadline_seconds,
            filter=sub.filter,
            retry_policy=policy,
            labels=dict(sub.labels),
            dead_letter_topic=dead_letter,
            max_delivery_attempts=attempts,
            enable_message_ordering=sub.enable_message_ordering,
            enable_exactly_once_delivery=sub.enable_exactly_once_delivery,
        )

    def _short_topic(self, path: str) -> str:
        """``projects/<ours>/topics/x`` -> ``x``; other projects keep the full path."""
        prefix = f"projects/{self.project}/topics/"
        return path[len(prefix):] if path.startswith(prefix) else path

    def _topic_ref(self, topic: str) -> str:
        return topic if topic.startswith("projects/") else self.topic_path(topic)

    def _to_proto(self, spec: SubscriptionSpec) -> Any:
        sub = gtypes.Subscription(
            name=self.subscription_path(spec.name),
            topic=self.topic_path(spec.topic),
            ack_deadline_seconds=spec.ack_deadline,
            filter=spec.filter,
            labels=dict(spec.labels),
            enable_message_ordering=spec.enable_message_ordering,
            enable_exactly_once_delivery=spec.enable_exactly_once_delivery,
        )
        if spec.retry_policy is not None:
            sub.retry_policy = _retry_policy(spec.retry_policy)
        if spec.dead_letter_topic:
            sub.dead_letter_policy = gtypes.DeadLetterPolicy(
                dead_letter_topic=self._topic_ref(spec.dead_letter_topic),
                max_delivery_attempts=spec.max_delivery_attempts,
            )
        return sub

    def create_subscription(self, spec: SubscriptionSpec) -> bool:
        try:
            self._subscriber_client().create_subscription(
                request=self._to_proto(spec), **self._admin()
            )
        except gexc.AlreadyExists:
            return False
        except gexc.NotFound as exc:
            raise TransportError(
                f"cannot create subscription {spec.name!r}: topic {spec.topic!r} (or its "
                f"dead-letter topic) does not exist ({exc.message}); Worker.setup() creates "
                "topics first with PROVISIONING='create'"
            ) from exc
        except gexc.GoogleAPIError as exc:
            raise _provisioning_error(
                f"creating subscription {spec.name!r}", exc, self.endpoint
            ) from exc
        return True

    def update_subscription(self, spec: SubscriptionSpec, fields: tuple[str, ...]) -> None:
        update = self._to_proto(spec)
        paths = list(dict.fromkeys(_FIELD_MASK_PATHS[name] for name in fields))
        mask = field_mask_pb2.FieldMask(paths=paths)
        try:
            self._subscriber_client().update_subscription(
                request={"subscription": update, "update_mask": mask}, **self._admin()
            )
        except gexc.GoogleAPIError as exc:
            raise _provisioning_error(
                f"updating {', '.join(fields)} of subscription {spec.name!r}", exc, self.endpoint
            ) from exc

    def _admin(self) -> dict[str, Any]:
        return _admin_call(self.settings.admin_timeout)

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
        stream = PubSubStream(subscription, on_message, self._connectivity)
        stream._future = client.subscribe(
            self.subscription_path(subscription),
            stream._deliver,
            flow_control=pubsub_v1.types.FlowControl(
                max_bytes=flow_control.max_bytes,
                max_messages=flow_control.max_messages,
                max_lease_duration=flow_control.max_lease_duration,
            ),
            scheduler=InlineScheduler(),
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


# -------------------------------------------------------------------- helpers
def _admin_call(timeout: float) -> dict[str, Any]:
    """Retry transient errors for at most ``timeout`` seconds in all (ADMIN_TIMEOUT)."""
    return {
        "retry": gretry.Retry(
            initial=0.1, maximum=min(10.0, timeout), multiplier=1.3, timeout=timeout,
            predicate=gretry.if_exception_type(
                gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.Aborted, gexc.Unknown
            ),
        ),
        "timeout": timeout,
    }


def _provisioning_error(action: str, exc: BaseException, endpoint: str = "") -> TransportError:
    hint = ""
    if isinstance(exc, (gexc.RetryError, gexc.ServiceUnavailable, gexc.DeadlineExceeded)):
        hint = (
            f"; Pub/Sub at {endpoint or 'its endpoint'} did not answer within ADMIN_TIMEOUT: "
            "check the network, PUBSUB_EMULATOR_HOST or CLIENT_OPTIONS['api_endpoint'], "
            "or raise ADMIN_TIMEOUT"
        )
    elif isinstance(exc, gexc.PermissionDenied):
        hint = (
            "; the credentials may not manage topics and subscriptions: grant "
            "roles/pubsub.editor, or provision with Terraform and run with "
            "PROVISIONING='verify' (read-only) or 'off'"
        )
    return TransportError(f"{action} failed: {type(exc).__name__}: {exc}{hint}")


def _retry_policy(policy: RetryPolicy) -> Any:
    return gtypes.RetryPolicy(
        minimum_backoff=datetime.timedelta(seconds=policy.minimum_backoff),
        maximum_backoff=datetime.timedelta(seconds=policy.maximum_backoff),
    )
