"""The kinds of value a setting takes: how each is converted, checked and described.

``relay.setting_specs`` declares every setting once, giving it one of the rules
below (``Number``, ``Choice``, ``Flag``, ``Text``, ``Items``, ``Custom``) and one
environment form (``EnvForm``). A rule converts what ``Settings.load`` is given
to what the setting stores, raising ``ConfigurationError`` that names the key,
the value (``shown``: never a secret) and the form it expects; ``check`` is the
stricter test the plain constructor applies; ``allowed`` is the text of the
docs table's "Allowed" column.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from relay.errors import ConfigurationError
from relay.limits import validate_name
from relay.policies import RetryPolicy
from relay.redaction import describe, holds_private_key, shown
from relay.subscription import check_filter


def import_string(path: str, key: str) -> Any:
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise ConfigurationError(
            f"{key}: {shown(path)} is not a dotted path like 'package.module.Name'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"{key}: cannot import module {shown(module_name)} ({exc})"
        ) from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigurationError(
            f"{key}: module {shown(module_name)} has no {shown(attr)}"
        ) from None


def coerce(name: str, value: Any) -> Any:
    """What setting ``name`` (a field name) stores for ``value``; see ``relay.setting_specs``."""
    from relay.setting_specs import SPECS  # the declarations use the rules below

    return SPECS[name].coerce(value)


def refuse_key(key: str, value: Any) -> None:
    """A service-account key in a setting that is not for credentials: refused
    before any other check could quote it."""
    if holds_private_key(value):
        raise ConfigurationError(
            f"{key}: got {describe(value)} holding a private key (not shown); a "
            "service-account key goes in GC_CREDENTIALS_JSON (the key file's contents) or "
            "GC_CREDENTIALS_PATH (the key file's path)"
        )


# ------------------------------------------------------------------ environment
_BOOL = {"1": True, "true": True, "yes": True, "on": True,
         "0": False, "false": False, "no": False, "off": False}


def parse_bool(where: str, raw: str) -> bool:
    if raw.strip().lower() not in _BOOL:
        raise ConfigurationError(f"{where}={shown(raw)}: expected true/false (or 1/0, yes/no)")
    return _BOOL[raw.strip().lower()]


def _as_is(var: str, raw: str) -> Any:
    return raw


def _split(var: str, raw: str) -> Any:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _json(var: str, raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{var}: expected a JSON object, got {shown(raw)}") from exc


@dataclass(frozen=True)
class EnvForm:
    """How a ``RELAY_<KEY>`` string becomes a value; the rule then checks it."""

    kind: str
    format: str
    example: str
    parse: Callable[[str, str], Any] = _as_is  # (variable name, raw string) -> value


TEXT = EnvForm("text", 'as is; empty: None (or `""`) where the key allows it',
               "`RELAY_GC_PROJECT_ID=shop-prod`")
WHOLE = EnvForm("whole number", "digits", "`RELAY_CONCURRENCY=32`")
DECIMAL = EnvForm("decimal", "a decimal number", "`RELAY_DRAIN_TIMEOUT=12.5`")
BOOL = EnvForm("bool", "`1/0`, `true/false`, `yes/no`, `on/off`, any case",
               "`RELAY_PUBLISHER_BLOCKING=yes`", parse_bool)
LIST = EnvForm("list", "comma-separated; middleware and filters as dotted paths (empty: none)",
               "`RELAY_GC_STORAGE_REGIONS=europe-west1,europe-west4`", _split)
JSON = EnvForm("JSON", "a JSON object",
               """`RELAY_CLIENT_OPTIONS='{"api_endpoint": "pubsub.example:443"}'`""", _json)
RETRY = EnvForm("retry policy", "`MIN,MAX` seconds, or `none`/`off`/empty for no policy",
                "`RELAY_DEFAULT_RETRY_POLICY=5,60`")
DOTTED = EnvForm("dotted path", "`package.module.Name`",
                 "`RELAY_ENCODER=myproject.encoding.default`")
#: The forms, in the order the docs list them.
ENV_FORMS = (TEXT, WHOLE, DECIMAL, BOOL, LIST, JSON, RETRY, DOTTED)


# ------------------------------------------------------------------------ rules
class Rule:
    """How one setting's value is converted (``coerce``) and checked (``check``)."""

    def coerce(self, key: str, value: Any) -> Any:
        return value

    def check(self, key: str, value: Any) -> None:
        """The constructor's test of a value it stores as given."""
        self.coerce(key, value)

    def allowed(self) -> str:
        return ""


def _number_text(n: float) -> str:
    for size, unit in ((1024**3, "GiB"), (1024**2, "MiB")):
        if n >= size and n % size == 0:
            return f"{int(n // size)} {unit}"
    return f"{n:,}" if n >= 100_000 else str(n)


@dataclass(frozen=True)
class Number(Rule):
    """``lo`` to ``hi``; with ``zero``: also 0, which means ``zero``; with
    ``optional``: also None (or an empty string)."""

    kind: type[int] | type[float]
    lo: float
    hi: float
    zero: str = ""
    optional: bool = False

    def coerce(self, key: str, value: Any) -> Any:
        if self.optional and (value is None or value == ""):
            return None
        if not self.zero:
            return _as_number(key, value, self.kind, self.lo, self.hi)
        number = _as_number(key, value, self.kind, 0, self.hi)
        if 0 < number < self.lo:
            raise ConfigurationError(
                f"{key}: {shown(value)}; expected 0 ({self.zero}) or {self.lo} to {self.hi} seconds"
            )
        return number

    def allowed(self) -> str:
        span = f"{_number_text(self.lo)} to {_number_text(self.hi)}"
        if self.zero:
            return f"0 ({self.zero}), or {span}"
        return f"{span}, or None" if self.optional else span


def _as_number(key: str, value: Any, kind: type, lo: float, hi: float) -> Any:
    if isinstance(value, bool):
        raise ConfigurationError(f"{key}: expected a number, got {shown(value)}")
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{key}: expected a number, got {shown(value)}") from None
    if kind is int and isinstance(value, float) and value != int(value):
        raise ConfigurationError(f"{key}: expected a whole number, got {shown(value)}")
    if not lo <= number <= hi:
        raise ConfigurationError(f"{key}: {shown(value)} is out of range; expected {lo} to {hi}")
    return number


@dataclass(frozen=True)
class Choice(Rule):
    choices: tuple[str, ...]

    def coerce(self, key: str, value: Any) -> Any:
        if value not in self.choices:
            raise ConfigurationError(
                f"{key}: {shown(value)}; expected one of {', '.join(map(repr, self.choices))}"
            )
        return value

    def allowed(self) -> str:
        return ", ".join(f'`"{c}"`' for c in self.choices)


@dataclass(frozen=True)
class Flag(Rule):
    """True or False; ``load`` also takes the environment's strings ("yes", "0")."""

    def coerce(self, key: str, value: Any) -> Any:
        if isinstance(value, str):
            return parse_bool(key, value)
        self.check(key, value)
        return value

    def check(self, key: str, value: Any) -> None:
        if not isinstance(value, bool):
            raise ConfigurationError(f"{key}: expected True or False, got {shown(value)}")

    def allowed(self) -> str:
        return "`True`, `False`"


_KEEP = object()


@dataclass(frozen=True)
class Text(Rule):
    """A string, described as ``what``. None and "" become ``empty`` (unless
    ``empty`` is left out: then they are refused); ``name``: a Pub/Sub name."""

    what: str = "a string"
    empty: Any = _KEEP
    name: bool = False
    note: str = ""

    def coerce(self, key: str, value: Any) -> Any:
        if (value is None or value == "") and self.empty is not _KEEP:
            return self.empty
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"{key}: expected {self.what}, got {shown(value)}")
        return validate_name(value, key) if self.name else value

    def allowed(self) -> str:
        return self.note or self.what


@dataclass(frozen=True)
class Items(Rule):
    """A list (stored as a tuple); one item alone (a str or a callable) is taken
    as a list of one; ``item`` converts and checks each. ``note`` is what the docs
    say is allowed, and what an error says is expected; ``example``, a value that
    is, for the error's fix."""

    item: Callable[[str, Any], Any] | None = None
    note: str = ""
    example: str = ""

    def coerce(self, key: str, value: Any) -> Any:
        if value is None:
            return ()
        if isinstance(value, str) or (callable(value) and not isinstance(value, Sequence)):
            value = (value,)
        if not isinstance(value, Sequence):
            raise ConfigurationError(f"{key}: {shown(value)} is not allowed; {self._expected(key)}")
        item = self.item
        return tuple(value) if item is None else tuple(item(key, v) for v in value)

    def _expected(self, key: str) -> str:
        what = self.note.replace("`", "") or "a list"
        if "list" not in what:
            what = f"a list of {what}"
        fix = f"; for instance {key}: {self.example}" if self.example else ""
        return f"expected {what}{fix}"

    def allowed(self) -> str:
        return self.note


@dataclass(frozen=True)
class Custom(Rule):
    """A conversion of its own; ``strict``: the constructor's stricter test."""

    convert: Callable[[str, Any], Any]
    note: str = ""
    strict: Callable[[str, Any], None] | None = None

    def coerce(self, key: str, value: Any) -> Any:
        return self.convert(key, value)

    def check(self, key: str, value: Any) -> None:
        (self.strict or self.convert)(key, value)

    def allowed(self) -> str:
        return self.note


# ---------------------------------------------------- the conversions of their own
def region(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{key}: regions are strings, got {shown(value)}")
    return value


def a_filter(key: str, value: Any) -> Any:
    if isinstance(value, str):
        value = import_string(value, key)
    if not callable(value):
        raise ConfigurationError(f"{key}: {shown(value)} is not callable")
    check_filter(value, key)
    return value


def encoder(key: str, value: Any) -> Any:
    if isinstance(value, str):
        value = import_string(value, key)
    if value is not None and not callable(value):
        raise ConfigurationError(f"{key}: expected a callable or JSONEncoder class")
    return value


def client_options(key: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{key}: expected a dict, got {shown(value)}")
    return dict(value)


#: The built-in transports that talk to Pub/Sub (or an emulator of it): they need a
#: project id and can reach Google's other services.
PUBSUB_TRANSPORTS = ("grpc", "pubsub")


def transport(key: str, value: Any) -> str:
    if not isinstance(value, str) or not (value in (*PUBSUB_TRANSPORTS, "memory") or "." in value):
        raise ConfigurationError(
            f"{key}: {shown(value)}; expected 'grpc' (relay's own Pub/Sub transport), "
            "'pubsub' (google-cloud-pubsub's client), 'memory' or a dotted path to a "
            "Transport class"
        )
    return value


def results(key: str, value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "off")):
        return None
    if not isinstance(value, str) or not (value in ("pubsub", "memory") or "." in value):
        raise ConfigurationError(
            f"{key}: {shown(value)}; expected None (no results), 'pubsub' (replies on "
            "Pub/Sub), 'memory' (in-process, for tests) or a dotted path to a "
            "relay.results.ResultBackend class"
        )
    return value


def retry_policy(key: str, value: Any) -> RetryPolicy | None:
    if value is None or isinstance(value, RetryPolicy):
        return value
    if isinstance(value, str):
        if value.strip().lower() in ("", "none", "off"):
            return None
        parts = value.split(",")
        try:
            if len(parts) != 2:
                raise ValueError
            low, high = float(parts[0]), float(parts[1])
        except ValueError:
            raise ConfigurationError(
                f"{key}: {shown(value)}; expected 'MIN,MAX' seconds, e.g. '10,600', or 'none'"
            ) from None
        return RetryPolicy(low, high)
    if isinstance(value, Mapping):
        try:
            return RetryPolicy(**value)
        except TypeError as exc:
            raise ConfigurationError(
                f"{key}: {shown(dict(value))}; expected keys minimum_backoff and maximum_backoff"
            ) from exc
    if isinstance(value, Sequence) and len(value) == 2:
        return RetryPolicy(value[0], value[1])
    raise ConfigurationError(
        f"{key}: {shown(value)}; expected RetryPolicy(min, max), a (min, max) pair or None"
    )


def retry_policy_object(key: str, value: Any) -> None:
    if value is not None and not isinstance(value, RetryPolicy):
        raise ConfigurationError(f"{key}: expected a RetryPolicy or None")
