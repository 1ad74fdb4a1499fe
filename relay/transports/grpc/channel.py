"""The loop thread, the gRPC channel and how gRPC errors are classified.

One ``LoopThread`` per process (``shared_loop``) runs one asyncio event loop;
every streaming pull, lease, ack flush and publish batch of every
``GrpcTransport`` is a task on it, so the thread count does not grow with the
number of subscriptions, streams or transports.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import platform
import random
import threading
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TypeVar

import grpc
from google.api_core import exceptions as gexc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from relay._version import __version__
from relay.errors import ConfigurationError

logger = logging.getLogger("relay.transports.grpc")

T = TypeVar("T")

#: google's generated transports give their channels these options (keepalive
#: every 30 s, no message size limit either way); relay's channel gets them too,
#: to the emulator as well (a bare channel would refuse messages over 4 MiB).
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_metadata_size", 4 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30000),
    ("grpc.primary_user_agent", f"relay/{__version__}"),
)
#: What google's clients send as ``x-goog-api-client``, with relay's name added.
API_CLIENT = (
    f"gl-python/{platform.python_version()} grpc/{grpc.__version__} relay/{__version__}"
)
SCOPES = ("https://www.googleapis.com/auth/pubsub",)
DEFAULT_ENDPOINT = "pubsub.googleapis.com:443"

#: Stream errors a streaming pull is reopened after (google's client's list:
#: ``_RETRYABLE_STREAM_ERRORS``). Any other code ends the stream with an error.
RETRYABLE_STREAM = frozenset({
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.UNKNOWN,
})
#: Errors a publish is retried on (google's publisher's list, CANCELLED included).
RETRYABLE_PUBLISH = RETRYABLE_STREAM | {grpc.StatusCode.CANCELLED}
#: Errors an ack or modack batch is retried on (google's exactly-once list).
RETRYABLE_ACK = frozenset({
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNAVAILABLE,
})


class Backoff:
    """Exponential backoff with full jitter: 0.1 s doubling up to ``maximum``."""

    def __init__(self, initial: float = 0.1, maximum: float = 10.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self._next = initial

    def delay(self) -> float:
        current = self._next
        self._next = min(self.maximum, current * 2)
        return random.uniform(current / 2, current)

    def reset(self) -> None:
        self._next = self.initial


class LoopThread:
    """An asyncio event loop on a daemon thread of its own, until ``stop()``."""

    def __init__(self, name: str = "relay-grpc") -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
        finally:
            try:
                pending = asyncio.all_tasks(self.loop)
                for task in pending:
                    task.cancel()
                if pending:
                    self.loop.run_until_complete(
                        asyncio.gather(*pending, return_exceptions=True)
                    )
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            finally:
                self.loop.close()

    def in_loop(self) -> bool:
        return threading.current_thread() is self.thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for it (never from the loop thread)."""
        if self.in_loop():
            coro.close()
            raise RuntimeError("LoopThread.run() called on the loop thread itself")
        return self.submit(coro).result(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        if self.loop.is_closed():
            return
        if not self.loop.is_running():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        if not self.in_loop():
            self.thread.join(timeout)


_shared: tuple[int, LoopThread] | None = None
_shared_lock = threading.Lock()


def shared_loop() -> LoopThread:
    """The process's one ``relay-grpc`` loop thread, started on first use.

    Every ``GrpcTransport`` of the process runs on it and it is never stopped:
    grpc.aio's completion-queue poller is process-wide and may still hand an
    event to a loop after the transport that used it closed; a loop that closed
    then makes it fail ("Event loop is closed") on whichever loop is live. One
    loop for good also keeps the thread count at one whatever the number of
    transports (a Worker builds its own). Re-made after a fork.
    """
    global _shared
    with _shared_lock:
        pid = os.getpid()
        if _shared is None or _shared[0] != pid or not _shared[1].thread.is_alive():
            _shared = (pid, LoopThread())
        return _shared[1]


def build_channel(
    settings: Any, interceptors: Sequence[Any] = (), credentials_loader: Any = None
) -> tuple[grpc.aio.Channel, str]:
    """The aio channel the transport's calls use, and the endpoint it goes to.

    Must be called on the loop thread (an aio channel belongs to its loop).
    """
    host = settings.emulator_host
    options = list(CHANNEL_OPTIONS)
    if host:
        # The emulator: plain text, no credentials at all.
        return grpc.aio.insecure_channel(
            host, options=options, interceptors=list(interceptors) or None
        ), host
    client_options: Mapping[str, Any] = settings.client_options or {}
    endpoint = str(client_options.get("api_endpoint") or DEFAULT_ENDPOINT)
    if ":" not in endpoint.rsplit("]", 1)[-1]:
        endpoint += ":443"
    call_credentials = grpc.metadata_call_credentials(
        _auth_plugin(settings, credentials_loader), name="google-auth"
    )
    channel_credentials = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(), call_credentials
    )
    return grpc.aio.secure_channel(
        endpoint, channel_credentials, options=options, interceptors=list(interceptors) or None
    ), endpoint


def _auth_plugin(settings: Any, credentials_loader: Any) -> Any:
    import google.auth
    from google.auth import credentials as gcredentials
    from google.auth import exceptions as auth_exceptions
    from google.auth.transport import grpc as auth_grpc
    from google.auth.transport import requests as auth_requests

    from relay.transports.pubsub.credentials import load_credentials

    credentials = (credentials_loader or load_credentials)(settings)
    if credentials is None:
        try:
            credentials, _ = google.auth.default(scopes=SCOPES)
        except auth_exceptions.DefaultCredentialsError as exc:
            raise ConfigurationError(
                f"no Google credentials were found ({exc}): set GC_CREDENTIALS_PATH to a "
                "service-account key file or GC_CREDENTIALS_JSON to its contents, run "
                "'gcloud auth application-default login', or set PUBSUB_EMULATOR_HOST to "
                "use the emulator"
            ) from exc
    credentials = gcredentials.with_scopes_if_required(  # type: ignore[no-untyped-call]
        credentials, SCOPES
    )
    return auth_grpc.AuthMetadataPlugin(  # type: ignore[no-untyped-call]
        credentials, auth_requests.Request()
    )


def metadata(resource: str) -> tuple[tuple[str, str], ...]:
    """Call metadata: the routing header Pub/Sub expects and the client's name."""
    return (("x-goog-request-params", resource), ("x-goog-api-client", API_CLIENT))


def code_of(exc: BaseException) -> grpc.StatusCode:
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code()
    if isinstance(exc, asyncio.TimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.UNKNOWN


def as_api_error(exc: BaseException) -> BaseException:
    """A gRPC error as google's api_core exception (what PubSubTransport's futures
    fail with), so code that inspects publish failures sees the same types."""
    if isinstance(exc, grpc.aio.AioRpcError):
        error: BaseException = gexc.from_grpc_status(  # type: ignore[no-untyped-call]
            exc.code(), exc.details() or "", errors=(exc,)
        )
        return error
    return exc


def ack_id_errors(exc: BaseException) -> dict[str, str]:
    """Per-ack-id failures an ack/modack reported in an ErrorInfo (exactly-once
    delivery: ``EXACTLY_ONCE_ACKID_FAILURE``), ack id -> reason; {} if none."""
    if not isinstance(exc, grpc.aio.AioRpcError):
        return {}
    for key, value in exc.trailing_metadata() or ():
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except Exception:
            return {}
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if isinstance(detail, any_pb2.Any) and detail.Is(info.DESCRIPTOR):
                detail.Unpack(info)
                return dict(info.metadata)
    return {}
