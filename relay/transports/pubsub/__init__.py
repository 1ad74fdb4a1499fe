"""The Google Cloud Pub/Sub transport: the only package in relay that imports Google.

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

Modules: ``transport`` (clients, publishing, consuming), ``stream`` (the
streaming pull and the messages it delivers), ``admin`` (provisioning calls).
"""

from relay.transports.pubsub.transport import PubSubTransport

__all__ = ["PubSubTransport"]
