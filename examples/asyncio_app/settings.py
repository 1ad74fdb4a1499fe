"""relay settings for the asyncio example (``relay-cli run --settings ...``)."""

GC_PROJECT_ID = "relay-asyncio-example"
