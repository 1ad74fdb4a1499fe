"""The ``Relay`` Flask extension: settings from ``app.config``, decorators, a worker.

::

    from flask import Flask
    from relay.contrib.flask import Relay

    relay_ext = Relay()                      # in extensions.py, no app yet

    @relay_ext.task
    def resize(photo_id: int) -> str: ...

    def create_app() -> Flask:
        app = Flask(__name__)
        app.config["RELAY"] = {"GC_PROJECT_ID": "my-project"}
        relay_ext.init_app(app)              # settings, relay's process-wide app, `flask relay`
        return app

One ``Relay`` object serves any number of apps (application factories, tests);
its subscriptions are declared once, on the object. What belongs to one app
(its settings) is in ``app.extensions["relay"]``, a ``RelayState``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, overload

from flask import Flask, current_app, has_app_context

import relay
from relay.cli import Source
from relay.contrib.flask.middleware import AppContextMiddleware
from relay.contrib.flask.settings import check_options, load_settings
from relay.contrib.storage import BucketSubscription, bucket_sub
from relay.discovery import import_module, subscriptions_in
from relay.errors import ConfigurationError
from relay.results import ResultsMiddleware
from relay.setting_values import import_string
from relay.settings import Settings
from relay.subscription import Subscription, check_unique, sub
from relay.tasks import Task, task

if TYPE_CHECKING:
    from relay.push import PushHandler

F = TypeVar("F", bound=Callable[..., Any])
S = TypeVar("S", bound=Subscription)
#: The key in ``app.extensions``.
EXTENSION = "relay"
#: The key in ``app.extensions`` of the ``PushHandler`` ``mount_push`` made.
PUSH_EXTENSION = "relay.push"
#: Where ``mount_push`` serves push requests unless told otherwise.
PUSH_PREFIX = "/_relay/push"
#: ``prog`` of the ``flask relay`` commands (their usage lines, errors and READY line).
FLASK_PROG = "flask relay"


@dataclass(frozen=True)
class RelayState:
    """What ``init_app`` made for one app: ``app.extensions["relay"]``."""

    extension: Relay
    app: Flask = field(repr=False)
    #: The app's relay settings, ``AppContextMiddleware`` first in ``MIDDLEWARE``.
    settings: Settings

    def source(self, prog: str = FLASK_PROG) -> Source:
        """What ``relay.cli`` runs for this app: its settings and the extension's
        subscriptions."""
        return Source(
            prog=prog,
            settings=lambda: self.settings,
            subscriptions=lambda settings: list(self.extension.subscriptions),
            where=(
                f"on the Relay extension of Flask app {self.app.name!r} (declare them with "
                "ext.task, ext.sub or ext.bucket, or add them with ext.register)"
            ),
        )


def with_app_context(settings: Settings, app: Flask) -> Settings:
    """``settings`` with an ``AppContextMiddleware`` for ``app`` first in ``MIDDLEWARE``.

    With ``RESULTS`` set, the results middleware is listed right after it (relay
    would otherwise put it before everything), so a results backend that needs
    the app (the app's database) runs inside the message's context too. A
    ``ResultsMiddleware`` already in ``MIDDLEWARE`` is left where it is.
    """
    listed = [m for m in settings.middleware if not isinstance(m, AppContextMiddleware)]
    first: list[Any] = [AppContextMiddleware(app)]
    if settings.results is not None and not any(_is_results(m) for m in listed):
        first.append(ResultsMiddleware)  # a class: each chain builds its own backend
    return settings.replace(middleware=(*first, *listed))


def _is_results(item: Any) -> bool:
    if isinstance(item, str):
        item = import_string(item, "MIDDLEWARE")
    return isinstance(item, ResultsMiddleware) or (
        isinstance(item, type) and issubclass(item, ResultsMiddleware)
    )


class Relay:
    """relay for a Flask app: ``Relay(app=None, **options)`` and ``init_app(app)``.

    ``options`` are flask-gcp-pubsub's keywords (``project_id``,
    ``gcp_credentials_json``, ``gcp_credentials_file``, ``concurrent_consumers``,
    ``concurrent_messages``, ``topic_prefix``) and ``settings={...}`` (any
    relay setting); they win over ``app.config`` (see
    ``relay.contrib.flask.settings`` for the order and docs/flask.md for the
    mapping). An unknown option is a ``ConfigurationError`` now.
    """

    def __init__(self, app: Flask | None = None, **options: Any) -> None:
        self._options = check_options(options)
        self._subscriptions: list[Subscription] = []
        self._apps: list[Flask] = []
        if app is not None:
            self.init_app(app)

    # ------------------------------------------------------------------ apps
    def init_app(self, app: Flask) -> RelayState:
        """Read ``app``'s settings, make them relay's process-wide app, add ``flask relay``.

        Settings are checked now: a wrong key or value raises
        ``ConfigurationError`` naming it (and the flask-gcp-pubsub key it came
        in under), never showing credentials. relay has one process-wide app
        (what ``relay.publish`` and ``task.delay()`` use), so the app
        initialised last is the one they publish with.
        """
        from relay.contrib.flask.commands import relay_commands

        if EXTENSION in app.extensions:
            raise ConfigurationError(
                f"Flask app {app.name!r} already has a Relay extension; call init_app once "
                "per app (one Relay object may serve several apps)"
            )
        settings = with_app_context(load_settings(app.config, self._options), app)
        state = RelayState(self, app, settings)
        relay.configure(settings)
        app.extensions[EXTENSION] = state
        app.cli.add_command(relay_commands)
        self._apps.append(app)
        return state

    def state(self, app: Flask | None = None) -> RelayState:
        """The ``RelayState`` of ``app``: by default the current app, else the only app
        this extension was initialised with."""
        if app is None:
            if has_app_context():
                app = current_app._get_current_object()  # type: ignore[attr-defined]
            elif len(self._apps) == 1:
                app = self._apps[0]
            else:
                raise ConfigurationError(
                    f"this Relay extension serves {len(self._apps)} Flask apps and none is "
                    "current: pass app=..., or call it inside app.app_context()"
                    if self._apps else
                    "this Relay extension has no Flask app yet: call Relay(app) or "
                    "ext.init_app(app) first"
                )
        found = app.extensions.get(EXTENSION)
        if not isinstance(found, RelayState) or found.extension is not self:
            raise ConfigurationError(
                f"Flask app {app.name!r} was not initialised with this Relay extension: "
                "call ext.init_app(app)"
            )
        return found

    # ---------------------------------------------------------- declarations
    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        """Everything declared on (or registered with) this extension, in order."""
        return tuple(self._subscriptions)

    def register(self, *items: Subscription | str) -> None:
        """Add subscriptions declared elsewhere (``relay.sub``, ``relay.task``,
        ``bucket_sub``), or every subscription of a module named by a string."""
        for item in items:
            if isinstance(item, str):
                module = import_module(item, what="module")
                for found in subscriptions_in(module):
                    self._add(found)
            elif isinstance(item, Subscription):
                self._add(item)
            else:
                raise ConfigurationError(
                    f"Relay.register takes subscriptions or module names, got {item!r}"
                )

    def _add(self, subscription: S) -> S:
        if any(s is subscription for s in self._subscriptions):
            return subscription
        check_unique([*self._subscriptions, subscription])
        self._subscriptions.append(subscription)
        return subscription

    @overload
    def task(self, fn: Callable[..., Any], /) -> Task: ...
    @overload
    def task(
        self, fn: str | None = None, /, **options: Any
    ) -> Callable[[Callable[..., Any]], Task]: ...
    def task(self, fn: Any = None, /, **options: Any) -> Any:
        """``@ext.task``, ``@ext.task("topic")`` or ``@ext.task(topic=..., **options)``.

        ``relay.task`` with flask-gcp-pubsub's naming: the topic (and so the
        subscription) is the function's ``__name__`` (``TOPIC_PREFIX`` before
        it) unless ``topic=`` names one, so the topics flask-gcp-pubsub made
        are the ones used. The options are ``relay.task``'s.
        """
        if callable(fn) and not isinstance(fn, str):
            if options:
                raise ConfigurationError(
                    "@ext.task takes options only when called: @ext.task(topic=..., ...)"
                )
            return self._add(self._task(fn, None, options))
        if fn is not None and "topic" in options:
            raise ConfigurationError("@ext.task got the topic twice")
        topic = fn if fn is not None else options.pop("topic", None)

        def decorator(func: Callable[..., Any]) -> Task:
            return self._add(self._task(func, topic, options))

        return decorator

    @staticmethod
    def _task(fn: Callable[..., Any], topic: str | None, options: dict[str, Any]) -> Task:
        if topic is not None:
            made: Task = task(topic, **options)(fn)
            return made
        name = getattr(fn, "__name__", None)
        if not isinstance(name, str):
            raise ConfigurationError(f"@ext.task decorates a function, got {fn!r}")
        try:
            made = task(name, **options)(fn)
        except ConfigurationError as exc:
            raise ConfigurationError(
                f"{exc} (@ext.task names a task's topic after its function, as "
                f"flask-gcp-pubsub did; give one that Pub/Sub accepts: "
                f"@ext.task(topic='...'))"
            ) from None
        return made

    def sub(self, topic: str | None = None, /, **options: Any) -> Callable[[F], Subscription]:
        """``relay.sub``, registered with this extension: ``@ext.sub("orders", ...)``."""
        declare_sub: Any = sub  # its overloads cannot see through **options
        declare: Callable[[F], Subscription] = declare_sub(topic, **options)

        def decorator(func: F) -> Subscription:
            return self._add(declare(func))

        return decorator

    def bucket(self, bucket: str, /, **options: Any) -> Callable[[F], BucketSubscription]:
        """flask-gcp-pubsub's ``@pubsub.bucket(name, events=[...])``: relay's
        ``bucket_sub``, registered with this extension.

        The handler is called as ``fn(object_resource, **attributes)``; the topic
        is ``bucket_sub``'s (``gcs-BUCKET-EVENTS``), not the function's name.
        The options are ``bucket_sub``'s.
        """
        if "auto_setup" in options:
            raise ConfigurationError(
                f"@ext.bucket({bucket!r}): auto_setup is flask-gcp-pubsub's option; relay "
                "creates the bucket's notification configuration when the worker starts, as "
                "the PROVISIONING setting says (create, verify or off): remove auto_setup"
            )
        declare = bucket_sub(bucket, **options)

        def decorator(func: F) -> BucketSubscription:
            return self._add(declare(func))

        return decorator

    # ------------------------------------------------------------------ push
    def mount_push(
        self, app: Flask | None = None, url_prefix: str = PUSH_PREFIX, *,
        subscriptions: Iterable[Subscription] | None = None,
    ) -> PushHandler:
        """Serve Pub/Sub push requests at ``url_prefix`` of ``app`` (default: the
        current or only app): ``Relay(app).mount_push(app)``.

        The handler is ``relay.push.from_settings`` on the app's settings (the
        ``PUSH_*`` keys) and this extension's subscriptions (or
        ``subscriptions``), built now: ``PUSH_AUTH="oidc"`` without
        ``PUSH_AUDIENCE`` or ``PUSH_SERVICE_ACCOUNT`` raises
        ``ConfigurationError`` here, ``PUSH_AUTH="off"`` logs a WARNING here.
        Declare (or register) the subscriptions first. Returns the handler, also
        kept in ``app.extensions["relay.push"]``. See docs/push.md.
        """
        from relay.contrib.flask.push import push_blueprint
        from relay.push import from_settings

        state = self.state(app)
        if PUSH_EXTENSION in state.app.extensions:
            raise ConfigurationError(
                f"Flask app {state.app.name!r} already serves push requests; call mount_push "
                "once per app"
            )
        served = list(self.subscriptions if subscriptions is None else subscriptions)
        if not served:
            raise ConfigurationError(
                "mount_push: this Relay extension has no subscriptions to serve; declare them "
                "with ext.task, ext.sub or ext.bucket (or add them with ext.register) before "
                "mounting, or pass subscriptions=[...]"
            )
        handler = from_settings(state.settings, served)
        state.app.register_blueprint(push_blueprint(handler), url_prefix=url_prefix)
        state.app.extensions[PUSH_EXTENSION] = handler
        return handler

    # --------------------------------------------------------------- running
    def run(
        self, argv: Sequence[str] | None = None, *, app: Flask | None = None,
        prog: str | None = None,
    ) -> int:
        """Run a worker over this extension's subscriptions until SIGINT/SIGTERM.

        flask-gcp-pubsub's ``pubsub.run()``. ``argv`` are ``relay-cli run``'s
        options (default: the script's own arguments, ``sys.argv[1:]``), so
        ``python worker.py --emulator`` works; ``prog`` names the program in its
        output (default: the script's name). Returns the exit code
        (``relay-cli``'s: 0 after a clean stop): ``raise SystemExit(ext.run())``.
        Call it from the main thread: it handles SIGINT and SIGTERM.
        """
        args = list(sys.argv[1:] if argv is None else argv)
        return self.main(["run", *args], app=app, prog=prog or _script_name())

    def main(
        self, argv: Iterable[str], *, app: Flask | None = None, prog: str = FLASK_PROG
    ) -> int:
        """``relay-cli`` for one app of this extension (``self.state(app)``): ``argv``
        is a command (run, plan, subs, publish) and its options; returns the exit code."""
        from relay.cli import main

        return main(list(argv), prog=prog, source=self.state(app).source(prog))

    def __repr__(self) -> str:
        apps = [a.name for a in self._apps]
        return f"<Relay apps={apps} subscriptions={len(self._subscriptions)}>"


def _script_name() -> str:
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "relay"


__all__ = [
    "EXTENSION", "FLASK_PROG", "PUSH_EXTENSION", "PUSH_PREFIX", "Relay", "RelayState",
    "with_app_context",
]
