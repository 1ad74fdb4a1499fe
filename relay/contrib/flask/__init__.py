"""relay for Flask: the ``Relay`` extension.

::

    from relay.contrib.flask import Relay

    relay_ext = Relay(app)                    # or Relay() and relay_ext.init_app(app)

    @relay_ext.task
    def send_welcome(user_id: int) -> None: ...

    send_welcome.delay(42)                    # in a view
    relay_ext.mount_push(app)                 # serve Pub/Sub push at /_relay/push

``init_app`` reads relay's settings from ``app.config["RELAY"]`` and
flask-gcp-pubsub's ``PUBSUB_*`` keys (``Relay(...)`` keywords win), makes them
relay's process-wide app, puts ``AppContextMiddleware`` first in the chain (a
Flask app context per message) and adds the ``flask relay`` commands. Needs
Flask: ``pip install 'relay-pubsub[flask]'``. ``import relay`` never imports
this package. See docs/flask.md.
"""

try:
    import flask  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        f"relay.contrib.flask needs Flask, which cannot be imported ({exc}); install relay "
        "with the flask extra: pip install 'relay-pubsub[flask]'"
    ) from exc

from relay.contrib.flask.extension import EXTENSION, Relay, RelayState
from relay.contrib.flask.middleware import AppContextMiddleware

__all__ = ["EXTENSION", "AppContextMiddleware", "Relay", "RelayState"]
