"""Settings for the reliability example: dead letters for every subscription and
in-process retries for transient errors.

    relay-cli run --settings settings --emulator     # from this directory
"""

from relay import RetryPolicy
from relay.contrib.retry import RetryMiddleware

RELAY = {
    "SUB_PREFIX": "reliability",
    # Every subscription gets its own dead-letter topic, e.g. "payments-dead-letter",
    # and relay creates a subscription of the same name there, so dead letters are kept.
    "DEAD_LETTER_TOPIC": "{topic}-dead-letter",
    "MAX_DELIVERY_ATTEMPTS": 5,
    # Pub/Sub's redelivery backoff after a nack: short, for a demo.
    "DEFAULT_RETRY_POLICY": RetryPolicy(1, 10),
    "MIDDLEWARE": [
        "relay.contrib.logging_middleware.LoggingMiddleware",
        # A timeout is worth two quick retries in place before the message is nacked.
        RetryMiddleware(max_retries=2, min_backoff=0.05, max_backoff=0.2,
                        retry_on=(TimeoutError,)),
    ],
}
