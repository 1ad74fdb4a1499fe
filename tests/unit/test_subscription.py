from typing import Any

import pytest

from relay import ConfigurationError, RetryPolicy, Settings, Subscription, sub
from relay.subscription import check_unique


def handler(data: Any, **attrs: Any) -> Any:
    return data


def test_sub_builds_a_subscription_that_is_still_callable() -> None:
    s = sub(topic="orders")(handler)
    assert isinstance(s, Subscription)
    assert s.name == "orders"
    assert s.topic == "orders"
    assert s({"a": 1}, k="v") == {"a": 1}
    assert not s.is_async
    assert s.handler_name.endswith("handler")


def test_positional_topic_and_name_composition() -> None:
    s = sub("orders", prefix="shop", suffix="audit")(handler)
    assert s.name == "shop-orders-audit"


def test_resolve_applies_sub_prefix_and_topic_prefix() -> None:
    settings = Settings.load(environ={}, sub_prefix="svc", topic_prefix="feature-x-")
    plain = sub(topic="orders")(handler).resolve(settings)
    assert plain.name == "svc-feature-x-orders"
    assert plain.full_topic == "feature-x-orders"
    explicit = sub(topic="orders", prefix="mine")(handler).resolve(settings)
    assert explicit.name == "mine-feature-x-orders"
    empty = sub(topic="orders", prefix="")(handler).resolve(settings)
    assert empty.name == "feature-x-orders"


def test_async_handler_detected() -> None:
    async def ah(data: Any, **attrs: Any) -> None:
        return None

    assert sub(topic="orders")(ah).is_async


@pytest.mark.parametrize(
    ("func", "fragment"),
    [
        (lambda: None, "takes no argument for the message data"),
        (lambda data: None, "does not accept **kwargs"),
        (lambda data, extra, **kw: None, "requires extra"),
        (lambda data, *, key, **kw: None, "requires key"),
    ],
)
def test_bad_signatures_fail_at_decoration(func: Any, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        sub(topic="orders")(func)
    assert fragment in str(info.value)
    assert "def " in str(info.value) or "Give them defaults" in str(info.value)


def test_defaults_and_varargs_are_fine() -> None:
    sub(topic="orders")(lambda data, kind=None, **kw: None)
    sub(topic="orders")(lambda *args, **kw: None)


@pytest.mark.parametrize(
    ("lo", "hi"), [(0, 10), (-1, 10), (20, 10), (10, 601), ("1", 10), (True, 10)]
)
def test_retry_policy_validation(lo: Any, hi: Any) -> None:
    with pytest.raises(ConfigurationError, match="RetryPolicy"):
        RetryPolicy(lo, hi)


def test_retry_policy_valid() -> None:
    assert RetryPolicy(0.5, 600).maximum_backoff == 600


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [
        ("ack_deadline", 5, "ack_deadline of"),
        ("ack_deadline", 601, "10 to 600"),
        ("ack_deadline", 30.0, "whole number"),
        ("retry_policy", (1, 2), "must be a relay.RetryPolicy"),
        ("filter_by", "type=x", "filter_by of"),
        ("backend_filter_by", 3, "must be a Pub/Sub filter string"),
        ("suffix", "bad/suffix", "invalid subscription name"),
    ],
)
def test_bad_options(option: str, value: Any, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        sub(topic="orders", **{option: value})(handler)
    assert fragment in str(info.value)


def test_bad_topic_and_misuse() -> None:
    with pytest.raises(ConfigurationError, match="invalid topic name 'ab'"):
        sub(topic="ab")(handler)
    with pytest.raises(ConfigurationError, match="needs a topic"):
        sub()
    with pytest.raises(ConfigurationError, match="must be called with a topic"):
        sub(handler)  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match=r"unknown option.*threads"):
        sub(topic="orders", threads=3)  # type: ignore[call-overload]


def test_filters() -> None:
    s = sub(topic="orders", filter_by=[lambda **a: a.get("type") == "x", lambda **a: "k" in a])(
        handler
    )
    assert s.accepts({"type": "x", "k": "1"})
    assert not s.accepts({"type": "x"})
    single = sub(topic="orders", filter_by=lambda **a: a.get("type") == "y")(handler)
    assert single.accepts({"type": "y"}) and not single.accepts({})


def test_duplicate_names_name_both_handlers() -> None:
    def first(data: Any, **kw: Any) -> None: ...
    def second(data: Any, **kw: Any) -> None: ...

    a = sub(topic="orders")(first)
    b = sub(topic="orders")(second)
    with pytest.raises(ConfigurationError) as info:
        check_unique([a, b])
    assert "first" in str(info.value) and "second" in str(info.value)
    assert "suffix" in str(info.value)
    # the same subscription reached twice is not a duplicate
    assert check_unique([a, a]) == [a]


def test_class_based_subscription_rele_style() -> None:
    seen = []

    class PhotoUploaded(Subscription):
        topic = "photo-uploaded"

        def __init__(self) -> None:
            self._func = self.callback_func
            super().__init__(self._func, self.topic)

        def callback_func(self, data: Any, **kwargs: Any) -> None:
            seen.append(data["id"])

    s = PhotoUploaded()
    assert s.name == "photo-uploaded"
    s({"id": 3})
    assert seen == [3]


def test_with_options_revalidates() -> None:
    s = sub(topic="orders")(handler)
    assert s.with_options(ack_deadline=30).ack_deadline == 30
    with pytest.raises(ConfigurationError):
        s.with_options(ack_deadline=3)
