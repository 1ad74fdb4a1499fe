"""The Celery bridge: route Pub/Sub events to Celery tasks by a routing-key attribute.

Install with ``pip install 'relay-pubsub[celery]'``. See docs/celery.md::

    # subs.py
    from relay.contrib.celery import CeleryBridge

    bridge = CeleryBridge.from_dict({
        "PUBSUB_EXCHANGE": "events",
        "PUBSUB_QUEUE_NAME": "reports-events",
        "PUBSUB_GET_CELERY_APP": get_celery_app,
        "PUBSUB_TASK_MAPPING": [
            {
                "routing_key": "app1.matches.published",
                "task": "query.tasks.execute_script",
                "should_schedule": lambda routing_key, body: True,
                "get_args": lambda routing_key, body: ([body["id"]], {}),
            },
        ],
    })
    subscription = bridge.subscription         # relay-cli run consumes it

    # anywhere
    bridge.publish_event("app1.matches.published", {"id": 7})
"""

from __future__ import annotations

try:
    import celery  # noqa: F401  (the top-level Celery package, not this one)
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "relay.contrib.celery needs Celery, which is not installed: "
        "pip install 'relay-pubsub[celery]'"
    ) from exc

from relay.contrib.celery.bridge import (
    BridgeSubscription,
    CeleryBridge,
    RouteError,
    SendError,
    Subscriber,
)
from relay.contrib.celery.config import KEYS, ROUTING_KEY_ATTRIBUTE, BridgeConfig, Route

__all__ = [
    "KEYS",
    "ROUTING_KEY_ATTRIBUTE",
    "BridgeConfig",
    "BridgeSubscription",
    "CeleryBridge",
    "Route",
    "RouteError",
    "SendError",
    "Subscriber",
]
