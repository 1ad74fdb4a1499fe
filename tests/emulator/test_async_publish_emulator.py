"""``apublish`` and the batch forms on Google's Pub/Sub emulator.

Confirmations come back on google-cloud-pubsub's threads and are awaited on the
test's event loop; every message then reaches a Worker with its attributes.
"""

from __future__ import annotations

import asyncio

import pytest
from google.api_core import exceptions as gexc

import relay
from relay import Item

pytestmark = pytest.mark.emulator


def test_apublish_and_apublish_many_reach_a_worker(harness, unique_name, wait_for):
    topic = unique_name("aio")
    got = []

    @relay.sub(topic)
    def handler(data, **attrs):
        got.append((data, attrs.get("kind")))

    harness.worker([handler])

    async def main() -> tuple[str, relay.PublishResults]:
        one = await harness.publisher.apublish(topic, {"n": 0}, kind="single")
        many = await harness.publisher.apublish_many(
            topic, [{"n": 1}, Item({"n": 2}, kind="item")], timeout=10
        )
        return one, many

    one, many = asyncio.run(main())
    assert one and many.ok and all(many.message_ids)
    assert len({one, *many.message_ids}) == 3
    wait_for(lambda: len(got) == 3, what="three deliveries")
    assert sorted(got, key=lambda g: g[0]["n"]) == [
        ({"n": 0}, "single"), ({"n": 1}, None), ({"n": 2}, "item"),
    ]


def test_publish_many_to_a_missing_topic_reports_not_found_per_item(harness, unique_name):
    results = harness.publisher.publish_many(
        unique_name("nowhere"), [1, 2], timeout=10, raise_exception=False
    )
    assert [r.ok for r in results] == [False, False]
    assert all(isinstance(r.error, gexc.NotFound) for r in results)
    assert len(harness.recorder.events("post_publish_failure")) == 2
