"""One frozen ``Settings`` object, validated key by key when it is loaded.

Sources, lowest precedence first:

1. defaults (below);
2. a mapping: ``RELAY = {...}`` in a settings module, a Django settings object
   or a Flask ``app.config`` (``Settings.from_object``), or a plain dict;
3. environment variables ``RELAY_<KEY>`` (``RELAY_GC_PROJECT_ID=my-proj``);
4. keyword arguments to ``Settings.load(...)``.

Keys are the upper-case names in ``KEYS`` (Relé's names where relay has the same
setting, so a Relé ``RELE`` dict mostly carries over by renaming it). An unknown
key, or a value of the wrong form, raises ``ConfigurationError`` naming the key
and what it expects.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from relay.errors import ConfigurationError
from relay.subscription import RetryPolicy, check_filter
from relay.transports.base import FlowControl

ENV_PREFIX = "RELAY_"

#: Relé settings keys that relay names differently, with the replacement.
RENAMED_KEYS = {
    "THREADS_PER_SUBSCRIPTION": (
        "CONCURRENCY (relay runs every subscription on one shared, bounded executor)"
    ),
    "GC_STORAGE_REGION": "GC_STORAGE_REGIONS (a list of regions)",
    "USE_EMULATOR": (
        "PUBSUB_EMULATOR_HOST in the environment (relay uses the emulator whenever it is set)"
    ),
    "DJANGO_SETTINGS_MODULE": "nothing: relay reads Django settings through Settings.from_object",
    "ENCODER_PATH": "ENCODER (a dotted path or a callable)",
    "APP_NAME": "SUB_PREFIX (the default subscription-name prefix)",
}


def _import_string(path: str, key: str) -> Any:
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise ConfigurationError(f"{key}: {path!r} is not a dotted path like 'package.module.Name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"{key}: cannot import module {module_name!r} ({exc})") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigurationError(f"{key}: module {module_name!r} has no {attr!r}") from None


@dataclass(frozen=True)
class Settings:
    """relay's configuration. Build it with ``Settings.load`` (or the constructor)."""

    #: Google Cloud project that owns the topics and subscriptions.
    gc_project_id: str | None = None
    #: Path to a service-account JSON file. None (and no JSON below): Application
    #: Default Credentials. Ignored when PUBSUB_EMULATOR_HOST is set.
    gc_credentials_path: str | None = None
    #: The service-account JSON itself, as a string (for secrets in env vars).
    gc_credentials_json: str | None = field(default=None, repr=False)
    #: Regions where Pub/Sub may store messages of topics relay creates.
    gc_storage_regions: tuple[str, ...] = ()
    #: Default subscription-name prefix when @sub gives none.
    sub_prefix: str = ""
    #: Prefix for every topic name, on publish and on subscribe (feature branches).
    topic_prefix: str = ""
    #: Middleware classes (dotted paths or classes) or instances, outermost first.
    middleware: tuple[Any, ...] = ("relay.contrib.logging_middleware.LoggingMiddleware",)
    #: Default ack deadline, in seconds (10..600), for subscriptions relay manages.
    ack_deadline: int = 60
    #: Wait for every publish to be confirmed by default.
    publisher_blocking: bool = False
    #: Seconds a blocking publish waits before it fails.
    publisher_timeout: float = 3.0
    #: Seconds the transport keeps retrying one publish (unreachable endpoint,
    #: transient errors) before its future fails and post_publish_failure fires.
    publisher_retry_timeout: float = 60.0
    #: Fallback JSON encoder for types relay does not know: a callable
    #: ``obj -> JSON-able`` or a ``json.JSONEncoder`` subclass (Relé's form).
    encoder: Callable[[Any], Any] | None = None
    #: Global filter(s) every subscription applies, each called with **attributes.
    filter_subs_by: tuple[Callable[..., bool], ...] = ()
    #: Server-side retry policy for subscriptions that declare none.
    default_retry_policy: RetryPolicy | None = field(default_factory=RetryPolicy)
    #: Passed to the Google clients (e.g. {"api_endpoint": "..."}).
    client_options: Mapping[str, Any] = field(default_factory=dict)
    #: Handlers running at once, across all subscriptions (sync and async each).
    concurrency: int = 16
    #: Per-subscription flow control: messages and bytes outstanding, lease cap.
    flow_max_messages: int = 100
    flow_max_bytes: int = 100 * 1024 * 1024
    flow_max_lease_duration: float = 3600.0
    #: Seconds stop() waits for in-flight handlers before it gives up on them.
    drain_timeout: float = 30.0
    #: Which transport to use: "pubsub", "memory", or a dotted path to a class.
    transport: str = "pubsub"
    #: What the worker does to topics and subscriptions at start: "create"
    #: (create, and update to match the code), "verify" (read-only: fail if
    #: anything is missing or differs) or "off" (no admin calls at all).
    provisioning: str = "create"
    #: Seconds a provisioning call (create/get/update), retries included, may take.
    admin_timeout: float = 60.0
    #: Dead-letter topic for subscriptions that declare none; may use {topic}
    #: and {subscription}, e.g. "{topic}-dead-letter". None: no dead-lettering.
    dead_letter_topic: str | None = None
    #: Deliveries before a message goes to the dead-letter topic (5..100).
    max_delivery_attempts: int = 5
    #: Create a subscription on each dead-letter topic so dead letters are kept.
    dead_letter_keep: bool = True
    #: Publisher back-pressure: messages and bytes published but not yet
    #: confirmed, at most; and what publish() does at the limit: "block" (wait
    #: for room, up to PUBLISHER_RETRY_TIMEOUT) or "error" (raise PublishError).
    publisher_max_messages: int = 1000
    publisher_max_bytes: int = 100 * 1024 * 1024
    publisher_limit_behavior: str = "block"
    #: Port for the worker's /livez and /readyz HTTP probes; None: no server.
    health_port: int | None = None
    #: Address the probe server binds (loopback unless you say otherwise).
    health_host: str = "127.0.0.1"
    #: Seconds a stream may stay failed or disconnected before /livez fails.
    health_failure_threshold: float = 120.0
    #: Log output of relay-cli: "text" (human-readable) or "json" (one object per line).
    log_format: str = "text"

    # ----------------------------------------------------------------- loading
    @classmethod
    def load(
        cls,
        mapping: Mapping[str, Any] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Defaults <- ``mapping`` <- ``RELAY_*`` environment <- keyword overrides."""
        values: dict[str, Any] = {}
        if mapping:
            values.update(_normalise_keys(mapping, source="settings mapping"))
        env = os.environ if environ is None else environ
        values.update(_from_environ(env))
        if overrides:
            values.update(_normalise_keys(overrides, source="keyword arguments"))
        return cls(**{name: _coerce(name, value) for name, value in values.items()})

    @classmethod
    def from_object(cls, obj: Any, *, name: str = "RELAY", **kwargs: Any) -> Settings:
        """From a Django settings object or Flask config holding a ``RELAY`` dict."""
        mapping = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
        if mapping is None:
            raise ConfigurationError(f"{obj!r} has no {name!r} setting; define {name} = {{...}}")
        if not isinstance(mapping, Mapping):
            raise ConfigurationError(f"{name} must be a dict of settings, got {type(mapping)}")
        return cls.load(mapping, **kwargs)

    @classmethod
    def from_module(cls, module_name: str, **kwargs: Any) -> Settings:
        """Import ``module_name`` and read its ``RELAY`` dict."""
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigurationError(
                f"cannot import settings module {module_name!r} ({exc}); pass a module path "
                "importable from the current directory, like 'myapp.settings'"
            ) from exc
        return cls.from_object(module, **kwargs)

    def __post_init__(self) -> None:
        _validate(self)

    # ----------------------------------------------------------------- helpers
    @property
    def emulator_host(self) -> str | None:
        """``PUBSUB_EMULATOR_HOST`` if set: then no credentials are used at all."""
        return os.environ.get("PUBSUB_EMULATOR_HOST") or None

    @property
    def flow_control(self) -> FlowControl:
        return FlowControl(
            max_messages=self.flow_max_messages,
            max_bytes=self.flow_max_bytes,
            max_lease_duration=self.flow_max_lease_duration,
        )

    def project_id(self) -> str:
        """The project id, from the setting, the credentials file or the environment."""
        if self.gc_project_id:
            return self.gc_project_id
        for var in ("GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "PUBSUB_PROJECT_ID"):
            if os.environ.get(var):
                return os.environ[var]
        for blob in (self.gc_credentials_json, _read(self.gc_credentials_path)):
            if blob:
                try:
                    pid = json.loads(blob).get("project_id")
                except (ValueError, AttributeError):
                    pid = None
                if pid:
                    return str(pid)
        raise ConfigurationError(
            "GC_PROJECT_ID is not set: set RELAY = {'GC_PROJECT_ID': 'my-project'}, "
            "RELAY_GC_PROJECT_ID, or GOOGLE_CLOUD_PROJECT"
        )

    def replace(self, **changes: Any) -> Settings:
        """A copy with some settings changed (lower-case field names or KEYS)."""
        normalised = _normalise_keys(changes, source="replace()")
        coerced = {k: _coerce(k, v) for k, v in normalised.items()}
        return dataclasses.replace(self, **coerced)


KEYS: dict[str, str] = {f.name.upper(): f.name for f in dataclasses.fields(Settings)}


def _read(path: str | None) -> str | None:
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError:
        return None


def _normalise_keys(mapping: Mapping[str, Any], *, source: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        upper = str(key).upper()
        if upper in KEYS:
            out[KEYS[upper]] = value
            continue
        if upper in RENAMED_KEYS:
            raise ConfigurationError(
                f"unknown setting {key!r} in {source}: relay replaces it with {RENAMED_KEYS[upper]}"
            )
        close = [k for k in KEYS if upper[:6] and k.startswith(upper[:6])]
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigurationError(
            f"unknown setting {key!r} in {source}{hint}; known settings: "
            f"{', '.join(sorted(KEYS))}"
        )
    return out


#: ``RELAY_*`` variables that are not settings: the settings module to load, and
#: the emulator launcher ``relay.emulator`` uses.
_NOT_SETTINGS = frozenset({"RELAY_SETTINGS", "RELAY_EMULATOR_BIN"})


def _from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for var, raw in environ.items():
        if not var.startswith(ENV_PREFIX) or var in _NOT_SETTINGS:
            continue
        key = var[len(ENV_PREFIX) :]
        if key not in KEYS:
            raise ConfigurationError(
                f"unknown environment variable {var!r}: relay reads RELAY_<KEY> for KEY in "
                f"{', '.join(sorted(KEYS))} (and RELAY_SETTINGS for a settings module)"
            )
        out[KEYS[key]] = _parse_env(KEYS[key], var, raw)
    return out


_BOOL = {"1": True, "true": True, "yes": True, "on": True,
         "0": False, "false": False, "no": False, "off": False}


def _parse_env(name: str, var: str, raw: str) -> Any:
    kind = _FIELD_KINDS.get(name)
    if kind is bool:
        if raw.strip().lower() not in _BOOL:
            raise ConfigurationError(f"{var}={raw!r}: expected true/false (or 1/0, yes/no)")
        return _BOOL[raw.strip().lower()]
    if name in ("client_options",):
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ConfigurationError(f"{var}: expected a JSON object, got {raw!r}") from exc
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
        raise ConfigurationError(f"{key}: expected a number, got {value!r}")
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{key}: expected a number, got {value!r}") from None
    if kind is int and isinstance(value, float) and value != int(value):
        raise ConfigurationError(f"{key}: expected a whole number, got {value!r}")
    if not lo <= number <= hi:
        raise ConfigurationError(f"{key}: {value!r} is out of range; expected {lo} to {hi}")
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
}


def _coerce(name: str, value: Any) -> Any:
    key = name.upper()
    if name in _NUMBERS:
        kind, lo, hi = _NUMBERS[name]
        return _as_number(name, value, kind, lo, hi)
    if name in _CHOICES:
        if value not in _CHOICES[name]:
            raise ConfigurationError(
                f"{key}: {value!r}; expected one of {', '.join(map(repr, _CHOICES[name]))}"
            )
        return value
    if name == "dead_letter_topic":
        if value is not None and not isinstance(value, str):
            raise ConfigurationError(
                f"{key}: expected a topic name (may use {{topic}}), got {value!r}"
            )
        return value or None
    if name in _FIELD_KINDS and _FIELD_KINDS[name] is bool:
        if isinstance(value, str):
            return _parse_env(name, key, value)
        if not isinstance(value, bool):
            raise ConfigurationError(f"{key}: expected True or False, got {value!r}")
        return value
    if name in ("gc_storage_regions", "middleware", "filter_subs_by"):
        if value is None:
            return ()
        if isinstance(value, str) or (callable(value) and not isinstance(value, Sequence)):
            value = (value,)
        if not isinstance(value, Sequence):
            raise ConfigurationError(f"{key}: expected a list, got {value!r}")
        items = tuple(value)
        if name == "filter_subs_by":
            items = tuple(_import_string(v, key) if isinstance(v, str) else v for v in items)
            for item in items:
                if not callable(item):
                    raise ConfigurationError(f"{key}: {item!r} is not callable")
                check_filter(item, key)
        if name == "gc_storage_regions":
            for item in items:
                if not isinstance(item, str) or not item:
                    raise ConfigurationError(f"{key}: regions are strings, got {item!r}")
        return items
    if name == "encoder":
        if isinstance(value, str):
            value = _import_string(value, key)
        if value is not None and not callable(value):
            raise ConfigurationError(f"{key}: expected a callable or JSONEncoder class")
        return value
    if name == "default_retry_policy":
        return _coerce_retry_policy(value)
    if name == "client_options":
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ConfigurationError(f"{key}: expected a dict, got {value!r}")
        return dict(value)
    if name in ("gc_project_id", "gc_credentials_path", "gc_credentials_json"):
        if value is not None and not isinstance(value, str):
            raise ConfigurationError(f"{key}: expected a string, got {value!r}")
        return value or None
    if name == "transport":
        if not isinstance(value, str) or not (value in ("pubsub", "memory") or "." in value):
            raise ConfigurationError(
                f"TRANSPORT: {value!r}; expected 'pubsub', 'memory' or a dotted path to a "
                "Transport class"
            )
        return value
    if name == "health_port":
        if value is None or value == "":
            return None
        return _as_number(name, value, int, 0, 65535)
    if name == "health_host":
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"HEALTH_HOST: expected an address, got {value!r}")
        return value
    if name in ("sub_prefix", "topic_prefix"):
        if value is None:
            return ""
        if not isinstance(value, str):
            raise ConfigurationError(f"{key}: expected a string, got {value!r}")
        return value
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
                f"DEFAULT_RETRY_POLICY: {value!r}; expected 'MIN,MAX' seconds, e.g. '10,600', "
                "or 'none'"
            ) from None
        return RetryPolicy(low, high)
    if isinstance(value, Mapping):
        try:
            return RetryPolicy(**value)
        except TypeError as exc:
            raise ConfigurationError(
                f"DEFAULT_RETRY_POLICY: {dict(value)!r}; expected keys minimum_backoff and "
                "maximum_backoff"
            ) from exc
    if isinstance(value, Sequence) and len(value) == 2:
        return RetryPolicy(value[0], value[1])
    raise ConfigurationError(
        f"DEFAULT_RETRY_POLICY: {value!r}; expected RetryPolicy(min, max), a (min, max) pair "
        "or None"
    )


def _validate(s: Settings) -> None:
    """Checks that need the whole object (the constructor path skips _coerce)."""
    for name, (kind, lo, hi) in _NUMBERS.items():
        _as_number(name, getattr(s, name), kind, lo, hi)
    if s.gc_credentials_path and s.gc_credentials_json:
        raise ConfigurationError(
            "GC_CREDENTIALS_PATH and GC_CREDENTIALS_JSON are both set; keep one"
        )
    if s.gc_credentials_json:
        try:
            info = json.loads(s.gc_credentials_json)
        except ValueError:
            raise ConfigurationError(
                "GC_CREDENTIALS_JSON is not valid JSON; paste the service-account key file's "
                "contents, or use GC_CREDENTIALS_PATH for its path"
            ) from None
        if not isinstance(info, dict):
            raise ConfigurationError("GC_CREDENTIALS_JSON must be a JSON object (a key file)")
    for name, choices in _CHOICES.items():
        if getattr(s, name) not in choices:
            raise ConfigurationError(
                f"{name.upper()}: {getattr(s, name)!r}; expected one of "
                f"{', '.join(map(repr, choices))}"
            )
    if s.default_retry_policy is not None and not isinstance(s.default_retry_policy, RetryPolicy):
        raise ConfigurationError("DEFAULT_RETRY_POLICY: expected a RetryPolicy or None")
