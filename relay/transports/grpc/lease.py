"""Lease management of one stream: modacks in batches, ahead of each deadline.

The policy is google's client's (``leaser.py``, ``histogram.py``), which is
what relay has used so far:

* the stream ack deadline (what a delivered message starts with) is
  ``FLOW_MAX_LEASE_EXTENSION`` clamped to 10..600 s, 60 s when it is 0;
* each extension lasts the 99th percentile of how long messages took to be
  settled, clamped to 10 s (60 s with exactly-once delivery) .. the maximum
  extension (``FLOW_MAX_LEASE_EXTENSION``, else 600 s);
* a message is no longer extended once it has been held
  ``FLOW_MAX_LEASE_DURATION`` seconds: its flow control is released and
  Pub/Sub redelivers it when its lease lapses.

Unlike google's client, which modacks every leased message on each of its
randomised rounds, relay's leaser wakes every ``tick`` seconds (1 to 5 s) and extends only
the messages whose lease ends within the next ``tick + margin``, all in one
batch of modacks. No receipt modack is sent (the stream ack deadline
already covers the first lease).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from relay.transports.base import FlowControl

if TYPE_CHECKING:
    from relay.transports.grpc.stream import GrpcStream

logger = logging.getLogger("relay.transports.grpc")

MIN_DEADLINE = 10
MAX_DEADLINE = 600
EXACTLY_ONCE_MIN_DEADLINE = 60


def stream_ack_deadline(flow: FlowControl) -> int:
    lease = int(flow.max_lease_extension)
    return min(max(lease, MIN_DEADLINE), MAX_DEADLINE) if lease else 60


class Histogram:
    """Settle times in whole seconds (10..600 buckets), for the 99th percentile."""

    def __init__(self) -> None:
        self.counts = [0] * (MAX_DEADLINE + 1)
        self.total = 0

    def add(self, seconds: float) -> None:
        # Buckets below MIN_DEADLINE count as MIN_DEADLINE in ``percentile``.
        self.counts[int(seconds) if seconds < MAX_DEADLINE else MAX_DEADLINE] += 1
        self.total += 1

    def percentile(self, percent: float) -> int:
        if not self.total:
            return MIN_DEADLINE
        target = self.total * (100 - percent) / 100
        seen = 0
        for seconds in range(MAX_DEADLINE, -1, -1):
            seen += self.counts[seconds]
            if seen > target:
                return max(seconds, MIN_DEADLINE)
        return MIN_DEADLINE


class Leaser:
    def __init__(self, stream: GrpcStream, flow: FlowControl) -> None:
        self.stream = stream
        self.max_extension = int(flow.max_lease_extension) or MAX_DEADLINE
        self.max_duration = flow.max_lease_duration
        self.stream_ack_deadline = stream_ack_deadline(flow)
        self.exactly_once = False
        self.histogram = Histogram()
        self.task: asyncio.Task[None] | None = None

    def deadline(self) -> int:
        low = EXACTLY_ONCE_MIN_DEADLINE if self.exactly_once else MIN_DEADLINE
        p99 = self.histogram.percentile(99)
        return max(min(p99, self.max_extension), min(low, self.max_extension), MIN_DEADLINE)

    async def run(self) -> None:
        """Extend leases every ``tick``; send the pulls' heartbeats on the same timer."""
        from relay.transports.grpc.consumer import HEARTBEAT_INTERVAL

        beat_at = time.monotonic() + HEARTBEAT_INTERVAL
        while True:
            tick = max(1.0, min(5.0, self.stream_ack_deadline / 10))
            await asyncio.sleep(tick)
            try:
                self.extend(tick)
            except Exception:  # pragma: no cover - a bug here must not stop leasing
                logger.exception("lease extension of %s failed", self.stream.path)
            if time.monotonic() >= beat_at:
                beat_at = time.monotonic() + HEARTBEAT_INTERVAL
                for pull in self.stream.pulls:
                    await pull.heartbeat()

    def extend(self, tick: float) -> None:
        now = time.monotonic()
        deadline = self.deadline()
        margin = tick + max(2.0, 0.2 * min(deadline, self.stream_ack_deadline))
        to_extend: list[str] = []
        for pull in self.stream.pulls:
            expired = []
            for message in pull.leased.values():
                if message.expires_at - margin > now:
                    continue
                if message.delivered and now - message.received_at >= self.max_duration:
                    expired.append(message)
                else:
                    message.expires_at = now + deadline
                    to_extend.append(message.ack_id)
            for message in expired:
                logger.warning(
                    "message %s of %s was held more than FLOW_MAX_LEASE_DURATION (%s s); its "
                    "lease is no longer extended and Pub/Sub will deliver it again",
                    message.message_id, self.stream.subscription, self.max_duration,
                )
                pull.release(message)
            if expired:
                pull.pump()
        if to_extend:
            self.stream.extended += len(to_extend)
            if self.exactly_once:
                task = asyncio.get_running_loop().create_task(
                    self._extend_checked(to_extend, deadline)
                )
                self.stream.sender.tasks.add(task)
                task.add_done_callback(self.stream.sender.tasks.discard)
            else:
                self.stream.sender.modack(to_extend, deadline)

    async def _extend_checked(self, ack_ids: list[str], deadline: int) -> None:
        """Exactly-once delivery: a lease the broker refuses to extend is over;
        stop managing it (google's client drops it too)."""
        failed = await self.stream.sender.confirm(ack_ids, deadline)
        if not failed:
            return
        for pull in self.stream.pulls:
            gone = [pull.leased[a] for a in failed if a in pull.leased]
            for message in gone:
                pull.release(message)
            if gone:
                pull.pump()
