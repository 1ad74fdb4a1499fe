"""Settings for the tasks example, shared by the worker and the client.

    relay-cli run --settings settings --emulator     # the worker
    python client.py                                  # the client (same directory)
"""

RELAY = {
    # Any project id works on the emulator; on Google Cloud use your own.
    "GC_PROJECT_ID": "relay-tasks",
    # Subscription names become tasks-example-subs.render_report.
    "SUB_PREFIX": "tasks-example",
    # Outcomes travel back over Pub/Sub: the worker publishes each one to
    # relay-results, the client reads its own on a reply subscription relay
    # creates on first use (and deletes when the client exits).
    "RESULTS": "pubsub",
    # Pub/Sub's redelivery backoff after a failure: short, for a demo.
    "DEFAULT_RETRY_POLICY": "1,10",
}
