"""Middleware ported from Relé with Relé's hook signatures fail when the chain is
built, naming the class, the hook, Relé's form and relay's (issue #14)."""

from __future__ import annotations

from typing import Any

import pytest

from relay import BaseMiddleware, ConfigurationError, MiddlewareChain, Settings
from relay.middleware import check_hooks, check_middleware, validate_middleware
from relay.testing import memory_app

# Each hook Relé has that relay also has, written as Relé documents it
# (rele.middleware.BaseMiddleware), with what the error must quote.
RELE_STYLE: list[tuple[str, str, str, str]] = [
    (
        "pre_publish",
        "def pre_publish(self, topic, data, attrs): pass",
        "pre_publish(self, topic, data, attrs)",
        "pre_publish(self, message)",
    ),
    (
        "post_publish_success",
        "def post_publish_success(self, topic, data, attrs): pass",
        "post_publish_success(self, topic, data, attrs)",
        "post_publish_success(self, message, elapsed)",
    ),
    (
        "post_publish_failure",
        "def post_publish_failure(self, topic, exception, message): pass",
        "post_publish_failure(self, topic, exception, message)",
        "post_publish_failure(self, message, exception, elapsed)",
    ),
    (
        "post_process_message",
        "def post_process_message(self): pass",
        "post_process_message(self)",
        "post_process_message(self, subscription, message, outcome)",
    ),
    (
        "post_process_message_success",
        "def post_process_message_success(self, subscription, start_time, message): pass",
        "post_process_message_success(self, subscription, start_time, message)",
        "post_process_message_success(self, subscription, message, outcome)",
    ),
    (
        "post_process_message_failure",
        "def post_process_message_failure(self, subscription, exception, start_time, message):"
        " pass",
        "post_process_message_failure(self, subscription, exception, start_time, message)",
        "post_process_message_failure(self, subscription, message, outcome)",
    ),
    (
        "pre_worker_start",
        "def pre_worker_start(self): pass",
        "pre_worker_start(self)",
        "pre_worker_start(self, worker)",
    ),
    (
        "post_worker_start",
        "def post_worker_start(self): pass",
        "post_worker_start(self)",
        "post_worker_start(self, worker)",
    ),
    (
        "pre_worker_stop",
        "def pre_worker_stop(self, subscriptions): pass",
        "pre_worker_stop(self, subscriptions)",
        "pre_worker_stop(self, worker)",
    ),
    (
        "post_worker_stop",
        "def post_worker_stop(self): pass",
        "post_worker_stop(self)",
        "post_worker_stop(self, worker)",
    ),
]


def _middleware(source: str) -> type[BaseMiddleware]:
    namespace: dict[str, Any] = {}
    exec(source, namespace)  # a method written as in a ported Relé middleware
    hook = next(v for k, v in namespace.items() if not k.startswith("__"))
    cls = type("Ported", (BaseMiddleware,), {hook.__name__: hook, "__module__": "myapp.mw"})
    return cls


@pytest.mark.parametrize(
    ("hook", "source", "rele_form", "relay_form"), RELE_STYLE, ids=[r[0] for r in RELE_STYLE]
)
def test_a_rele_style_hook_fails_when_the_chain_is_built(
    hook: str, source: str, rele_form: str, relay_form: str
) -> None:
    cls = _middleware(source)

    with pytest.raises(ConfigurationError) as raised:
        MiddlewareChain.from_settings(Settings(middleware=(cls,)))

    text = str(raised.value)
    assert f"myapp.mw.Ported.{hook}(" in text  # the class and the hook
    assert f"looks like Relé's {rele_form}" in text
    assert f"relay calls {relay_form}" in text


@pytest.mark.parametrize(
    ("hook", "source"), [(r[0], r[1]) for r in RELE_STYLE], ids=[r[0] for r in RELE_STYLE]
)
def test_a_rele_style_instance_fails_in_a_directly_built_chain_and_in_memory_app(
    hook: str, source: str
) -> None:
    instance = _middleware(source)()
    with pytest.raises(ConfigurationError, match=rf"Ported\.{hook}\("):
        MiddlewareChain([instance])
    with pytest.raises(ConfigurationError, match=rf"Ported\.{hook}\("), memory_app(
        MIDDLEWARE=[instance]
    ):
        pass


def test_hooks_whose_relay_and_rele_forms_are_the_same_shape_pass() -> None:
    # setup(config, **kwargs) and pre_process_message(subscription, message) take
    # the same arguments in both: nothing to tell apart.
    class Same(BaseMiddleware):
        def setup(self, config: Any, **kwargs: Any) -> None:
            pass

        def pre_process_message(self, subscription: Any, message: Any) -> None:
            pass

    assert check_hooks(Same) == []
    MiddlewareChain.from_settings(Settings(middleware=(Same,)))


def test_relay_style_hooks_with_other_names_or_star_args_pass() -> None:
    class Mine(BaseMiddleware):
        def post_publish_failure(self, msg: Any, exc: BaseException, took: float) -> None:
            pass

        def post_process_message_success(self, *args: Any) -> None:
            pass

        def post_worker_stop(self, worker: Any, extra: int = 0) -> None:
            pass

    assert check_hooks(Mine) == []


def test_a_hook_relay_cannot_call_names_relay_form() -> None:
    class Wrong(BaseMiddleware):
        def post_ack_failure(self, subscription: Any) -> None:
            pass

    [problem] = check_hooks(Wrong)
    assert "post_ack_failure(self, subscription) cannot take relay's arguments" in problem
    assert "relay calls post_ack_failure(self, subscription, message, error)" in problem


def test_rele_post_publish_is_reported_since_relay_never_calls_it() -> None:
    class Old(BaseMiddleware):
        def post_publish(self, topic: str) -> None:
            pass

    [problem] = check_hooks(Old)
    assert "Old.post_publish is a Relé hook relay never calls" in problem
    assert "post_publish_success(self, message, elapsed)" in problem


def test_every_bad_entry_is_reported_at_once() -> None:
    problems = check_middleware([
        "rele.contrib.LoggingMiddleware",
        "rele.contrib.unrecoverable_middleware.UnrecoverableMiddleWare",
        _middleware(RELE_STYLE[4][1]),
        "relay.contrib.logging_middleware.LoggingMiddleware",
    ])
    assert len(problems) == 3
    assert "relay.contrib.logging_middleware.LoggingMiddleware" in problems[0]
    assert "relay.UnrecoverableError" in problems[1]
    assert "start_time" in problems[2]
    with pytest.raises(ConfigurationError, match=r"rele\.contrib\.LoggingMiddleware"):
        validate_middleware(["rele.contrib.LoggingMiddleware"])


@pytest.mark.parametrize(
    ("path", "replacement"),
    [
        ("rele.contrib.LoggingMiddleware", "relay.contrib.logging_middleware.LoggingMiddleware"),
        ("rele.contrib.logging_middleware.LoggingMiddleware",
         "relay.contrib.logging_middleware.LoggingMiddleware"),
        ("rele.contrib.verbose_logging_middleware.VerboseLoggingMiddleware",
         "relay.contrib.logging_middleware.VerboseLoggingMiddleware"),
        ("rele.contrib.UnrecoverableMiddleWare", "relay.UnrecoverableError"),
        ("rele.contrib.DjangoDBMiddleware", "relay.contrib.django.middleware.DjangoDBMiddleware"),
        ("rele.contrib.FlaskMiddleware", "relay.contrib.flask.AppContextMiddleware"),
    ],
)
def test_rele_middleware_paths_name_the_relay_replacement(path: str, replacement: str) -> None:
    [problem] = check_middleware([path])
    assert f"{path!r} is Relé's" in problem
    assert replacement in problem


def test_every_relay_replacement_path_imports() -> None:
    from relay.middleware import resolve
    from relay.migration import RELE_MIDDLEWARE

    paths = {r.split(" ")[0] for r in RELE_MIDDLEWARE.values() if r.startswith("relay.contrib")}
    for path in paths - {
        "relay.contrib.django.middleware.DjangoDBMiddleware",  # needs Django settings
        "relay.contrib.flask.AppContextMiddleware",  # needs Flask
    }:
        resolve(path)
