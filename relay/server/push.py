"""Push delivery: POSTing a push subscription's messages to its endpoint.

A subscription whose ``push_config.push_endpoint`` is set gets one ``Pusher``:
a dispatcher thread that leases the subscription's ready messages from its
``Queue`` (the same leases, deadlines, ordering keys and filters as pull) and a
pool of at most ``MAX_OUTSTANDING`` sender threads that POST them, reusing
keep-alive connections (``http.client``). Pub/Sub's rules:

* 102, 200, 201, 202 and 204 acknowledge the message; any other status, a
  connection that fails and a request that outlasts the ack deadline are a
  nack. A nack goes through ``Settle.modify(..., 0)``, the path a pull nack
  takes: delivery attempts, the retry policy's backoff and dead-letter
  forwarding are the queue's and the broker's, not this module's.
* Without a retry policy a push subscription backs off as Pub/Sub's push
  backoff does, exponentially from 100 ms to 60 s (``PUSH_BACKOFF``, applied
  by ``state.subscription_config``).
* The body is the wrapped JSON envelope (``wrapped``), or with ``no_wrapper``
  the data itself, with ``write_metadata`` the metadata and the attributes as
  headers (``unwrapped``).
* At most ``MAX_OUTSTANDING`` pushes per subscription are out at a time
  (Pub/Sub starts lower and grows with successes; a fixed bound is simpler to
  reason about in tests).
* No ``Authorization`` header: relay's server cannot sign Google ID tokens, so
  a push config's ``oidc_token`` is stored and returned but not sent.
* The endpoint must be on loopback unless the server was started with
  ``allow_remote`` (``check_push_config``).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import ipaddress
import json
import logging
import re
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from relay.server import names
from relay.server.queue import Holder, Lease, Queue

if TYPE_CHECKING:
    from relay.server.state import Broker
    from relay.server.streams import Settle

log = logging.getLogger("relay.server.push")

#: The statuses Pub/Sub counts as an acknowledgement.
ACK_STATUSES = frozenset({102, 200, 201, 202, 204})
#: Pushes out at once per subscription.
MAX_OUTSTANDING = 32
#: (minimum, maximum) seconds between deliveries of a nacked message when the
#: subscription has no retry policy: Pub/Sub's push backoff.
PUSH_BACKOFF = (0.1, 60.0)
#: How often an idle dispatcher looks at whether it should stop, in seconds.
WAKE = 0.5
#: Pub/Sub's own push requests say they come from Google's API crawler.
USER_AGENT = "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html) relay"
#: An attribute is written as a header only if its name is an HTTP token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_UNSAFE_VALUE = re.compile(r"[\r\n\x00]")
_RETRYABLE_ON_REUSE = (
    http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
    http.client.CannotSendRequest,
)


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_push_config(push_config: Any, allow_remote: bool) -> None:
    """Refuse an endpoint relay cannot or must not push to (INVALID_ARGUMENT)."""
    endpoint = push_config.push_endpoint
    if not endpoint:
        return
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise names.invalid(
            f"Invalid push_endpoint: {endpoint!r} (it must be an http:// or https:// URL)."
        )
    if not allow_remote and not _loopback(parts.hostname):
        raise names.invalid(
            f"Invalid push_endpoint: {endpoint!r}. relay's Pub/Sub server pushes to loopback "
            "only (127.0.0.1, ::1, localhost), since it has no authentication and would "
            "otherwise POST whatever is published to any host; start it with "
            "allow_remote=True (--allow-remote) to push to other hosts."
        )


def wrapped(lease: Lease, subscription: str, with_attempt: bool) -> tuple[bytes, dict[str, str]]:
    """The default push body: the JSON envelope, field names as Pub/Sub writes them."""
    message = lease.entry.message
    published = message.publish_time.ToJsonString()
    body: dict[str, Any] = {
        "data": base64.b64encode(message.data).decode("ascii"),
        "attributes": dict(message.attributes),
        "messageId": message.message_id,
        "message_id": message.message_id,
        "publishTime": published,
        "publish_time": published,
    }
    if message.ordering_key:
        body["orderingKey"] = message.ordering_key
    envelope: dict[str, Any] = {"message": body, "subscription": subscription}
    if with_attempt:
        envelope["deliveryAttempt"] = lease.entry.attempts
    return json.dumps(envelope).encode(), {"Content-Type": "application/json"}


def unwrapped(lease: Lease, subscription: str, write_metadata: bool
              ) -> tuple[bytes, dict[str, str]]:
    """``no_wrapper``: the data as the body; with ``write_metadata`` the metadata in
    ``x-goog-pubsub-*`` headers and each attribute as a header of its own."""
    message = lease.entry.message
    headers = {"Content-Type": "application/octet-stream"}
    if write_metadata:
        for key, value in message.attributes.items():
            if _TOKEN.fullmatch(key) and not _UNSAFE_VALUE.search(value):
                headers[key] = value
        headers["x-goog-pubsub-subscription-name"] = subscription
        headers["x-goog-pubsub-message-id"] = message.message_id
        headers["x-goog-pubsub-publish-time"] = message.publish_time.ToJsonString()
        if message.ordering_key:
            headers["x-goog-pubsub-ordering-key"] = message.ordering_key
    return bytes(message.data), headers


class Pusher:
    """The push delivery of one subscription: a dispatcher thread and a bounded
    pool of senders. ``stop()`` ends both and closes the connections."""

    def __init__(self, queue: Queue, push_config: Any, settle: Settle) -> None:
        self.queue = queue
        self.endpoint = push_config.push_endpoint
        self.no_wrapper = push_config.HasField("no_wrapper")
        self.write_metadata = push_config.no_wrapper.write_metadata
        self.settle = settle
        parts = urlsplit(self.endpoint)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.holder = Holder(max_messages=MAX_OUTSTANDING)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._idle: list[http.client.HTTPConnection] = []
        self._busy: set[http.client.HTTPConnection] = set()
        self._failing = False
        short = queue.config.name.rsplit("/", 1)[-1]
        self._senders = ThreadPoolExecutor(
            MAX_OUTSTANDING, thread_name_prefix=f"relay-push-{short}"
        )
        self._thread = threading.Thread(
            target=self._dispatch, name=f"relay-push-{short}", daemon=True
        )

    def start(self) -> Pusher:
        self._thread.start()
        return self

    def stop(self, *, cut: bool, wait: bool) -> None:
        """Stop taking messages; those taken but not sent yet are handed back,
        uncounted. With ``cut``, pushes in flight are cut off (their connections
        closed, so nacked), else they finish; with ``wait``, return once every
        thread has ended."""
        self._stopping.set()
        with self.queue.cond:
            self.queue.cond.notify_all()
        with self._lock:
            connections = self._idle + (list(self._busy) if cut else [])
            self._idle = []
        for conn in connections:
            _cut(conn)
        if wait:
            self._thread.join(timeout=5)
        self._senders.shutdown(wait=wait)

    # ----------------------------------------------------------- dispatch
    def _dispatch(self) -> None:
        queue = self.queue
        while True:
            with queue.cond:
                while True:
                    if self._stopping.is_set() or queue.deleted or queue.stopped:
                        return
                    leases = queue.take_locked(
                        self.holder, MAX_OUTSTANDING, 1 << 62, queue.config.ack_deadline
                    )
                    if leases:
                        break
                    queue.cond.wait(WAKE)
            for lease in leases:
                try:
                    self._senders.submit(self._push, lease)
                except RuntimeError:  # the pool was shut down: stop() is under way
                    queue.restore([lease.ack_id])

    def _push(self, lease: Lease) -> None:
        config = self.queue.config
        if self.no_wrapper:
            body, headers = unwrapped(lease, config.name, self.write_metadata)
        else:
            body, headers = wrapped(lease, config.name, bool(config.dead_letter_topic))
        headers["User-Agent"] = USER_AGENT
        if self._stopping.is_set():
            self.queue.restore([lease.ack_id])
            return
        # The request's timeout is what is left of the lease (the ack deadline);
        # a lease that lapsed while waiting for a sender is the ticker's to release.
        left = lease.deadline - self.queue.clock()
        if left <= 0:
            return
        status: int | None = None
        error = ""
        try:
            status = self._post(body, headers, left)
        except (OSError, http.client.HTTPException) as exc:
            error = f"{type(exc).__name__}: {exc}"
        if status in ACK_STATUSES:
            self.settle.ack(self.queue, [lease.ack_id])
            if self._failing:
                self._failing = False
                log.info("push to %s for %s succeeds again", self.endpoint, config.name)
            return
        if not self._failing and not self._stopping.is_set():
            self._failing = True
            log.warning(
                "push to %s for %s failed (%s); the message is redelivered after its backoff",
                self.endpoint, config.name, f"status {status}" if status is not None else error,
            )
        self.settle.modify(self.queue, [lease.ack_id], 0)

    # ----------------------------------------------------------- HTTP
    def _post(self, body: bytes, headers: dict[str, str], timeout: float) -> int:
        """POST once; a kept-alive connection the endpoint had closed is retried
        on a fresh one. The status, or an exception for no response."""
        conn, reused = self._connection(timeout)
        try:
            try:
                status, keep = self._exchange(conn, body, headers)
            except _RETRYABLE_ON_REUSE:
                if not reused or self._stopping.is_set():
                    raise
                conn.close()
                status, keep = self._exchange(conn, body, headers)
        except BaseException:
            self._release(conn, keep=False)
            raise
        self._release(conn, keep=keep)
        return status

    def _exchange(self, conn: http.client.HTTPConnection, body: bytes, headers: dict[str, str]
                  ) -> tuple[int, bool]:
        conn.request("POST", self._path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        # A 102 is interim: the final response would follow on this connection.
        return response.status, response.status != 102 and not response.will_close

    def _connection(self, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            if self._stopping.is_set():
                raise ConnectionAbortedError("the server is stopping")
            if self._idle:
                conn = self._idle.pop()
                reused = True
            else:
                cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
                conn = cls(self._host, self._port, timeout=timeout)
                reused = False
            self._busy.add(conn)
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn, reused

    def _release(self, conn: http.client.HTTPConnection, keep: bool) -> None:
        with self._lock:
            self._busy.discard(conn)
            if keep and not self._stopping.is_set():
                self._idle.append(conn)
                return
        conn.close()


def _cut(conn: http.client.HTTPConnection) -> None:
    """Close ``conn`` from another thread: a blocked send or read returns at once."""
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    conn.close()


class PushDelivery:
    """The server's pushers, one per push subscription, kept in step with the
    subscriptions' push configs (``sync``) and stopped with the server."""

    def __init__(self, broker: Broker, settle: Settle, allow_remote: bool = False) -> None:
        self.broker = broker
        self.settle = settle
        self.allow_remote = allow_remote
        self._lock = threading.Lock()
        self._pushers: dict[str, tuple[Any, Pusher]] = {}
        #: Pushers replaced or ended whose pushes in flight may still be finishing;
        #: ``stop`` waits for them too (one small object per switch).
        self._retired: list[Pusher] = []
        self._stopped = False

    def check(self, push_config: Any) -> None:
        check_push_config(push_config, self.allow_remote)

    def sync(self, name: str) -> None:
        """Start, restart or stop ``name``'s pusher to match its stored push config
        (a deleted subscription has none)."""
        with self._lock:  # read under it too, so racing syncs end on the last config
            try:
                sub: Any = self.broker.subscription(name)
                queue: Queue | None = self.broker.queue(name)
            except names.ServiceError:
                sub = queue = None
            pushes = sub is not None and sub.push_config.push_endpoint
            wanted = sub.push_config if pushes else None
            current = self._pushers.get(name)
            if (current is not None and wanted is not None and current[0] == wanted
                    and current[1].queue is queue):
                return
            old = self._pushers.pop(name, None)
            if old is not None:
                self._retired.append(old[1])
            if wanted is not None and queue is not None and not self._stopped:
                pusher = Pusher(queue, wanted, self.settle)
                self._pushers[name] = (_copy(wanted), pusher.start())
        if old is not None:
            old[1].stop(cut=False, wait=False)

    def stop(self) -> None:
        """Stop every pusher, cutting pushes in flight, and wait for their threads."""
        with self._lock:
            self._stopped = True
            pushers = [p for _, p in self._pushers.values()] + self._retired
            self._pushers.clear()
            self._retired = []
        for pusher in pushers:
            pusher.stop(cut=True, wait=False)
        for pusher in pushers:
            pusher.stop(cut=True, wait=True)

    def running(self) -> list[str]:
        """The subscriptions being pushed, by name."""
        with self._lock:
            return sorted(self._pushers)


def _copy(message: Any) -> Any:
    copy = type(message)()
    copy.CopyFrom(message)
    return copy
