"""``UnrecoverableError``'s old home, kept so existing imports work.

relay's pipeline now handles ``relay.errors.UnrecoverableError`` itself: a
handler that raises it fails that message, which goes to the dead-letter topic
if the subscription has one and is acked otherwise (see ``relay.processing``).
``UnrecoverableMiddleware`` is no longer needed; it stays as a no-op so
settings that list it keep loading.
"""

from __future__ import annotations

from relay.errors import UnrecoverableError
from relay.middleware import BaseMiddleware

__all__ = ["UnrecoverableError", "UnrecoverableMiddleware"]


class UnrecoverableMiddleware(BaseMiddleware):
    """A no-op: ``UnrecoverableError`` is handled by relay itself now."""
