"""Conformance: the same Pub/Sub scenarios against relay's server AND Google's emulator.

relay ships its own in-memory Pub/Sub server (``relay/server/``). So that a
server we wrote is never the only judge of a client we wrote, every scenario
here runs through the UNMODIFIED google-cloud-pubsub client (PublisherClient,
SubscriberClient, streaming pull via ``subscribe()``, synchronous ``pull``)
against both servers, and asserts what the real Pub/Sub service does, as its
documentation states it (each module names its source).

Run::

    uv run --frozen pytest -q tests/conformance -p no:cacheprovider
    uv run --frozen pytest -q tests/conformance -k relay     # one server only

``conformance_server`` (``conftest.py``) starts each server once per session:
relay's as ``python -m relay.server --port N`` (ready at its "relay Pub/Sub
server listening on HOST:PORT" line; SIGTERM must end it with exit 0),
Google's through ``relay.emulator.Emulator(kind="google")`` (Java). A server
that cannot start fails the tests with the reason; nothing is skipped. Every
test uses project ``conformance`` and its own topics and subscriptions.

The suite takes about 26 s on relay's server and 30 s on Google's emulator on
a 2-core machine; one scenario waits out a 10 s ack deadline.

Scenarios, one module each:

* ``test_basics``: publish + pull + ack; 50 messages by streaming pull, each
  received once when acked; a nack redelivers at once; attributes (unicode,
  empty values), empty data and ordering_key round-trip.
* ``test_deadlines``: ModifyAckDeadline shortens and extends a lease; on
  streaming pull a message whose lease google's client stops extending comes
  back after the subscription's 10 s ack deadline, not before (the one slow
  test, ~10 s).
* ``test_ordering``: one key arrives in publish order; a nack brings that
  message and every later one with the key again, in order; another key is
  untouched.
* ``test_failures``: dead letters after ``max_delivery_attempts=5``
  (``delivery_attempt`` 1..5, the attributes the service adds); the retry
  policy's minimum backoff applies from the first redelivery;
  ``delivery_attempt`` is 0 without a dead-letter policy, a retry policy or not.
* ``test_filters``: only matching messages are delivered (``=``, ``!=``,
  ``:``, ``hasPrefix``, ``AND``, ``OR``, ``NOT``, parentheses); a filter that
  does not parse is INVALID_ARGUMENT at create.
* ``test_exactly_once``: ``ack_with_response`` succeeds; an ack id superseded
  by a redelivery fails with ``AcknowledgeError`` ``INVALID_ACK_ID``.
* ``test_names_and_limits``: bad names INVALID_ARGUMENT, missing topic
  NOT_FOUND on publish, ALREADY_EXISTS, at most 100 attributes, ordering keys
  of at most 1,024 bytes, at most 1,000 messages per Publish request,
  ModifyAckDeadline 0 to 600 s.
* ``test_iam``: GetIamPolicy on a new topic and subscription (no bindings),
  TestIamPermissions.
* ``test_killed_subscriber``: after a subscriber process is SIGKILLed,
  messages published afterwards reach a live subscriber promptly.
* ``test_push``: a push subscription POSTs the wrapped JSON body to an
  endpoint on 127.0.0.1; a 500 brings the message again, a 204 acks it; Pull
  on a push subscription is FAILED_PRECONDITION; the body carries the
  message's ordering key.

Known differences: ``helpers.KNOWN_DIFFERENCES`` is the table (server,
scenario, description) that ``docs/`` lists. A scenario where a server is
known to differ does not skip: its ``known_difference(...)`` branch asserts the
known wrong behaviour, so the suite fails when Google fixes it or when relay's
server regresses into it. Every row is Google's emulator (0.8.20); a
difference of relay's server is a bug, never a row.
``python -m tests.conformance.helpers`` prints the table as Markdown;
``test_known_differences`` checks that each row is marked by a scenario and
that ``docs/emulator.md`` shows exactly that table.
"""
