"""How each setting's value is parsed (from ``RELAY_*`` strings too) and checked.

``relay.settings`` holds the ``Settings`` object and where values come from;
this module holds the rules for each key: its kind, its range or choices, and
the error that names the key and the form it expects.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from relay.errors import ConfigurationError
from relay.limits import validate_name
from relay.policies import RetryPolicy
from relay.redaction import describe, holds_private_key, shown
from relay.setting_credentials import CREDENTIALS, check_credentials, coerce_credentials
from relay.subscription import check_filter

if TYPE_CHECKING:
    from relay.settings import Settings


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


_BOOL = {"1": True, "true": True, "yes": True, "on": True,
         "0": False, "false": False, "no": False, "off": False}


def parse_env(name: str, var: str, raw: str) -> Any:
    kind = _FIELD_KINDS.get(name)
    if kind is bool:
        if raw.strip().lower() not in _BOOL:
            raise ConfigurationError(f"{var}={shown(raw)}: expected true/false (or 1/0, yes/no)")
        return _BOOL[raw.strip().lower()]
    if name in ("client_options",):
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ConfigurationError(f"{var}: expected a JSON object, got {shown(raw)}") from exc
    if name == "default_retry_policy":
        return raw
    if kind is tuple:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw


#: Settings that take one of a few strings.
_CHOICES: dict[str, tuple[str, ...]] = {
    "provisioning": ("create", "verify", "off"),
    "publisher_limit_behavior": ("block", "error"),
    "log_format": ("text", "json"),
}

_FIELD_KINDS: dict[str, type] = {
    "publisher_blocking": bool,
    "dead_letter_keep": bool,
    "gc_storage_regions": tuple,
    "middleware": tuple,
    "filter_subs_by": tuple,
}


def _as_number(name: str, value: Any, kind: type, lo: float, hi: float) -> Any:
    key = name.upper()
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


_NUMBERS: dict[str, tuple[type, float, float]] = {
    "ack_deadline": (int, 10, 600),
    "publisher_timeout": (float, 0.001, 3600),
    "publisher_retry_timeout": (float, 0.1, 3600),
    "concurrency": (int, 1, 10_000),
    "flow_max_messages": (int, 1, 1_000_000),
    "flow_max_bytes": (int, 1024, 10 * 1024**3),
    "flow_max_lease_duration": (float, 10, 7 * 24 * 3600),
    "drain_timeout": (float, 0, 3600),
    "health_failure_threshold": (float, 1, 24 * 3600),
    "admin_timeout": (float, 0.1, 3600),
    "max_delivery_attempts": (int, 5, 100),
    "publisher_max_messages": (int, 1, 10_000_000),
    "publisher_max_bytes": (int, 1024, 100 * 1024**3),
    "streams_per_subscription": (int, 1, 32),
    "publisher_batch_max_messages": (int, 1, 1000),
    "publisher_batch_max_bytes": (int, 1024, 10_000_000),
    "publisher_batch_max_latency": (float, 0, 10),
}


#: Seconds settings where 0 means "the client's default": (lowest other value,
#: highest, what 0 means).
_ZERO_OR_RANGE: dict[str, tuple[int, int, str]] = {
    "flow_max_lease_extension": (10, 600, "the client's default"),
    "stream_lifetime": (5, 3600, "the client's default"),
}


def _refuse_key(name: str, value: Any) -> None:
    """A service-account key in a setting that is not for credentials: refused
    before any other check could quote it."""
    if holds_private_key(value):
        raise ConfigurationError(
            f"{name.upper()}: got {describe(value)} holding a private key (not shown); a "
            "service-account key goes in GC_CREDENTIALS_JSON (the key file's contents) or "
            "GC_CREDENTIALS_PATH (the key file's path)"
        )


def coerce(name: str, value: Any) -> Any:
    key = name.upper()
    if name in CREDENTIALS:
        return coerce_credentials(name, value)
    _refuse_key(name, value)
    if name in _NUMBERS:
        kind, lo, hi = _NUMBERS[name]
        return _as_number(name, value, kind, lo, hi)
    if name in _CHOICES:
        if value not in _CHOICES[name]:
            raise ConfigurationError(
                f"{key}: {shown(value)}; expected one of {', '.join(map(repr, _CHOICES[name]))}"
            )
        return value
    if name == "dead_letter_topic":
        if value is not None and not isinstance(value, str):
            raise ConfigurationError(
                f"{key}: expected a topic name (may use {{topic}}), got {shown(value)}"
            )
        return value or None
    if name in _FIELD_KINDS and _FIELD_KINDS[name] is bool:
        if isinstance(value, str):
            return parse_env(name, key, value)
        if not isinstance(value, bool):
            raise ConfigurationError(f"{key}: expected True or False, got {shown(value)}")
        return value
    if name in ("gc_storage_regions", "middleware", "filter_subs_by"):
        if value is None:
            return ()
        if isinstance(value, str) or (callable(value) and not isinstance(value, Sequence)):
            value = (value,)
        if not isinstance(value, Sequence):
            raise ConfigurationError(f"{key}: expected a list, got {shown(value)}")
        items = tuple(value)
        if name == "filter_subs_by":
            items = tuple(import_string(v, key) if isinstance(v, str) else v for v in items)
            for item in items:
                if not callable(item):
                    raise ConfigurationError(f"{key}: {shown(item)} is not callable")
                check_filter(item, key)
        if name == "gc_storage_regions":
            for item in items:
                if not isinstance(item, str) or not item:
                    raise ConfigurationError(f"{key}: regions are strings, got {shown(item)}")
        return items
    if name == "encoder":
        if isinstance(value, str):
            value = import_string(value, key)
        if value is not None and not callable(value):
            raise ConfigurationError(f"{key}: expected a callable or JSONEncoder class")
        return value
    if name == "default_retry_policy":
        return _coerce_retry_policy(value)
    if name == "client_options":
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ConfigurationError(f"{key}: expected a dict, got {shown(value)}")
        return dict(value)
    if name == "gc_project_id":
        if value is not None and not isinstance(value, str):
            raise ConfigurationError(f"{key}: expected a string, got {shown(value)}")
        return value or None
    if name == "results":
        return _coerce_results(value)
    if name == "results_topic":
        if not isinstance(value, str):
            raise ConfigurationError(f"RESULTS_TOPIC: expected a topic name, got {shown(value)}")
        return validate_name(value, "RESULTS_TOPIC")
    if name == "transport":
        if not isinstance(value, str) or not (
            value in ("pubsub", "grpc", "memory") or "." in value
        ):
            raise ConfigurationError(
                f"TRANSPORT: {shown(value)}; expected 'pubsub', 'memory' or a dotted path to a "
                "Transport class (or 'grpc': relay's own Pub/Sub transport)"
            )
        return value
    if name in _ZERO_OR_RANGE:
        lo, hi, zero_means = _ZERO_OR_RANGE[name]
        number = _as_number(name, value, float, 0, hi)
        if 0 < number < lo:
            raise ConfigurationError(
                f"{key}: {shown(value)}; expected 0 ({zero_means}) or {lo} to {hi} seconds"
            )
        return number
    if name == "health_port":
        if value is None or value == "":
            return None
        return _as_number(name, value, int, 0, 65535)
    if name == "health_host":
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"HEALTH_HOST: expected an address, got {shown(value)}")
        return value
    if name in ("sub_prefix", "topic_prefix"):
        if value is None:
            return ""
        if not isinstance(value, str):
            raise ConfigurationError(f"{key}: expected a string, got {shown(value)}")
        return value
    return value


def _coerce_results(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "off")):
        return None
    if not isinstance(value, str) or not (value in ("pubsub", "memory") or "." in value):
        raise ConfigurationError(
            f"RESULTS: {shown(value)}; expected None (no results), 'pubsub' (replies on "
            "Pub/Sub), 'memory' (in-process, for tests) or a dotted path to a "
            "relay.results.ResultBackend class"
        )
    return value


def _coerce_retry_policy(value: Any) -> RetryPolicy | None:
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
                f"DEFAULT_RETRY_POLICY: {shown(value)}; expected 'MIN,MAX' seconds, e.g. '10,600', "
                "or 'none'"
            ) from None
        return RetryPolicy(low, high)
    if isinstance(value, Mapping):
        try:
            return RetryPolicy(**value)
        except TypeError as exc:
            raise ConfigurationError(
                f"DEFAULT_RETRY_POLICY: {shown(dict(value))}; expected keys minimum_backoff and "
                "maximum_backoff"
            ) from exc
    if isinstance(value, Sequence) and len(value) == 2:
        return RetryPolicy(value[0], value[1])
    raise ConfigurationError(
        f"DEFAULT_RETRY_POLICY: {shown(value)}; expected RetryPolicy(min, max), a (min, max) pair "
        "or None"
    )


def validate(s: Settings) -> None:
    """Checks that need the whole object (the constructor path skips _coerce)."""
    for name, (kind, lo, hi) in _NUMBERS.items():
        _as_number(name, getattr(s, name), kind, lo, hi)
    check_credentials(s)
    for f in dataclasses.fields(s):
        if f.name not in CREDENTIALS:
            _refuse_key(f.name, getattr(s, f.name))
    for name, kind in _FIELD_KINDS.items():
        if kind is bool and not isinstance(getattr(s, name), bool):
            raise ConfigurationError(
                f"{name.upper()}: expected True or False, got {shown(getattr(s, name))}"
            )
    for name, choices in _CHOICES.items():
        if getattr(s, name) not in choices:
            raise ConfigurationError(
                f"{name.upper()}: {shown(getattr(s, name))}; expected one of "
                f"{', '.join(map(repr, choices))}"
            )
    if s.results is not None:
        _coerce_results(s.results)
    validate_name(s.results_topic, "RESULTS_TOPIC")
    if s.default_retry_policy is not None and not isinstance(s.default_retry_policy, RetryPolicy):
        raise ConfigurationError("DEFAULT_RETRY_POLICY: expected a RetryPolicy or None")

