"""relay's in-memory Pub/Sub server: no Java, faithful where Google's emulator is not.

    from relay.server import PubSubServer
    with PubSubServer() as server:          # a free loopback port
        os.environ["PUBSUB_EMULATOR_HOST"] = server.address

or ``python -m relay.server [--host 127.0.0.1] [--port N]``.
"""

from relay.server.server import PubSubServer, ServerError

__all__ = ["PubSubServer", "ServerError"]
