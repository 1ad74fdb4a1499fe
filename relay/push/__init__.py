"""Push delivery: Pub/Sub POSTs each message to an endpoint relay serves.

``PushHandler`` runs one request through the same pipeline as pull;
``asgi_app`` and ``wsgi_app`` serve it; ``OidcVerifier`` checks the token
(``Unverified`` turns that off, for local development only);
``from_settings`` builds the handler from the ``PUSH_*`` settings. See docs/push.md.
"""

from relay.push.app import PushHandler, PushResponse
from relay.push.auth import OidcVerifier, PushAuthError, Unverified
from relay.push.configure import from_settings
from relay.push.envelope import BadPush, PushMessage, parse
from relay.push.servers import ASGIPushApp, WSGIPushApp, asgi_app, wsgi_app

__all__ = [
    "ASGIPushApp",
    "BadPush",
    "OidcVerifier",
    "PushAuthError",
    "PushHandler",
    "PushMessage",
    "PushResponse",
    "Unverified",
    "WSGIPushApp",
    "asgi_app",
    "from_settings",
    "parse",
    "wsgi_app",
]
