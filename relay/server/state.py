"""The server's state: topics, subscriptions and what publishing does to them.

The ``Broker`` owns the topology (one lock, held only to change or read it) and
one ``Queue`` per subscription. Publishing stamps each message (id, publish
time), serialises it once and hands it to every attached subscription whose
filter it matches; the rest count as acknowledged, as on Pub/Sub. A
housekeeping thread releases lapsed leases and due backoffs, and forwards dead
letters.
"""

from __future__ import annotations

import datetime
import itertools
import threading
import time
from typing import Any

import grpc
from google.pubsub_v1 import types as gtypes

from relay.server import names
from relay.server.filter_language import FilterError, parse
from relay.server.names import ServiceError
from relay.server.push import PUSH_BACKOFF
from relay.server.queue import Config, Entry, Queue

PubsubMessage = gtypes.PubsubMessage.pb()
Subscription = gtypes.Subscription.pb()
Topic = gtypes.Topic.pb()

#: What a subscription's topic becomes when the topic is deleted (as on Pub/Sub).
DELETED_TOPIC = "_deleted-topic_"
#: How often lapsed leases and backoffs are looked for, in seconds.
TICK = 0.02


def _seconds(duration: Any) -> float:
    return float(duration.seconds) + float(duration.nanos) / 1e9


def subscription_config(sub: Any) -> Config:
    """Validate a Subscription (defaults filled in) and derive its ``Config``."""
    names.check_ack_deadline(sub.ack_deadline_seconds)
    message_filter = None
    if sub.filter:
        if len(sub.filter.encode()) > names.MAX_FILTER_BYTES:
            raise names.invalid(
                f"Invalid filter: it is longer than {names.MAX_FILTER_BYTES} bytes."
            )
        try:
            message_filter = parse(sub.filter)
        except FilterError as exc:
            raise names.invalid(str(exc)) from exc
    backoff = None
    if sub.HasField("retry_policy"):
        low = _seconds(sub.retry_policy.minimum_backoff) if sub.retry_policy.HasField(
            "minimum_backoff") else names.DEFAULT_MIN_BACKOFF
        high = _seconds(sub.retry_policy.maximum_backoff) if sub.retry_policy.HasField(
            "maximum_backoff") else names.DEFAULT_MAX_BACKOFF
        if not (0 <= low <= names.MAX_BACKOFF and 0 <= high <= names.MAX_BACKOFF and low <= high):
            raise names.invalid(
                f"Invalid retry_policy: minimum_backoff ({low} s) and maximum_backoff "
                f"({high} s) must be between 0 and {names.MAX_BACKOFF:g} seconds, the "
                "minimum no greater than the maximum."
            )
        backoff = (low, high)
    push = bool(sub.push_config.push_endpoint)
    if push and backoff is None:
        backoff = PUSH_BACKOFF
    dead_letter, attempts = "", names.DEFAULT_DELIVERY_ATTEMPTS
    if sub.HasField("dead_letter_policy") and sub.dead_letter_policy.dead_letter_topic:
        dead_letter = sub.dead_letter_policy.dead_letter_topic
        names.split_name(dead_letter, "topics")
        attempts = sub.dead_letter_policy.max_delivery_attempts or attempts
        if not names.MIN_DELIVERY_ATTEMPTS <= attempts <= names.MAX_DELIVERY_ATTEMPTS:
            raise names.invalid(
                f"Invalid max_delivery_attempts: {attempts} (it must be between "
                f"{names.MIN_DELIVERY_ATTEMPTS} and {names.MAX_DELIVERY_ATTEMPTS})."
            )
        sub.dead_letter_policy.max_delivery_attempts = attempts
    return Config(
        name=sub.name,
        ack_deadline=sub.ack_deadline_seconds,
        filter=message_filter,
        backoff=backoff,
        dead_letter_topic=dead_letter,
        max_delivery_attempts=attempts,
        ordering=sub.enable_message_ordering,
        exactly_once=sub.enable_exactly_once_delivery,
        push=push,
    )


class Broker:
    """Topics and subscriptions in memory. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.topics: dict[str, Any] = {}
        self.subscriptions: dict[str, Any] = {}
        self.queues: dict[str, Queue] = {}
        self._attached: dict[str, list[Queue]] = {}
        self._message_ids = itertools.count(1)
        self._stopping = threading.Event()
        self._ticker: threading.Thread | None = None

    # --------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self._ticker = threading.Thread(target=self._tick, name="relay-server-ticker", daemon=True)
        self._ticker.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2)
        with self._lock:
            queues = list(self.queues.values())
        for queue in queues:
            with queue.cond:
                queue.stopped = True
                queue.cond.notify_all()

    def _tick(self) -> None:
        while not self._stopping.wait(TICK):
            for queue in list(self.queues.values()):
                dead = queue.tick()
                if dead:
                    self.dead_letter(queue, dead)

    # --------------------------------------------------------------- topics
    def create_topic(self, topic: Any) -> Any:
        _, short = names.split_name(topic.name, "topics")
        with self._lock:
            if topic.name in self.topics:
                raise names.already_exists(short)
            self.topics[topic.name] = topic
            self._attached[topic.name] = []
        return topic

    def topic(self, name: str) -> Any:
        _, short = names.split_name(name, "topics")
        with self._lock:
            found = self.topics.get(name)
        if found is None:
            raise names.not_found(short)
        return found

    def delete_topic(self, name: str) -> None:
        _, short = names.split_name(name, "topics")
        with self._lock:
            if self.topics.pop(name, None) is None:
                raise names.not_found(short)
            for queue in self._attached.pop(name, []):
                self.subscriptions[queue.config.name].topic = DELETED_TOPIC

    def topic_subscriptions(self, name: str) -> list[str]:
        self.topic(name)
        with self._lock:
            return sorted(q.config.name for q in self._attached.get(name, []))

    # --------------------------------------------------------------- subscriptions
    def create_subscription(self, sub: Any) -> Any:
        _, short = names.split_name(sub.name, "subscriptions")
        _, topic_short = names.split_name(sub.topic, "topics")
        for field in ("bigquery_config", "cloud_storage_config"):
            if sub.HasField(field):
                raise names.unimplemented(f"Export subscriptions ({field})")
        if not sub.ack_deadline_seconds:
            sub.ack_deadline_seconds = names.DEFAULT_ACK_DEADLINE
        config = subscription_config(sub)
        sub.state = gtypes.Subscription.State.ACTIVE
        with self._lock:
            if sub.name in self.subscriptions:
                raise names.already_exists(short)
            if sub.topic not in self.topics:
                raise names.not_found(topic_short)
            if config.dead_letter_topic and config.dead_letter_topic not in self.topics:
                raise names.not_found(config.dead_letter_topic.rsplit("/", 1)[-1])
            queue = Queue(config)
            self.subscriptions[sub.name] = sub
            self.queues[sub.name] = queue
            self._attached[sub.topic].append(queue)
        return sub

    def subscription(self, name: str) -> Any:
        _, short = names.split_name(name, "subscriptions")
        with self._lock:
            found = self.subscriptions.get(name)
        if found is None:
            raise names.not_found(short)
        return found

    def queue(self, name: str) -> Queue:
        _, short = names.split_name(name, "subscriptions")
        with self._lock:
            found = self.queues.get(name)
        if found is None:
            raise names.not_found(short)
        return found

    def replace_subscription(self, updated: Any) -> Any:
        """Store ``updated`` (a changed copy of a stored subscription)."""
        config = subscription_config(updated)
        with self._lock:
            queue = self.queues.get(updated.name)
            if queue is None:
                raise names.not_found(updated.name.rsplit("/", 1)[-1])
            if config.dead_letter_topic and config.dead_letter_topic not in self.topics:
                raise names.not_found(config.dead_letter_topic.rsplit("/", 1)[-1])
            self.subscriptions[updated.name] = updated
        with queue.cond:
            queue.config = config
            queue.cond.notify_all()
        return updated

    def delete_subscription(self, name: str) -> None:
        _, short = names.split_name(name, "subscriptions")
        with self._lock:
            sub = self.subscriptions.pop(name, None)
            if sub is None:
                raise names.not_found(short)
            queue = self.queues.pop(name)
            attached = self._attached.get(sub.topic)
            if attached is not None:
                attached.remove(queue)
        with queue.cond:
            queue.deleted = True
            queue.cond.notify_all()

    # --------------------------------------------------------------- publish
    def publish(self, topic_name: str, messages: Any) -> list[str]:
        """Stamp, serialise and deliver ``messages`` (PubsubMessage protobufs,
        changed in place); return their ids."""
        _, short = names.split_name(topic_name, "topics")
        with self._lock:
            if topic_name not in self.topics:
                raise names.not_found(short)
            queues = list(self._attached[topic_name])
        now = time.time()
        seconds, nanos = int(now), int((now % 1) * 1e9)
        ids: list[str] = []
        stamped: list[tuple[Any, bytes]] = []
        for message in messages:
            message_id = str(next(self._message_ids))
            message.message_id = message_id
            message.publish_time.seconds = seconds
            message.publish_time.nanos = nanos
            stamped.append((message, message.SerializeToString()))
            ids.append(message_id)
        for queue in queues:
            message_filter = queue.config.filter
            queue.add(
                Entry(message, payload, message.ordering_key)
                for message, payload in stamped
                if message_filter is None or message_filter.matches(dict(message.attributes))
            )
        return ids

    def dead_letter(self, queue: Queue, entries: list[Entry]) -> None:
        """Forward ``entries`` to ``queue``'s dead-letter topic with the attributes
        Pub/Sub adds. They are gone if that topic no longer exists, as on Pub/Sub."""
        config = queue.config
        project, short = names.split_name(config.name, "subscriptions")
        forwarded = []
        for entry in entries:
            source = entry.message
            message = PubsubMessage(data=source.data, ordering_key=source.ordering_key)
            message.attributes.update(source.attributes)
            published = datetime.datetime.fromtimestamp(
                source.publish_time.seconds + source.publish_time.nanos / 1e9, datetime.timezone.utc
            )
            message.attributes.update(
                {
                    "CloudPubSubDeadLetterSourceDeliveryCount": str(entry.attempts),
                    "CloudPubSubDeadLetterSourceSubscription": short,
                    "CloudPubSubDeadLetterSourceSubscriptionProject": project,
                    "CloudPubSubDeadLetterSourceTopicPublishTime": published.isoformat(
                        timespec="milliseconds"
                    ),
                }
            )
            forwarded.append(message)
        try:
            self.publish(config.dead_letter_topic, forwarded)
        except ServiceError as exc:
            if exc.code != grpc.StatusCode.NOT_FOUND:
                raise
