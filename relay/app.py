"""The configured app: settings, the middleware chain and the transport, together.

One ``App`` owns one chain and one transport, shared by its publisher and its
workers. The process-wide app is explicit, replaceable and resettable:
``configure()`` builds it from settings, ``get_app()`` returns it (building it
from ``RELAY_SETTINGS`` / ``RELAY_*`` environment variables on first use), and
``set_app()``/``reset()`` swap or drop it (``relay.testing`` uses them).
"""

from __future__ import annotations

import atexit
import functools
import inspect
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from relay.errors import ConfigurationError
from relay.middleware import MiddlewareChain
from relay.publisher import Publisher
from relay.setting_values import import_string
from relay.settings import Settings
from relay.transports.base import Transport

P = ParamSpec("P")
R = TypeVar("R")

if TYPE_CHECKING:
    from relay.subscription import Subscription
    from relay.worker import Worker


def build_transport(settings: Settings) -> Transport:
    """The transport named by the ``TRANSPORT`` setting."""
    name = settings.transport
    if name == "pubsub":
        from relay.transports.pubsub import PubSubTransport

        return PubSubTransport(settings)
    if name == "grpc":
        from relay.transports.grpc import GrpcTransport

        return GrpcTransport(settings)
    if name == "memory":
        from relay.transports.memory import MemoryTransport

        return MemoryTransport()
    cls = import_string(name, "TRANSPORT")
    transport = cls(settings)
    if not isinstance(transport, Transport):
        raise ConfigurationError(
            f"TRANSPORT: {name!r} built {transport!r}, which is not a relay Transport"
        )
    return transport


class App:
    """Settings plus the chain and transport built from them (lazily)."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        transport: Transport | None = None,
        middleware: MiddlewareChain | None = None,
    ) -> None:
        self.settings = settings or Settings.load()
        self.middleware = (
            middleware if middleware is not None else MiddlewareChain.from_settings(self.settings)
        )
        self._transport = transport
        self._publisher: Publisher | None = None
        self._lock = threading.Lock()

    @property
    def transport(self) -> Transport:
        with self._lock:
            if self._transport is None:
                self._transport = build_transport(self.settings)
            return self._transport

    @property
    def publisher(self) -> Publisher:
        if self._publisher is None:
            transport = self.transport
            with self._lock:
                if self._publisher is None:
                    self._publisher = Publisher(
                        transport, settings=self.settings, middleware=self.middleware
                    )
        return self._publisher

    @publisher.setter
    def publisher(self, publisher: Publisher | None) -> None:
        self._publisher = publisher

    def worker(self, subscriptions: Iterable[Subscription], **kwargs: Any) -> Worker:
        """A Worker on this app's settings and middleware, with its own transport.

        A worker gets a fresh transport (unless one is passed) because stopping
        it closes its transport, which must not take the publisher down too.
        """
        from relay.worker import Worker

        return Worker(subscriptions, settings=self.settings, middleware=self.middleware, **kwargs)

    def close(self) -> None:
        from relay.results import close_results

        close_results(self.middleware)  # deletes a reply subscription this process made
        if self._transport is not None:
            self._transport.close()


_app: App | None = None
_app_lock = threading.Lock()
logger = logging.getLogger("relay.app")


@atexit.register
def _close_at_exit() -> None:
    """Flush the process-wide publisher when the interpreter exits.

    Non-blocking publishes are batched in the background; without this, a
    script that publishes and exits could lose its last messages.
    """
    app = _app
    if app is not None:
        try:
            app.close()
        except Exception:
            logger.exception("closing relay's process-wide app at exit failed")


def configure(
    settings: Settings | Mapping[str, Any] | None = None, **overrides: Any
) -> App:
    """Build the process-wide app from settings (a ``Settings``, a dict, or keywords)."""
    if isinstance(settings, Settings):
        built = settings.replace(**overrides) if overrides else settings
    else:
        built = Settings.load(settings, **overrides)
    app = App(built)
    previous = set_app(app)
    if previous is not None:
        previous.close()
    return app


def get_app() -> App:
    """The process-wide app, built from ``RELAY_SETTINGS``/``RELAY_*`` on first use."""
    global _app
    if _app is None:
        with _app_lock:
            if _app is None:
                module = os.environ.get("RELAY_SETTINGS")
                settings = Settings.from_module(module) if module else Settings.load()
                _app = App(settings)
    return _app


def set_app(app: App | None) -> App | None:
    """Install ``app`` as the process-wide app; return the previous one."""
    global _app
    with _app_lock:
        previous, _app = _app, app
    return previous


def reset() -> None:
    """Close and forget the process-wide app (and so its publisher)."""
    previous = set_app(None)
    if previous is not None:
        previous.close()


def get_publisher() -> Publisher:
    return get_app().publisher


def set_publisher(publisher: Publisher | None) -> None:
    """Replace the process-wide publisher (``None``: rebuild from settings)."""
    get_app().publisher = publisher


def _process_wide(method: Callable[Concatenate[Publisher, P], R]) -> Callable[P, R]:
    """``method`` called on the process-wide publisher, with ``method``'s own
    signature (for type checkers and ``help()``): one declaration, in Publisher."""

    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        return method(get_publisher(), *args, **kwargs)

    if inspect.iscoroutinefunction(method):

        async def acall(*args: P.args, **kwargs: P.kwargs) -> Any:
            return await method(get_publisher(), *args, **kwargs)

        call = acall  # type: ignore[assignment]
    functools.update_wrapper(call, method)
    signature = inspect.signature(method)
    call.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=list(signature.parameters.values())[1:]
    )
    del call.__wrapped__  # type: ignore[attr-defined]
    call.__qualname__ = call.__name__
    call.__module__ = "relay"
    call.__doc__ = f"``relay.get_publisher().{method.__name__}(...)``.\n\n{method.__doc__}"
    return call


publish = _process_wide(Publisher.publish)
apublish = _process_wide(Publisher.apublish)
publish_many = _process_wide(Publisher.publish_many)
apublish_many = _process_wide(Publisher.apublish_many)
