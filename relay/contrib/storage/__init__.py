"""Cloud Storage notifications as relay subscriptions: ``@bucket_sub``.

::

    from relay.contrib.storage import bucket_sub

    @bucket_sub("my-uploads", events=["OBJECT_FINALIZE"])
    def on_upload(obj, **attrs):
        print(obj["name"], obj["size"], attrs["eventType"], attrs["objectGeneration"])

A bucket subscription is a ``relay.Subscription`` (the worker, middleware, ack
policy, dead letters and discovery treat it like any other) on a topic that the
bucket's notification configuration feeds. Provisioning (``PROVISIONING``
create / verify / off, and ``relay-cli plan``) covers that configuration too.
Managing it needs google-cloud-storage: ``pip install 'relay-pubsub[gcs]'``.

Modules: ``declaration`` (``bucket_sub``, ``BucketSubscription``,
``NotificationSpec``, the checks made at import), ``notifications`` (the
provisioning step), ``client`` (the extra, the endpoint and the client).
See docs/storage-notifications.md.
"""

from relay.contrib.storage.declaration import (
    EVENT_TYPES,
    JSON_API_V1,
    MARK_HANDLER,
    MARK_SUBSCRIPTION,
    BucketSubscription,
    NotificationFilter,
    NotificationSpec,
    bucket_sub,
    default_topic,
)

__all__ = [
    "EVENT_TYPES",
    "JSON_API_V1",
    "MARK_HANDLER",
    "MARK_SUBSCRIPTION",
    "BucketSubscription",
    "NotificationFilter",
    "NotificationSpec",
    "bucket_sub",
    "default_topic",
]
