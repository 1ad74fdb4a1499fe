"""Subscriptions: ``@sub``, the class-based ``Subscription``, ``RetryPolicy`` and
``DeadLetterPolicy``.

A subscription binds a handler ``fn(data, **attributes)`` to a topic. Its name
on Pub/Sub is ``prefix-topic-suffix`` (empty parts left out), where ``topic``
carries the ``TOPIC_PREFIX`` setting and ``prefix`` defaults to ``SUB_PREFIX``.
Everything is checked when the decorator runs, so a mistake fails at import.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, overload

from relay.errors import ConfigurationError
from relay.filters import Filter, run_filters
from relay.filters import check_filter as check_filter  # setting_values imports it from here
from relay.filters import describe as _describe
from relay.limits import validate_name
from relay.policies import MIN_DELIVERY_ATTEMPTS, DeadLetterPolicy, RetryPolicy
from relay.push_config import check_push

if TYPE_CHECKING:
    from relay.settings import Settings

Handler = Callable[..., Any]
F = TypeVar("F", bound=Handler)


#: A handler parameter of this name receives the message's delivery attempt.
ATTEMPT_PARAM = "delivery_attempt"

#: The declaration options ``@sub`` takes besides the topic; ``@task`` takes them too.
SUB_OPTIONS = (
    "prefix", "suffix", "filter_by", "backend_filter_by", "retry_policy", "ack_deadline",
    "dead_letter_topic", "max_delivery_attempts", "enable_message_ordering",
    "enable_exactly_once_delivery", "push_endpoint", "push_service_account", "push_audience",
)


def _check_handler(func: Any) -> tuple[bool, str | None, bool]:
    """Validate ``fn(data, **attributes)``.

    Returns whether it is ``async def``, the name of the data parameter if an
    attribute of that name would collide with it (None when it is
    positional-only), and whether it declares a ``delivery_attempt`` parameter.
    """
    if not callable(func):
        raise ConfigurationError(f"@sub needs a function, got {func!r}")
    target = func.__call__ if not inspect.isroutine(func) and not inspect.isclass(func) else func
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):  # builtins without signatures: trust them
        return False, None, False
    params = list(sig.parameters.values())
    name = _describe(func)
    positional = [
        p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    has_varargs = any(p.kind is p.VAR_POSITIONAL for p in params)
    if not positional and not has_varargs:
        raise ConfigurationError(
            f"handler {name}{sig} takes no argument for the message data; "
            f"declare it as def {getattr(func, '__name__', 'handler')}(data, **attrs)"
        )
    required_extra = [
        p.name
        for p in positional[1:]
        if p.default is p.empty and p.name != ATTEMPT_PARAM
    ] + [
        p.name
        for p in params
        if p.kind is p.KEYWORD_ONLY and p.default is p.empty and p.name != ATTEMPT_PARAM
    ]
    if required_extra:
        raise ConfigurationError(
            f"handler {name}{sig} requires {', '.join(required_extra)}, which relay cannot "
            "supply: a handler is called as fn(data, **attributes). Give them defaults or "
            "read them from **attrs"
        )
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        raise ConfigurationError(
            f"handler {name}{sig} does not accept **kwargs: every message attribute is passed "
            f"as a keyword argument, so declare it as def "
            f"{getattr(func, '__name__', 'handler')}(data, **attrs)"
        )
    is_async = asyncio.iscoroutinefunction(func) or asyncio.iscoroutinefunction(target)
    first = positional[0] if positional else None
    data_param = first.name if first and first.kind is first.POSITIONAL_OR_KEYWORD else None
    wants_attempt = any(
        p.name == ATTEMPT_PARAM and p is not first
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        for p in params
    )
    return is_async, data_param, wants_attempt


def _as_filters(filter_by: Filter | Sequence[Filter] | None, owner: str) -> tuple[Filter, ...]:
    if filter_by is None:
        return ()
    filters: Iterable[Any] = filter_by if isinstance(filter_by, (list, tuple)) else (filter_by,)
    out = tuple(filters)
    for f in out:
        if not callable(f):
            raise ConfigurationError(
                f"filter_by of {owner} must be a callable or a list of callables taking "
                f"**attributes and returning bool; got {f!r}"
            )
        check_filter(f, f"filter_by of {owner}")
    return out


class Subscription:
    """A handler bound to a topic. Use ``@sub`` or subclass it (Relé's form).

    Instances are immutable once built; ``resolve(settings)`` returns a copy with
    the settings' prefixes applied, which is what the Worker runs.
    """

    def __init__(
        self,
        func: Handler,
        topic: str,
        prefix: str | None = None,
        suffix: str | None = None,
        filter_by: Filter | Sequence[Filter] | None = None,
        backend_filter_by: str | None = None,
        retry_policy: RetryPolicy | None = None,
        ack_deadline: int | None = None,
        dead_letter_topic: str | None = None,
        max_delivery_attempts: int | None = None,
        enable_message_ordering: bool = False,
        enable_exactly_once_delivery: bool = False,
        push_endpoint: str | None = None,
        push_service_account: str | None = None,
        push_audience: str | None = None,
        *,
        topic_prefix: str = "",
    ) -> None:
        self._func = func
        self.is_async, self.data_param, self.wants_attempt = _check_handler(func)
        self.handler_name = _describe(func)
        self.topic = validate_name(topic, "topic")
        self.prefix = prefix
        self.suffix = suffix or ""
        self.topic_prefix = topic_prefix
        self.filters = _as_filters(filter_by, self.handler_name)
        if backend_filter_by is not None and not isinstance(backend_filter_by, str):
            raise ConfigurationError(
                f"backend_filter_by of {self.handler_name} must be a Pub/Sub filter string like "
                f"'attributes.type = \"landscape\"', got {backend_filter_by!r}"
            )
        self.backend_filter_by = backend_filter_by or ""
        if retry_policy is not None and not isinstance(retry_policy, RetryPolicy):
            raise ConfigurationError(
                f"retry_policy of {self.handler_name} must be a relay.RetryPolicy, "
                f"got {retry_policy!r}"
            )
        self.retry_policy = retry_policy
        if ack_deadline is not None and (
            isinstance(ack_deadline, bool)
            or not isinstance(ack_deadline, int)
            or not 10 <= ack_deadline <= 600
        ):
            raise ConfigurationError(
                f"ack_deadline of {self.handler_name} is {ack_deadline!r}; Pub/Sub accepts a "
                "whole number of seconds from 10 to 600"
            )
        self.ack_deadline = ack_deadline
        if dead_letter_topic is not None and dead_letter_topic != "":
            validate_name(dead_letter_topic, f"dead_letter_topic of {self.handler_name}")
        if max_delivery_attempts is not None:
            # Checked now, against a placeholder topic, so a bad number fails at import.
            DeadLetterPolicy("placeholder", max_delivery_attempts)
            if dead_letter_topic == "":
                raise ConfigurationError(
                    f"{self.handler_name}: max_delivery_attempts={max_delivery_attempts!r} with "
                    "dead_letter_topic='' (dead-lettering off); drop one of them"
                )
        self.dead_letter_topic = dead_letter_topic
        self.max_delivery_attempts = max_delivery_attempts
        for option, value in (
            ("enable_message_ordering", enable_message_ordering),
            ("enable_exactly_once_delivery", enable_exactly_once_delivery),
        ):
            if not isinstance(value, bool):
                raise ConfigurationError(
                    f"{option} of {self.handler_name} must be True or False, got {value!r}"
                )
        self.enable_message_ordering = enable_message_ordering
        self.enable_exactly_once_delivery = enable_exactly_once_delivery
        #: Push delivery ("" for pull): where Pub/Sub POSTs messages, the service account
        #: its token is for and the token's audience ("" for Pub/Sub's default, the
        #: endpoint URL). See ``relay.push_config``.
        self.push_endpoint, self.push_service_account, self.push_audience = check_push(
            self.handler_name, push_endpoint, push_service_account, push_audience,
            exactly_once=enable_exactly_once_delivery,
        )
        #: The dead-letter policy in force; set by ``resolve(settings)``.
        self.dead_letter: DeadLetterPolicy | None = None
        if dead_letter_topic:
            self.dead_letter = DeadLetterPolicy(
                dead_letter_topic, max_delivery_attempts or MIN_DELIVERY_ATTEMPTS
            )
        self._set_names()

    def _set_names(self) -> None:
        # Computed once: the worker reads them for every message it logs.
        self.full_topic = f"{self.topic_prefix}{self.topic}"
        self.name = "-".join(
            part for part in (self.prefix or "", self.full_topic, self.suffix) if part
        )
        validate_name(self.full_topic, "topic")
        validate_name(self.name, "subscription")

    #: The topic name on Pub/Sub, with ``TOPIC_PREFIX`` applied.
    full_topic: str
    #: The subscription name on Pub/Sub: ``prefix-topic-suffix``.
    name: str

    # --------------------------------------------------------------- naming
    def resolve(self, settings: Settings) -> Subscription:
        """A copy with the settings' ``SUB_PREFIX`` and ``TOPIC_PREFIX`` applied."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        if self.prefix is None:
            clone.prefix = settings.sub_prefix
        clone.topic_prefix = settings.topic_prefix
        clone._set_names()
        clone.dead_letter = clone._dead_letter_policy(settings)
        return clone

    def _dead_letter_policy(self, settings: Settings) -> DeadLetterPolicy | None:
        """``dead_letter_topic`` (or the ``DEAD_LETTER_TOPIC`` template), prefixed."""
        template = self.dead_letter_topic
        if template is None:
            template = settings.dead_letter_topic
        if not template:
            if self.max_delivery_attempts is not None:
                raise ConfigurationError(
                    f"{self.handler_name}: max_delivery_attempts={self.max_delivery_attempts} "
                    "needs a dead-letter topic: pass dead_letter_topic=... or set "
                    "DEAD_LETTER_TOPIC"
                )
            return None
        try:
            name = template.format(topic=self.topic, subscription=self.name)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigurationError(
                f"dead-letter topic {template!r}: bad placeholder ({exc}); only {{topic}} and "
                "{subscription} are known"
            ) from None
        topic = validate_name(f"{self.topic_prefix}{name}", "dead-letter topic")
        if topic == self.full_topic:
            raise ConfigurationError(
                f"{self.handler_name}: the dead-letter topic {topic!r} is the subscription's own "
                "topic, so dead letters would come straight back; name another topic"
            )
        return DeadLetterPolicy(
            topic,
            self.max_delivery_attempts or settings.max_delivery_attempts,
            settings.dead_letter_keep,
        )

    # --------------------------------------------------------------- running
    def accepts(self, attributes: Mapping[str, str]) -> bool:
        """True if every ``filter_by`` callable returns True; see ``run_filters``."""
        return run_filters(self.filters, attributes)

    def __call__(self, data: Any, **attributes: Any) -> Any:
        """Call the handler directly (handy in tests)."""
        return self._func(data, **attributes)

    def _declared(self) -> dict[str, Any]:
        """The topic and ``SUB_OPTIONS`` as declared: what ``with_options`` starts from."""
        special = {"filter_by": list(self.filters) or None,
                   "backend_filter_by": self.backend_filter_by or None}
        return {"topic": self.topic, **{
            name: special[name] if name in special else getattr(self, name)
            for name in SUB_OPTIONS
        }}

    def with_options(self, **changes: Any) -> Subscription:
        """A copy with some declaration options changed (validated again)."""
        current = {**self._declared(), **changes}
        return Subscription(self._func, topic_prefix=self.topic_prefix, **current)

    def __repr__(self) -> str:
        return f"<Subscription {self.name} topic={self.full_topic} handler={self.handler_name}>"


@overload
def sub(topic: str, /) -> Callable[[F], Subscription]: ...
@overload
def sub(
    topic: str,
    /,
    *,
    prefix: str | None = ...,
    suffix: str | None = ...,
    filter_by: Filter | Sequence[Filter] | None = ...,
    backend_filter_by: str | None = ...,
    retry_policy: RetryPolicy | None = ...,
    ack_deadline: int | None = ...,
    dead_letter_topic: str | None = ...,
    max_delivery_attempts: int | None = ...,
    enable_message_ordering: bool = ...,
    enable_exactly_once_delivery: bool = ...,
    push_endpoint: str | None = ...,
    push_service_account: str | None = ...,
    push_audience: str | None = ...,
) -> Callable[[F], Subscription]: ...
def sub(
    topic: str | None = None,
    /,
    *,
    prefix: str | None = None,
    suffix: str | None = None,
    filter_by: Filter | Sequence[Filter] | None = None,
    backend_filter_by: str | None = None,
    retry_policy: RetryPolicy | None = None,
    ack_deadline: int | None = None,
    dead_letter_topic: str | None = None,
    max_delivery_attempts: int | None = None,
    enable_message_ordering: bool = False,
    enable_exactly_once_delivery: bool = False,
    push_endpoint: str | None = None,
    push_service_account: str | None = None,
    push_audience: str | None = None,
    **kwargs: Any,
) -> Callable[[F], Subscription]:
    """Declare a subscription: ``@sub(topic="orders")`` or ``@sub("orders")``.

    The decorated name becomes a ``Subscription`` (still callable as the
    function). ``filter_by`` is one plain (not async) callable or a list, each
    called with the message attributes as keyword arguments and returning a
    bool; a message any of them rejects is acked without running the handler
    and reported to middleware as skipped. A filter that raises or returns a
    non-bool fails the message (nack, ``FilterError``).
    ``backend_filter_by`` is a Pub/Sub filter expression applied by the server.
    ``dead_letter_topic``/``max_delivery_attempts`` set the dead-letter policy
    (``dead_letter_topic=""`` turns the ``DEAD_LETTER_TOPIC`` default off);
    ``enable_message_ordering`` and ``enable_exactly_once_delivery`` are
    Pub/Sub's subscription options of the same names. ``push_endpoint`` makes
    it a push subscription (an ``https://`` URL; ``http://`` only on a loopback
    host), ``push_service_account`` has Pub/Sub send a token for that account,
    ``push_audience`` sets the token's audience (default: the endpoint URL);
    see docs/push.md.
    """
    if "topic" in kwargs:
        if topic is not None:
            raise ConfigurationError("@sub got the topic twice")
        topic = kwargs.pop("topic")
    if kwargs:
        raise ConfigurationError(
            f"@sub got unknown option(s) {', '.join(sorted(kwargs))}; it takes topic, "
            f"{', '.join(SUB_OPTIONS)}"
        )
    if topic is None:
        raise ConfigurationError("@sub needs a topic: @sub(topic='orders')")
    if callable(topic):
        raise ConfigurationError("@sub must be called with a topic: write @sub(topic='...')")

    def decorator(func: F) -> Subscription:
        return Subscription(
            func,
            topic,
            prefix=prefix,
            suffix=suffix,
            filter_by=filter_by,
            backend_filter_by=backend_filter_by,
            retry_policy=retry_policy,
            ack_deadline=ack_deadline,
            dead_letter_topic=dead_letter_topic,
            max_delivery_attempts=max_delivery_attempts,
            enable_message_ordering=enable_message_ordering,
            enable_exactly_once_delivery=enable_exactly_once_delivery,
            push_endpoint=push_endpoint,
            push_service_account=push_service_account,
            push_audience=push_audience,
        )

    return decorator


def check_unique(subscriptions: Iterable[Subscription]) -> list[Subscription]:
    """Raise if two subscriptions share a name, naming both handlers."""
    seen: dict[str, Subscription] = {}
    out = []
    for s in subscriptions:
        other = seen.get(s.name)
        if other is not None:
            if other is s or other._func is s._func:
                continue
            raise ConfigurationError(
                f"duplicate subscription name {s.name!r}: {other.handler_name} and "
                f"{s.handler_name} both declare it; give one a suffix=... to tell them apart"
            )
        seen[s.name] = s
        out.append(s)
    return out


__all__ = ["DeadLetterPolicy", "RetryPolicy", "Subscription", "check_unique", "sub"]
