"""relay's own Pub/Sub transport on the generated gRPC layer (``TRANSPORT="grpc"``).

It speaks Pub/Sub's gRPC API with the protobuf classes google-cloud-pubsub
ships (``google.pubsub_v1``) over one ``grpc.aio`` channel, without google's
streaming-pull manager or batching publisher, and does their work with fewer
threads and less CPU per message (docs/transport.md):

* one event-loop thread per process runs every streaming pull, lease
  extension, ack flush and publish batch of every transport, whatever the
  number of subscriptions (``STREAMS_PER_SUBSCRIPTION`` pulls each);
* ``ack()``/``nack()`` append to a lock-guarded list the loop flushes every
  5 ms as unary Acknowledge/ModifyAckDeadline calls (``settle``);
* ``publish()`` appends to a per-topic batch the loop sends (``publisher``).

With ``PUBSUB_EMULATOR_HOST`` set the channel is insecure and carries no
credentials; otherwise it is TLS with google-auth credentials loaded as
``PubSubTransport`` loads them. Admin calls (provisioning) use google's
generated gapic clients on a separate synchronous channel, through
``PubSubAdmin``: they are not a hot path.

Modules: ``transport`` (the ``Transport``), ``channel`` (loop thread, channel,
error classes), ``stream`` and ``consumer`` (streaming pulls, flow control,
ordering), ``lease`` (lease extension), ``health`` (failure reporting),
``settle`` (acks and nacks),
``publisher`` (batching, retries, ordering keys).
"""

from relay.transports.grpc.transport import GrpcTransport

__all__ = ["GrpcTransport"]
