"""``BaseMiddleware`` and the chain that runs it.

Order is an onion: ``pre_*`` hooks run in the configured order, ``post_*`` hooks
in reverse. A hook that raises is logged with the middleware's name and
contained: it never kills the worker, never stops the other hooks and never
changes the message's outcome. The one deliberate way to change what happens
to a message is to set ``outcome.action`` in a post-process hook.

Building a chain checks every middleware's overridden hooks against the
signatures below (``check_hooks``): a hook written for Relé (``start_time``,
``topic``, no arguments) is a ``ConfigurationError`` naming the class, the hook,
Relé's form and relay's, instead of a hook that silently gets the wrong objects.

Middleware instances are shared by every thread and every message: keep
per-message values in ``message.state``, never on ``self``.
"""

from __future__ import annotations

import inspect
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


#: What relay passes each hook, after ``self``: checked against every overridden hook.
HOOK_PARAMETERS: dict[str, tuple[str, ...]] = {
    "setup": ("settings",),
    "pre_publish": ("message",),
    "post_publish_success": ("message", "elapsed"),
    "post_publish_failure": ("message", "exception", "elapsed"),
    "pre_process_message": ("subscription", "message"),
    "post_process_message_success": ("subscription", "message", "outcome"),
    "post_process_message_failure": ("subscription", "message", "outcome"),
    "post_process_message": ("subscription", "message", "outcome"),
    "post_ack_failure": ("subscription", "message", "error"),
    "pre_worker_start": ("worker",),
    "post_worker_start": ("worker",),
    "pre_worker_stop": ("worker",),
    "post_worker_stop": ("worker",),
}


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _looks_like_rele(hook: str, params: list[str], rele: tuple[str, ...]) -> bool:
    """Parameters named as Relé names them, where relay passes something else."""
    ours = HOOK_PARAMETERS[hook]
    for i, name in enumerate(params[: len(ours)]):
        if name in rele and name not in ours:
            return True  # start_time, topic, subscriptions, ...
        if name in rele and name in ours and rele.index(name) == i != ours.index(name):
            return True  # post_publish_failure's message, in Relé's place
    return False


def check_hooks(cls: type) -> list[str]:
    """Every hook ``cls`` overrides that relay cannot call as it means, one message
    each: a hook that cannot take relay's arguments, one whose parameters are
    Relé's (``start_time``, ``topic``...), and Relé hooks relay never calls."""
    from relay.migration import RELE_HOOKS, RELE_ONLY_HOOKS, rele_hook_form

    problems = []
    for hook, ours in HOOK_PARAMETERS.items():
        fn = getattr(cls, hook, None)
        if fn is None or fn is getattr(BaseMiddleware, hook):
            continue
        relay_form = f"{hook}({', '.join(('self', *ours))})"
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):
            continue  # a builtin or C callable: nothing to check
        params = [
            p.name for p in signature.parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ][1:]  # without self
        try:
            signature.bind(None, *([None] * len(ours)))
            fits = True
        except TypeError:
            fits = False
        rele = RELE_HOOKS.get(hook)
        looks_rele = rele is not None and (
            (not fits and len(params) == len(rele[0]))
            or (fits and _looks_like_rele(hook, params, rele[0]))
        )
        if fits and not looks_rele:
            continue
        has = f"{_name(cls)}.{hook}({', '.join(('self', *params))})"
        if looks_rele and rele is not None:
            problems.append(
                f"MIDDLEWARE: {has} looks like Relé's {rele_hook_form(hook)}; relay calls "
                f"{rele[1]} (docs/middleware.md, \"Coming from Relé\")"
            )
        else:
            problems.append(
                f"MIDDLEWARE: {has} cannot take relay's arguments; relay calls {relay_form}"
            )
    for hook, replacement in RELE_ONLY_HOOKS.items():
        if getattr(cls, hook, None) is not None:
            problems.append(
                f"MIDDLEWARE: {_name(cls)}.{hook} is a Relé hook relay never calls; use "
                f"{replacement}"
            )
    return problems


def resolve(item: Any) -> Any:
    """A ``MIDDLEWARE`` entry as the class or instance it names, checked (importable,
    a ``BaseMiddleware``, hooks relay can call) but not built; a Relé path or class
    is a ``ConfigurationError`` naming relay's replacement."""
    obj, cls = _lookup(item)
    problems = check_hooks(cls)
    if problems:
        raise ConfigurationError("; ".join(problems))
    return obj


def _lookup(item: Any) -> tuple[Any, type]:
    """The class or instance a ``MIDDLEWARE`` entry names, and its class; hooks unchecked."""
    from relay.migration import rele_middleware

    obj = item
    if isinstance(item, str):
        from relay.setting_values import import_string

        replacement = rele_middleware(item)
        if replacement is not None:
            raise ConfigurationError(
                f"MIDDLEWARE: {item!r} is Relé's; relay's replacement is {replacement}"
            )
        obj = import_string(item, "MIDDLEWARE")
    if isinstance(obj, type) and issubclass(obj, BaseMiddleware):
        cls: type = obj
    elif isinstance(obj, BaseMiddleware):
        cls = type(obj)
    else:
        what = obj if isinstance(obj, type) else type(obj)
        hint = ""
        if any(base.__module__.split(".")[0] == "rele" for base in what.__mro__):
            hint = "; it is a Relé middleware: subclass relay.BaseMiddleware, and update its hooks"
        if isinstance(obj, type):
            raise ConfigurationError(
                f"MIDDLEWARE: {_name(obj)} is not a relay.BaseMiddleware subclass{hint}"
            )
        raise ConfigurationError(
            f"MIDDLEWARE: {item!r} is not a BaseMiddleware class, instance or dotted path{hint}"
        )
    return obj, cls


def check_middleware(items: Iterable[Any]) -> list[str]:
    """Every problem with the ``MIDDLEWARE`` entries, one message each (none: all good).

    Nothing is built or set up. ``relay-cli run`` (through
    ``MiddlewareChain.from_settings``), ``subs`` and ``check`` all validate
    ``MIDDLEWARE`` with this.
    """
    problems = []
    for item in items:
        try:
            _, cls = _lookup(item)
        except ConfigurationError as exc:
            problems.append(str(exc))
        else:
            problems.extend(check_hooks(cls))
    return problems


def validate_middleware(items: Iterable[Any]) -> None:
    """``check_middleware``, raising one ``ConfigurationError`` naming every problem."""
    problems = check_middleware(items)
    if problems:
        raise ConfigurationError("; ".join(problems))


def _instantiate(item: Any, settings: Settings) -> BaseMiddleware:
    obj = resolve(item)
    if isinstance(obj, type):
        try:
            obj = obj()
        except TypeError as exc:
            raise ConfigurationError(
                f"MIDDLEWARE: cannot build {obj.__qualname__}() without arguments ({exc}); "
                "put a configured instance in the MIDDLEWARE list instead"
            ) from exc
    assert isinstance(obj, BaseMiddleware)
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
        classes = dict.fromkeys(type(m) for m in self.middleware)
        problems = [problem for cls in classes for problem in check_hooks(cls)]
        if problems:
            raise ConfigurationError("; ".join(problems))
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
        validate_middleware(settings.middleware)  # every bad entry at once, before any setup()
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
