"""The Google Cloud Pub/Sub transport: the only package in relay that imports Google.

``PubSubTransport(settings)`` builds its two clients on first use:

* With ``PUBSUB_EMULATOR_HOST`` set, no credentials are loaded or passed at all
  (passing credentials there is what Relé's issue #339 was about): relay opens
  the insecure channels to the emulator itself, with the options google gives
  its channels to Pub/Sub (no message size limit), where google's own emulator
  channel would refuse anything over 4 MiB.
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
(every 10 ms); ``Stream.close()`` half-closes the streaming pull, waits for the
server to end it, then shuts google's side down, and google's shutdown drains
that queue before it resolves the stream, so acks issued before ``close()`` are
sent. Nacks issued after ``cancel()`` are held until the server has ended the
streaming pull (else Pub/Sub would hand the messages straight back to it). An
ack issued after ``close()`` is dropped (the message's lease lapses and Pub/Sub
redelivers it).

Each stream runs on a subscriber client of its own over the shared gRPC
channel (``calls``): that is how relay knows which stream a streaming-pull
call, and its error, belongs to. A stream whose calls keep ending with an
error google's client retries by itself reports it in ``Stream.failure()``.

Publishing: every publish is retried on transient errors for at most
``PUBLISHER_RETRY_TIMEOUT`` seconds in total, ordered or not, then its future
fails with the error (``google.api_core.exceptions.RetryError``, whose
``cause`` is the last underlying error).

Modules: ``transport`` (clients, publishing, consuming), ``stream`` (the
streaming pull and the messages it delivers), ``calls`` (each gRPC call of a
streaming pull), ``admin`` (provisioning calls).
"""

from relay.transports.pubsub.transport import PubSubTransport

__all__ = ["PubSubTransport"]
