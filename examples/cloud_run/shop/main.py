"""The Cloud Run service: relay's push endpoint, an ASGI app.

    uvicorn shop.main:app --host 0.0.0.0 --port $PORT

Every POST is one message from Pub/Sub: its token is checked against
``RELAY_PUSH_AUDIENCE`` and ``RELAY_PUSH_SERVICE_ACCOUNT``, then it runs through
the same pipeline as a pulled one (middleware, filters, handler, dead letters),
and the status code is the ack.
"""

from __future__ import annotations

import logging

from relay.push import asgi_app, from_settings
from shop.subs import store_order

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

app = asgi_app(from_settings(subscriptions=[store_order]))
