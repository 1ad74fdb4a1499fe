"""Finding ``subs`` modules and the subscriptions they declare (for ``relay-cli``).

Like Relé's autodiscovery: every ``subs.py`` module and ``subs/`` package under
a root directory (the current one, by default) is imported under the dotted name
its path gives, with the root put first on ``sys.path``: ``shop/orders/subs.py``
becomes ``shop.orders.subs``. The walk skips hidden directories, virtualenvs
(``.venv``, ``venv``, any directory holding a ``pyvenv.cfg``), ``node_modules``,
``site-packages``, ``__pycache__``, ``build``, ``dist`` and ``tests``, and
directories whose names are not Python identifiers (they cannot be imported).
Naming modules explicitly (``--subs MODULE``) replaces the walk.

From each module it collects, in definition order:

* ``Subscription`` instances at module level (what ``@sub`` makes, and what
  ``@task`` makes: a ``relay.Task`` is a subscription);
* ``Subscription`` subclasses defined in that module that can be built with no
  arguments (Relé's class-based form), unless the module already holds an
  instance of the class.

A ``subs`` package contributes every module in it. Two subscriptions with the
same name (after the settings' prefixes) are a ``ConfigurationError`` naming
both handlers; the same object reached twice (imported into two modules) is
counted once. A module that fails to import is a ``ConfigurationError`` naming
the module, the file and line, and the original error.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import pkgutil
import sys
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, cast

from relay.errors import ConfigurationError
from relay.subscription import Subscription, check_unique

if TYPE_CHECKING:
    from relay.settings import Settings

logger = logging.getLogger("relay.discovery")

SUBS_NAME = "subs"
SKIP_DIRS = frozenset(
    {".venv", "venv", "node_modules", "site-packages", "__pycache__", "build", "dist", "tests"}
)
#: Frames in these directories are not the user's code (for error locations).
_NOT_USER_CODE = (Path(__file__).resolve().parent, Path(importlib.__file__).resolve().parent)


def find_subs_modules(root: str | os.PathLike[str] = ".") -> list[tuple[str, Path]]:
    """``(dotted module name, path)`` of every ``subs`` module or package under ``root``."""
    root_path = Path(root).resolve()
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root_path):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if _walkable(here / d))
        parts = here.relative_to(root_path).parts
        name = ".".join((*parts, SUBS_NAME))
        if SUBS_NAME in dirnames:
            dirnames.remove(SUBS_NAME)  # its modules are imported with the package
            found[name] = here / SUBS_NAME
        elif f"{SUBS_NAME}.py" in filenames:
            found[name] = here / f"{SUBS_NAME}.py"
    return list(found.items())


def _walkable(path: Path) -> bool:
    name = path.name
    return (
        not name.startswith(".")
        and name not in SKIP_DIRS
        and name.isidentifier()
        and not (path / "pyvenv.cfg").exists()
    )


def import_module(name: str, *, what: str = "module", path: Path | None = None) -> ModuleType:
    """Import ``name``; any error becomes a ``ConfigurationError`` saying where and why.

    With ``path``, also check that ``name`` really is that file or package (not
    an installed module of the same name shadowing it).
    """
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # whatever the user's module raised while importing
        raise ConfigurationError(
            f"cannot import {what} {name!r}{_where(exc, path)}: {type(exc).__name__}: {exc}"
        ) from exc
    if path is not None and not _is_from(module, path):
        origin = getattr(module, "__file__", None) or list(getattr(module, "__path__", []))
        raise ConfigurationError(
            f"cannot import {what} {_show(path)} as {name!r}: that name is already taken by "
            f"{origin}; rename the directory or pass the module with --subs"
        )
    return module


def _where(exc: BaseException, path: Path | None) -> str:
    """`` (file:line)`` of the user's code that failed, as precisely as we can tell."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" ({_show(Path(exc.filename))}:{exc.lineno})"
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        filename = frame.filename
        if filename.startswith("<") or any(
            Path(filename).resolve().is_relative_to(d) for d in _NOT_USER_CODE
        ):
            continue  # importlib's frames and relay's own validation code
        return f" ({_show(Path(filename))}:{frame.lineno})"
    return f" ({_show(path)})" if path is not None else ""


def _show(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _is_from(module: ModuleType, path: Path) -> bool:
    target = path.resolve()
    if target.is_dir():
        return any(Path(p).resolve() == target for p in getattr(module, "__path__", []))
    file = getattr(module, "__file__", None)
    return file is not None and Path(file).resolve() == target


def import_tree(name: str, path: Path | None, what: str) -> list[ModuleType]:
    """The module, and if it is a ``subs`` package, every module inside it."""
    module = import_module(name, what=what, path=path)
    modules = [module]
    if hasattr(module, "__path__") and name.rpartition(".")[2] == SUBS_NAME:
        modules.extend(_submodules(module, what))
    return modules


def _submodules(package: ModuleType, what: str) -> list[ModuleType]:
    modules = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        module = import_module(f"{package.__name__}.{info.name}", what=what)
        modules.append(module)
        if info.ispkg:
            modules.extend(_submodules(module, what))
    return modules


def subscriptions_in(module: ModuleType) -> list[Subscription]:
    """The subscriptions a module declares (see the module docstring)."""
    found: list[Subscription] = []
    classes: list[type[Subscription]] = []
    for value in list(vars(module).values()):
        if isinstance(value, Subscription):
            found.append(value)
        elif (
            isinstance(value, type)
            and issubclass(value, Subscription)
            and value is not Subscription
            and value.__module__ == module.__name__
        ):
            classes.append(value)
    have_instance = {type(s) for s in found}
    for cls in classes:
        if cls in have_instance or inspect.isabstract(cls) or not _takes_no_arguments(cls):
            continue
        try:
            found.append(cast("Callable[[], Subscription]", cls)())
        except Exception as exc:
            raise ConfigurationError(
                f"cannot create subscription class {module.__name__}.{cls.__qualname__}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    return found


def _takes_no_arguments(cls: type) -> bool:
    try:
        inspect.signature(cls).bind()
    except (TypeError, ValueError):
        logger.debug("not instantiating %s: its constructor needs arguments", cls.__qualname__)
        return False
    return True


def discover(
    root: str | os.PathLike[str] = ".",
    modules: Iterable[str] = (),
    *,
    settings: Settings | None = None,
) -> list[Subscription]:
    """Import the ``subs`` modules (found under ``root``, or ``modules``); return their subs.

    ``root`` goes first on ``sys.path`` either way, so explicit modules may live
    in it or be installed. With ``settings``, names are checked for duplicates
    after its prefixes are applied (the returned subscriptions are unresolved).
    """
    root_path = Path(root).resolve()
    if str(root_path) not in sys.path:
        sys.path.insert(0, str(root_path))
    names = list(modules)
    targets: list[tuple[str, Path | None]] = (
        [(name, None) for name in names] if names else list(find_subs_modules(root_path))
    )
    what = "--subs module" if names else "subs module"
    declared = (
        found
        for name, path in targets
        for module in import_tree(name, path, what)
        for found in subscriptions_in(module)
    )
    return unique(declared, settings)


def unique(
    subscriptions: Iterable[Subscription], settings: Settings | None = None
) -> list[Subscription]:
    """``subscriptions`` with each object once, in order; two with one name (after
    ``settings``' prefixes, when given) are a ``ConfigurationError`` naming both."""
    found: list[Subscription] = []
    seen: set[int] = set()
    for subscription in subscriptions:
        if id(subscription) not in seen:
            seen.add(id(subscription))
            found.append(subscription)
    if settings is not None:
        check_unique(s.resolve(settings) for s in found)
    else:
        check_unique(found)
    return found

__all__ = [
    "SKIP_DIRS", "discover", "find_subs_modules", "import_module", "import_tree",
    "subscriptions_in", "unique",
]
