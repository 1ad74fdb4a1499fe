"""Settings for the quickstart: ``relay-cli run --settings settings``.

Every key is checked when relay loads it; an unknown key or a bad value stops
the CLI with exit code 2 and a message naming it.
"""

RELAY = {
    # Any project id works on the emulator; on Google Cloud use your own.
    "GC_PROJECT_ID": "relay-quickstart",
    # Subscription names become quickstart-orders, quickstart-orders-stock, ...
    "SUB_PREFIX": "quickstart",
    # Handlers running at once, across all subscriptions.
    "CONCURRENCY": 4,
    # Seconds a stopping worker waits for handlers that are still running.
    "DRAIN_TIMEOUT": 10,
}
