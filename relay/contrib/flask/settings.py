"""The extension's settings: ``app.config``, flask-gcp-pubsub's names, keywords.

Four levels, lowest first; a higher level wins:

1. relay's defaults;
2. ``app.config``: the ``RELAY`` dict (relay's keys) and flask-gcp-pubsub's
   ``PUBSUB_*`` keys (``SEED_KEYS``). Both are the same level, so when both name
   one setting they must agree: different values are a ``ConfigurationError``
   naming both keys;
3. ``RELAY_*`` environment variables, as everywhere in relay;
4. ``Relay(...)`` keywords: flask-gcp-pubsub's (``project_id=``...) and
   ``settings={...}`` (relay's keys). Again one level: they must agree.

The two credentials settings count as one: credentials given at a higher level
replace both forms given below it (a ``RELAY_GC_CREDENTIALS_JSON`` secret in
production beats a ``PUBSUB_CREDENTIALS_FILE`` for development); both forms at
one level are refused, as relay refuses them anywhere.

A value is checked by relay's own rules; when it came in under a
flask-gcp-pubsub name the error says so. Credentials are never shown.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from relay.errors import ConfigurationError
from relay.redaction import shown
from relay.setting_credentials import CREDENTIALS
from relay.setting_values import coerce
from relay.settings import ENV_PREFIX, KEYS, Settings, normalise_keys

__all__ = ["SEED_KEYS", "SEED_OPTIONS", "check_options", "load_settings"]


@dataclass(frozen=True)
class SeedKey:
    """One flask-gcp-pubsub setting: its config key, its keyword, relay's setting."""

    config: str
    keyword: str
    setting: str  # a ``Settings`` field name


#: flask-gcp-pubsub's configuration, and the relay setting each one sets.
SEED_KEYS: tuple[SeedKey, ...] = (
    SeedKey("PUBSUB_PROJECT_ID", "project_id", "gc_project_id"),
    SeedKey("PUBSUB_CREDENTIALS_JSON", "gcp_credentials_json", "gc_credentials_json"),
    SeedKey("PUBSUB_CREDENTIALS_FILE", "gcp_credentials_file", "gc_credentials_path"),
    SeedKey("PUBSUB_CONCURRENT_CONSUMERS", "concurrent_consumers", "concurrency"),
    SeedKey("PUBSUB_CONCURRENT_MESSAGES", "concurrent_messages", "flow_max_messages"),
    SeedKey("PUBSUB_TOPIC_PREFIX", "topic_prefix", "topic_prefix"),
)
#: The keywords ``Relay(...)`` takes: flask-gcp-pubsub's, and ``settings``.
SEED_OPTIONS = {key.keyword: key for key in SEED_KEYS}
SEED_CONFIG = {key.config: key for key in SEED_KEYS}
#: flask-gcp-pubsub joined its topic prefix and a function's name with this.
TOPIC_PREFIX_SEPARATOR = "_"


def _seed_value(key: SeedKey, value: Any) -> Any:
    """flask-gcp-pubsub's value as relay's setting takes it (the closest meaning)."""
    if key.setting == "topic_prefix" and isinstance(value, str) and value:
        return value + TOPIC_PREFIX_SEPARATOR  # 'dev' named topics 'dev_<name>'
    return value


def _unset(value: Any) -> bool:
    # flask-gcp-pubsub read a missing key as None and an empty prefix as none.
    return value is None or value == ""


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``Relay(**options)``: flask-gcp-pubsub's keywords and ``settings={...}``.

    Returns the options; raises ``ConfigurationError`` naming an unknown one and
    what to use, or a ``settings`` that is not a mapping.
    """
    for name, value in options.items():
        if name == "settings":
            if value is not None and not isinstance(value, Mapping):
                raise ConfigurationError(
                    f"Relay(settings=...) takes a dict of relay settings like "
                    f"{{'GC_PROJECT_ID': 'my-project'}}, got {type(value).__name__}"
                )
            continue
        if name in SEED_OPTIONS:
            continue
        if name.upper() in KEYS:
            hint = (
                f"relay settings go in Relay(settings={{{name.upper()!r}: ...}}) or "
                f"app.config['RELAY']"
            )
        else:
            close = difflib.get_close_matches(name, [*SEED_OPTIONS, "settings"], n=1)
            hint = f"did you mean {close[0]}?" if close else "check the spelling"
        raise ConfigurationError(
            f"Relay() got an unknown option {shown(name)}: {hint}. It takes flask-gcp-pubsub's "
            f"{', '.join(SEED_OPTIONS)}, and settings={{...}} for any relay setting"
        )
    return dict(options)


class _Level:
    """One level of settings: relay field name -> (value, where it was given)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.origins: dict[str, str] = {}

    def set(self, name: str, value: Any, origin: str) -> None:
        if name in self.values and not _same(name, self.values[name], value, origin,
                                             self.origins[name]):
            first = self.origins[name]
            if name in CREDENTIALS:
                values = "different credentials (not shown)"
            else:
                values = f"{shown(self.values[name])} and {shown(value)}"
            raise ConfigurationError(
                f"{first} and {origin} both set relay's {name.upper()}, to {values}; "
                "keep one of them (relay does not guess which one you meant)"
            )
        self.values[name] = value
        self.origins[name] = origin

    def add_relay_dict(self, mapping: Mapping[str, Any], where: str) -> None:
        for key, value in mapping.items():
            upper = str(key).upper()
            if upper in KEYS:
                self.set(KEYS[upper], value, f"{where}[{key!r}]")
            elif upper in SEED_CONFIG:
                raise ConfigurationError(
                    f"{where} has flask-gcp-pubsub's key {shown(key)}, which goes in app.config "
                    f"itself; in {where} write relay's {SEED_CONFIG[upper].setting.upper()}"
                )
            else:
                normalise_keys({key: value}, source=where)  # raises, naming the key and a fix

    def credentials(self) -> bool:
        return any(self.values.get(name) is not None for name in CREDENTIALS)

    def drop_credentials(self) -> None:
        for name in CREDENTIALS:
            self.values.pop(name, None)
            self.origins.pop(name, None)


def _same(name: str, old: Any, new: Any, new_origin: str, old_origin: str) -> bool:
    """Whether two values of one setting mean the same, by relay's own reading."""
    if old == new:
        return True
    try:
        a, b = coerce(name, old), coerce(name, new)
    except ConfigurationError as exc:
        raise _noted(exc, {name: f"{old_origin} or {new_origin}"}) from None
    if name == "gc_credentials_json" and isinstance(a, str) and isinstance(b, str):
        try:
            return bool(json.loads(a) == json.loads(b))
        except ValueError:
            return False
    return bool(a == b)


def _noted(exc: ConfigurationError, origins: Mapping[str, str]) -> ConfigurationError:
    """``exc`` with a note for each setting it names that came in under another name."""
    text = str(exc)
    notes = [
        f"{name.upper()} is {origin} here"
        for name, origin in origins.items()
        if name.upper() in text and name.upper() not in origin
    ]
    if not notes:
        return exc
    return ConfigurationError(f"{text} ({'; '.join(notes)})")


def load_settings(
    config: Mapping[str, Any],
    options: Mapping[str, Any],
    *,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """relay's ``Settings`` from a Flask ``config`` and ``Relay(**options)`` (see the module
    docstring for the order). ``environ`` defaults to ``os.environ``."""
    env = os.environ if environ is None else environ
    configured = _Level()
    relay_dict = config.get("RELAY")
    if relay_dict is not None:
        if not isinstance(relay_dict, Mapping):
            raise ConfigurationError(
                f"app.config['RELAY'] must be a dict of relay settings like "
                f"{{'GC_PROJECT_ID': 'my-project'}}, got {type(relay_dict).__name__}"
            )
        configured.add_relay_dict(relay_dict, "app.config['RELAY']")
    for key in SEED_KEYS:
        value = config.get(key.config)
        if not _unset(value):
            configured.set(key.setting, _seed_value(key, value), f"app.config[{key.config!r}]")

    keywords = _Level()
    given = options.get("settings")
    if given:
        keywords.add_relay_dict(given, "Relay(settings=...)")
    for name, value in options.items():
        if name in SEED_OPTIONS and not _unset(value):
            key = SEED_OPTIONS[name]
            keywords.set(key.setting, _seed_value(key, value), f"Relay({name}=...)")

    # Credentials are one setting in two forms: a higher level replaces both.
    env_credentials = any(env.get(ENV_PREFIX + name.upper()) for name in CREDENTIALS)
    if keywords.credentials():
        configured.drop_credentials()
        for name in CREDENTIALS:
            keywords.values.setdefault(name, None)  # beats RELAY_GC_CREDENTIALS_* too
    elif env_credentials:
        configured.drop_credentials()

    origins = {**configured.origins, **keywords.origins}
    try:
        return Settings.load(
            configured.values, environ=env, **keywords.values
        )
    except ConfigurationError as exc:
        raise _noted(exc, origins) from None
