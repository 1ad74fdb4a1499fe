"""``GrpcTransport``: relay's own Pub/Sub client on the generated gRPC layer."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import grpc

from relay.errors import ConfigurationError, TransportError
from relay.settings import Settings
from relay.transports.base import FlowControl, MessageCallback, Stream, Transport
from relay.transports.grpc.channel import (
    CHANNEL_OPTIONS,
    LoopThread,
    build_channel,
    shared_loop,
)
from relay.transports.grpc.consumer import pull_method
from relay.transports.grpc.publisher import Publisher
from relay.transports.grpc.settle import Settler
from relay.transports.grpc.stream import GrpcStream
from relay.transports.pubsub.admin import PubSubAdmin

logger = logging.getLogger("relay.transports.grpc")


@dataclass
class Core:
    """What the transport builds on first use: the loop, the channel, the queues."""

    loop_thread: LoopThread
    channel: grpc.aio.Channel
    endpoint: str
    settler: Settler
    publisher: Publisher
    pull_method: Any


class GrpcTransport(PubSubAdmin, Transport):
    """Pub/Sub over gRPC; every stream and publish runs on the process's one loop thread.

    ``interceptors``: ``grpc.aio`` client interceptors for the data channel (tests
    count the acks the broker accepted this way). ``credentials_loader``: a
    replacement for ``relay.transports.pubsub.credentials.load_credentials``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        interceptors: Sequence[Any] = (),
        credentials_loader: Any = None,
    ) -> None:
        self.settings = settings
        self._interceptors = tuple(interceptors)
        self._credentials_loader = credentials_loader
        self._lock = threading.Lock()
        self._core: Core | None = None
        self._project: str | None = None
        self._topic_paths: dict[str, str] = {}
        self._streams: list[GrpcStream] = []
        self._admin_clients: dict[str, Any] = {}
        self._admin_channel: Any = None
        self._channel_state: grpc.ChannelConnectivity | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._closed = False
        self.streams_per_subscription = int(getattr(settings, "streams_per_subscription", 1))

    # ------------------------------------------------------------------ core
    def core(self) -> Core:
        core = self._core
        if core is not None:
            return core
        with self._lock:
            if self._closed:
                raise TransportError("the transport is closed")
            if self._core is None:
                loop_thread = shared_loop()
                self._core = loop_thread.run(self._build(loop_thread), timeout=60)
            return self._core

    async def _build(self, loop_thread: LoopThread) -> Core:
        channel, endpoint = build_channel(
            self.settings, self._interceptors, self._credentials_loader
        )
        loop = asyncio.get_running_loop()
        core = Core(
            loop_thread, channel, endpoint, Settler(loop),
            Publisher(loop, channel, self.settings), pull_method(channel),
        )
        self._watcher = loop.create_task(self._watch(channel))
        return core

    async def _watch(self, channel: grpc.aio.Channel) -> None:
        """Follow the channel's connectivity, for ``Stream.connected()``."""
        try:
            state = channel.get_state(try_to_connect=True)
            while True:
                self._channel_state = state
                await channel.wait_for_state_change(state)
                state = channel.get_state(try_to_connect=False)
        except (asyncio.CancelledError, Exception):
            return

    def channel_ready(self) -> bool:
        return self._channel_state in (None, grpc.ChannelConnectivity.READY)

    @property
    def project(self) -> str:
        if self._project is None:
            self._project = self.settings.project_id()
        return self._project

    # ------------------------------------------------------------- publishing
    def publish(
        self, topic: str, data: bytes, attributes: Mapping[str, str], *, ordering_key: str = ""
    ) -> Future[str]:
        # Any attribute name is sendable here ("topic", "data", "ordering_key", ...):
        # the message is built as protobuf, not from keyword arguments.
        try:
            publisher = self.core().publisher
            return publisher.publish(self.topic_path(topic), data, attributes, ordering_key)
        except ConfigurationError:
            raise
        except Exception as exc:
            failed: Future[str] = Future()
            failed.set_exception(exc)
            return failed

    # -------------------------------------------------------------- consuming
    def subscribe(
        self, subscription: str, on_message: MessageCallback, flow_control: FlowControl
    ) -> Stream:
        if self._closed:
            raise TransportError("the transport is closed; build a new one to subscribe")
        stream = GrpcStream(
            self, subscription, on_message, flow_control, streams=self.streams_per_subscription
        )
        stream.loop.call_soon_threadsafe(stream.start)
        with self._lock:
            self._streams = [s for s in self._streams if not s.done()]
            self._streams.append(stream)
        return stream

    # ------------------------------------------------------------------ admin
    def _admin_client(self, kind: str) -> Any:
        client = self._admin_clients.get(kind)
        if client is not None:
            return client
        from google.pubsub_v1 import PublisherClient, SubscriberClient
        from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
        from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

        with self._lock:
            if self._closed:
                raise TransportError("the transport is closed")
            client = self._admin_clients.get(kind)
            if client is not None:
                return client
            factory: Any
            transport_cls: Any
            factory, transport_cls = (
                (PublisherClient, PublisherGrpcTransport) if kind == "publisher"
                else (SubscriberClient, SubscriberGrpcTransport)
            )
            host = self.settings.emulator_host
            if host:
                if self._admin_channel is None:
                    self._admin_channel = grpc.insecure_channel(host, options=CHANNEL_OPTIONS)
                client = factory(transport=transport_cls(channel=self._admin_channel))
            else:
                from relay.transports.pubsub.credentials import load_credentials

                kwargs: dict[str, Any] = {}
                credentials = (self._credentials_loader or load_credentials)(self.settings)
                if credentials is not None:
                    kwargs["credentials"] = credentials
                if self.settings.client_options:
                    kwargs["client_options"] = dict(self.settings.client_options)
                client = factory(**kwargs)
            self._admin_clients[kind] = client
            return client

    def _publisher_client(self) -> Any:
        return self._admin_client("publisher")

    def _subscriber_client(self) -> Any:
        return self._admin_client("subscriber")

    # ---------------------------------------------------------------- closing
    def close(self) -> None:
        """Close the streams, send what is batched, release the channels."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            streams, self._streams = self._streams, []
            core = self._core
            admin = list(self._admin_clients.values())
            admin_channel = self._admin_channel
        for stream in streams:
            stream.close(timeout=10)
        if core is not None:
            timeout = self.settings.publisher_retry_timeout + 1
            try:
                core.loop_thread.run(self._shutdown(core, timeout), timeout=timeout + 10)
            except (concurrent.futures.TimeoutError, RuntimeError):
                logger.warning("the gRPC transport did not shut down cleanly", exc_info=True)
            if core.publisher.unconfirmed:
                logger.warning(
                    "%d publish(es) unconfirmed at close", core.publisher.unconfirmed
                )
        for client in admin:
            try:
                client.transport.close()
            except Exception:
                logger.debug("closing an admin client failed", exc_info=True)
        if admin_channel is not None:
            admin_channel.close()

    async def _shutdown(self, core: Core, timeout: float) -> None:
        await core.publisher.drain(timeout)
        core.settler.flush()
        if self._watcher is not None:
            self._watcher.cancel()
        await core.channel.close(grace=1.0)
