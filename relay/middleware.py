"""``BaseMiddleware`` and the chain that runs it.

Order is an onion: ``pre_*`` hooks run in the configured order, ``post_*`` hooks
in reverse. A hook that raises is logged with the middleware's name and
contained: it never kills the worker, never stops the other hooks and never
changes the message's outcome. The one deliberate way to change what happens
to a message is to set ``outcome.action`` in a post-process hook.

Middleware instances are shared by every thread and every message: keep
per-message values in ``message.state``, never on ``self``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from relay.errors import ConfigurationError

if TYPE_CHECKING:
    from relay.errors import AckError
    from relay.message import Message, Outcome, OutgoingMessage
    from relay.settings import Settings
    from relay.subscription import Subscription
    from relay.worker import Worker

logger = logging.getLogger("relay.middleware")


class BaseMiddleware:
    """Subclass and override the hooks you need; every hook is a no-op here."""

    def setup(self, settings: Settings, **kwargs: Any) -> None:
        """Called once when the chain is built. May raise to reject the settings."""

    # publishing -------------------------------------------------------------
    def pre_publish(self, message: OutgoingMessage) -> None:
        """Before a message is sent. ``message.attributes`` may still be changed."""

    def post_publish_success(self, message: OutgoingMessage, elapsed: float) -> None:
        """After Pub/Sub confirmed the message; ``message.message_id`` is set.

        Fires for blocking and non-blocking publishes alike (from the publish
        future's callback thread for the latter).
        """

    def post_publish_failure(
        self, message: OutgoingMessage, exception: BaseException, elapsed: float
    ) -> None:
        """After a publish failed, whatever the error (timeout, refused, unreachable)."""

    # processing -------------------------------------------------------------
    def pre_process_message(self, subscription: Subscription, message: Message) -> None:
        """When a message arrives, before it is decoded, filtered or handled."""

    def post_process_message_success(
        self, subscription: Subscription, message: Message, outcome: Outcome
    ) -> None:
        """After the handler returned; ``outcome.result`` is its return value."""

    def post_process_message_failure(
        self, subscription: Subscription, message: Message, outcome: Outcome
    ) -> None:
        """After the payload failed to decode or the handler raised (``outcome.exception``)."""

    def post_process_message(
        self, subscription: Subscription, message: Message, outcome: Outcome
    ) -> None:
        """After every message, last: success, failure or skipped (``outcome.status``)."""

    def post_ack_failure(
        self, subscription: Subscription, message: Message, error: AckError
    ) -> None:
        """After the message's ack was not applied (exactly-once delivery reports it,
        from the client's callback thread); Pub/Sub will deliver the message again."""

    # worker lifecycle ---------------------------------------------------------
    def pre_worker_start(self, worker: Worker) -> None:
        """When ``start()`` begins: before it provisions (if ``setup()`` has not run yet)
        and before any stream opens."""

    def post_worker_start(self, worker: Worker) -> None:
        """After every stream is open."""

    def pre_worker_stop(self, worker: Worker) -> None:
        """When a stop begins, before streams are cancelled and handlers drained."""

    def post_worker_stop(self, worker: Worker) -> None:
        """After the worker has drained and closed its clients."""


PRE_HOOKS = (
    "pre_publish",
    "pre_process_message",
    "pre_worker_start",
    "pre_worker_stop",
)
POST_HOOKS = (
    "post_publish_success",
    "post_publish_failure",
    "post_process_message_success",
    "post_process_message_failure",
    "post_process_message",
    "post_ack_failure",
    "post_worker_start",
    "post_worker_stop",
)


def _instantiate(item: Any, settings: Settings) -> BaseMiddleware:
    obj = item
    if isinstance(item, str):
        from relay.setting_values import import_string

        obj = import_string(item, "MIDDLEWARE")
    if isinstance(obj, type):
        if not issubclass(obj, BaseMiddleware):
            raise ConfigurationError(
                f"MIDDLEWARE: {obj.__module__}.{obj.__qualname__} is not a "
                "relay.BaseMiddleware subclass"
            )
        try:
            obj = obj()
        except TypeError as exc:
            raise ConfigurationError(
                f"MIDDLEWARE: cannot build {obj.__qualname__}() without arguments ({exc}); "
                "put a configured instance in the MIDDLEWARE list instead"
            ) from exc
    if not isinstance(obj, BaseMiddleware):
        raise ConfigurationError(
            f"MIDDLEWARE: {item!r} is not a BaseMiddleware class, instance or dotted path"
        )
    obj.setup(settings)
    return obj


class MiddlewareChain:
    """Runs hooks over an ordered list of middleware, containing their failures.

    Only overridden hooks are called: the chain precomputes, per hook, the bound
    methods that are not ``BaseMiddleware``'s no-ops, so an unused hook costs
    one empty loop on the per-message path.
    """

    def __init__(self, middleware: Iterable[BaseMiddleware] = ()) -> None:
        self.middleware: tuple[BaseMiddleware, ...] = tuple(middleware)
        self._hooks: dict[str, tuple[Callable[..., None], ...]] = {}
        for hook in PRE_HOOKS + POST_HOOKS:
            base = getattr(BaseMiddleware, hook)
            order = self.middleware if hook in PRE_HOOKS else tuple(reversed(self.middleware))
            self._hooks[hook] = tuple(
                getattr(m, hook) for m in order if getattr(type(m), hook, base) is not base
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> MiddlewareChain:
        """``MIDDLEWARE``, and first (so its post hooks run last) the results
        middleware ``RESULTS`` asks for, unless ``MIDDLEWARE`` lists one."""
        items = [_instantiate(item, settings) for item in settings.middleware]
        if settings.results is not None:
            from relay.results import ResultsMiddleware

            if not any(isinstance(item, ResultsMiddleware) for item in items):
                items.insert(0, _instantiate(ResultsMiddleware(), settings))
        return cls(items)

    def has(self, hook: str) -> bool:
        return bool(self._hooks[hook])

    def run(self, hook: str, *args: Any) -> None:
        """Call ``hook`` on every middleware that implements it; contain failures."""
        for fn in self._hooks[hook]:
            try:
                fn(*args)
            except BaseException as exc:
                # Even SystemExit from a hook on a worker thread must not take the
                # thread (or the event loop) down with the message; on the main
                # thread, Ctrl-C and sys.exit() are the user stopping the process.
                if not isinstance(exc, Exception) and _on_main_thread():
                    raise
                owner = type(getattr(fn, "__self__", fn)).__qualname__
                logger.exception("middleware %s.%s raised; ignored", owner, hook)

    def __iter__(self) -> Any:
        return iter(self.middleware)

    def __len__(self) -> int:
        return len(self.middleware)


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
