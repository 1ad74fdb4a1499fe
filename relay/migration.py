"""What relay knows about Relé's names, so an error can name relay's replacement.

Relé's middleware paths, its middleware hook signatures and its exceptions,
each with what relay has instead. ``relay.middleware`` uses them when it checks
``MIDDLEWARE`` entries and hook signatures; ``relay-cli check`` (``relay.check``)
uses them to point at Relé names left in settings and ``subs`` modules. Relé's
settings keys that relay names differently are ``relay.settings.RENAMED_KEYS``.
"""

from __future__ import annotations

import re

_LOGGING = "relay.contrib.logging_middleware.LoggingMiddleware"
_VERBOSE = "relay.contrib.logging_middleware.VerboseLoggingMiddleware"
_DJANGO_DB = "relay.contrib.django.middleware.DjangoDBMiddleware"
_FLASK = "relay.contrib.flask.AppContextMiddleware"
_UNRECOVERABLE = (
    "nothing: relay handles relay.UnrecoverableError itself (dead-lettered where the "
    "subscription has a dead-letter topic, else acked); drop the entry "
    "(relay.contrib.unrecoverable.UnrecoverableMiddleware is a no-op kept for old settings)"
)

#: Relé's middleware, by every dotted path Relé accepts, with relay's replacement.
RELE_MIDDLEWARE: dict[str, str] = {
    "rele.contrib.LoggingMiddleware": _LOGGING,
    "rele.contrib.logging_middleware.LoggingMiddleware": _LOGGING,
    "rele.contrib.verbose_logging_middleware.VerboseLoggingMiddleware": _VERBOSE,
    "rele.contrib.DjangoDBMiddleware": _DJANGO_DB,
    "rele.contrib.django_db_middleware.DjangoDBMiddleware": _DJANGO_DB,
    "rele.contrib.FlaskMiddleware": _FLASK,
    "rele.contrib.flask_middleware.FlaskMiddleware": _FLASK,
    "rele.contrib.UnrecoverableMiddleWare": _UNRECOVERABLE,
    "rele.contrib.unrecoverable_middleware.UnrecoverableMiddleWare": _UNRECOVERABLE,
    "rele.middleware.BaseMiddleware": "relay.BaseMiddleware (hooks take other arguments)",
}

#: Other Relé names code imports or catches, with relay's replacement.
RELE_NAMES: dict[str, str] = {
    "UnrecoverableException": "relay.UnrecoverableError",
    "UnrecoverableMiddleWare": _UNRECOVERABLE,
    "NotConnectionError": "nothing: relay never probes the network; Worker.status() reports "
    "a failing stream",
    "rele.retry_policy.RetryPolicy": "relay.RetryPolicy",
    "rele.config.setup": "relay.configure",
    "rele.publishing.publish": "relay.publish",
    "rele.client.Publisher": "relay.get_publisher()",
    "rele.subscription.Subscription": "relay.Subscription",
    "rele.subscription.sub": "relay.sub",
    "rele.worker.Worker": "relay.Worker",
}


def rele_middleware(path: str) -> str | None:
    """relay's replacement for a Relé middleware path, if ``path`` is one."""
    return RELE_MIDDLEWARE.get(path)


#: Relé's hooks whose arguments differ from relay's: Relé's parameters, and what
#: relay passes instead (with where the old values went).
RELE_HOOKS: dict[str, tuple[tuple[str, ...], str]] = {
    "pre_publish": (
        ("topic", "data", "attrs"),
        "pre_publish(self, message): message.topic, message.data, message.attributes",
    ),
    "post_publish_success": (
        ("topic", "data", "attrs"),
        "post_publish_success(self, message, elapsed): message.topic, message.data, "
        "message.attributes, message.message_id",
    ),
    "post_publish_failure": (
        ("topic", "exception", "message"),
        "post_publish_failure(self, message, exception, elapsed): message.topic, message.data",
    ),
    "post_process_message": (
        (),
        "post_process_message(self, subscription, message, outcome)",
    ),
    "post_process_message_success": (
        ("subscription", "start_time", "message"),
        "post_process_message_success(self, subscription, message, outcome): outcome.elapsed "
        "replaces start_time",
    ),
    "post_process_message_failure": (
        ("subscription", "exception", "start_time", "message"),
        "post_process_message_failure(self, subscription, message, outcome): "
        "outcome.exception, outcome.elapsed",
    ),
    "pre_worker_start": ((), "pre_worker_start(self, worker)"),
    "post_worker_start": ((), "post_worker_start(self, worker)"),
    "pre_worker_stop": (
        ("subscriptions",),
        "pre_worker_stop(self, worker): worker.subscriptions",
    ),
    "post_worker_stop": ((), "post_worker_stop(self, worker)"),
}

#: Relé hooks relay does not have: a middleware defining one is never called.
RELE_ONLY_HOOKS: dict[str, str] = {
    "post_publish": "post_publish_success(self, message, elapsed) (Relé deprecated post_publish)",
}


def rele_hook_form(hook: str) -> str | None:
    """Relé's signature of ``hook``, as Relé documents it, if it differs from relay's."""
    if hook not in RELE_HOOKS:
        return None
    return f"{hook}({', '.join(('self', *RELE_HOOKS[hook][0]))})"


_WORDS = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


def rele_names_in(text: str) -> list[tuple[str, str]]:
    """``(Relé name, relay's replacement)`` for each known Relé name in ``text``, once
    each, in order of appearance; a bare ``rele`` module becomes ``relay``."""
    found: dict[str, str] = {}
    for word in _WORDS.findall(text):
        word = word.rstrip(".")
        last = word.rpartition(".")[2]
        if word in RELE_MIDDLEWARE:
            found.setdefault(word, RELE_MIDDLEWARE[word])
        elif word in RELE_NAMES:
            found.setdefault(word, RELE_NAMES[word])
        elif last in RELE_NAMES and word.startswith("rele."):
            found.setdefault(word, RELE_NAMES[last])
        elif word == "rele" or word.startswith("rele."):
            found.setdefault(word, "relay's equivalent (docs/migrating-from-rele.md)")
    return list(found.items())
