"""The subscriptions of a Django project: what ``runrelay`` consumes.

* the ``subs`` module (or ``subs/`` package, every module in it) and the
  ``tasks`` module of every app in ``INSTALLED_APPS``, in ``INSTALLED_APPS``
  order, read by ``relay.discovery`` (module-level ``@sub`` and ``@task``
  objects, and ``Subscription`` subclasses built without arguments);
* the subscriptions that run Django's task framework (``django.tasks``)
  through ``relay.contrib.django.tasks.PubSubBackend``, when that framework is
  importable (Django 6, or the ``django-tasks`` backport).

relay's own app is not searched: its ``tasks`` module is that backend, asked
through its ``backend_subscriptions()``. An app's module that fails to import
is a ``ConfigurationError`` naming the file and line; two subscriptions with
the same name (after the settings' prefixes) are one naming both handlers.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import TYPE_CHECKING

from relay.discovery import import_module, import_tree, subscriptions_in, unique
from relay.subscription import Subscription

if TYPE_CHECKING:
    from relay.settings import Settings

#: The modules searched in every installed app.
MODULE_NAMES = ("subs", "tasks")
#: Where the error for "nothing found" says subscriptions are looked for.
WHERE = "in the subs and tasks modules of INSTALLED_APPS"
_SELF = "relay.contrib.django"
_BACKEND = "relay.contrib.django.tasks"


def app_modules() -> list[str]:
    """Dotted names of the ``subs`` and ``tasks`` modules installed apps have."""
    from django.apps import apps
    from django.utils.module_loading import module_has_submodule

    names = []
    for config in apps.get_app_configs():
        if config.name == _SELF:
            continue
        for name in MODULE_NAMES:
            if module_has_submodule(config.module, name):
                names.append(f"{config.name}.{name}")
    return names


def backend_subscriptions() -> list[Subscription]:
    """The subscriptions of the ``django.tasks`` backend, or none without the framework."""
    if importlib.util.find_spec(_BACKEND) is None or not _task_framework_available():
        return []
    module = import_module(_BACKEND, what="django.tasks backend module")
    found: list[Subscription] = module.backend_subscriptions()
    return list(found)


def _task_framework_available() -> bool:
    for name in ("django.tasks", "django_tasks"):
        try:
            if importlib.util.find_spec(name) is not None:
                return True
        except ImportError:  # a parent package that is not there
            continue
    return False


def discover(settings: Settings | None = None) -> list[Subscription]:
    """Every subscription of the project (see the module docstring), each object once.

    With ``settings``, names are checked for duplicates after its prefixes are
    applied; the returned subscriptions are unresolved, like ``relay.discovery``'s.
    """

    def declared() -> Iterator[Subscription]:  # lazily: modules import in this order
        for name in app_modules():
            kind = name.rpartition(".")[2]
            for module in import_tree(name, None, f"{kind} module"):
                yield from subscriptions_in(module)
        yield from backend_subscriptions()

    return unique(declared(), settings)


__all__ = ["MODULE_NAMES", "WHERE", "app_modules", "backend_subscriptions", "discover"]
