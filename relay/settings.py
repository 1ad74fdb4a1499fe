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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from relay.errors import ConfigurationError
from relay.policies import RetryPolicy
from relay.redaction import redact, shown
from relay.setting_credentials import CREDENTIALS
from relay.setting_values import coerce, parse_env, validate
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


@dataclass(frozen=True)
class Settings:
    """relay's configuration. Build it with ``Settings.load`` (or the constructor)."""

    #: Google Cloud project that owns the topics and subscriptions.
    gc_project_id: str | None = None
    #: Path to a service-account key file, checked when the settings are built
    #: (unless PUBSUB_EMULATOR_HOST is set: then it is not used, nor opened).
    #: None (and no JSON below): Application Default Credentials.
    gc_credentials_path: str | None = None
    #: The service-account key itself, as JSON (for secrets in env vars); a dict
    #: given to ``load`` is stored as its JSON. Never shown in repr or errors.
    gc_credentials_json: str | None = None
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
    #: Longest single lease extension (10..600 s); 0: the subscription's ack
    #: deadline. It is also how soon Pub/Sub redelivers what a crashed worker held.
    flow_max_lease_extension: float = 0.0
    #: Seconds each streaming pull lives before google's client reopens it (0,
    #: or 5 to 3600). 0: google-cloud-pubsub's own deadline (30 min), on the
    #: emulator too. A short one bounds how long the emulator serves the stream
    #: of a killed or cut-off worker, but each reopen there can leave a few
    #: messages to wait out their ack deadline: set it only for runs that kill
    #: or cut off workers (the fault tests set 15).
    stream_lifetime: float = 0.0
    #: Streaming pulls per subscription (1..32), sharing its flow control;
    #: TRANSPORT="grpc" only (google's client opens one).
    streams_per_subscription: int = 1
    #: Publish batches (TRANSPORT="grpc" only; google's client has these
    #: defaults built in): sent at this many messages, bytes, or seconds after
    #: the first message, whichever comes first.
    publisher_batch_max_messages: int = 100
    publisher_batch_max_bytes: int = 1_000_000
    publisher_batch_max_latency: float = 0.01
    #: Seconds stop() waits for in-flight handlers before it gives up on them.
    drain_timeout: float = 30.0
    #: Which transport to use: "pubsub", "grpc" (relay's own Pub/Sub client),
    #: "memory", or a dotted path to a class.
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
    #: Where task outcomes go (``relay.results``): None (off: the worker does no
    #: result work), "pubsub" (replies on RESULTS_TOPIC), "memory" (in-process,
    #: for tests) or a dotted path to a ``ResultBackend`` class, built as cls(settings).
    results: str | None = None
    #: The topic task outcomes are published to with RESULTS="pubsub" (TOPIC_PREFIX applied).
    results_topic: str = "relay-results"

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
            values.update(normalise_keys(mapping, source="settings mapping"))
        env = os.environ if environ is None else environ
        values.update(_from_environ(env))
        if overrides:
            values.update(normalise_keys(overrides, source="keyword arguments"))
        return cls(**{name: coerce(name, value) for name, value in values.items()})

    @classmethod
    def from_object(cls, obj: Any, *, name: str = "RELAY", **kwargs: Any) -> Settings:
        """From a Django settings object or Flask config holding a ``RELAY`` dict."""
        mapping = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
        if mapping is None:
            # Not the object's repr: a Flask config or Django settings holds secrets.
            what = getattr(obj, "__name__", None) or f"the {type(obj).__name__}"
            raise ConfigurationError(f"{what} has no {name!r} setting; define {name} = {{...}}")
        if not isinstance(mapping, Mapping):
            raise ConfigurationError(
                f"{name} must be a dict of settings, got {type(mapping).__name__}"
            )
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
        validate(self)

    def __repr__(self) -> str:
        """Every setting but the credentials: those show only whether they are set."""
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in CREDENTIALS and value is not None:
                parts.append(f"{f.name}=<set, not shown>")
            else:
                parts.append(f"{f.name}={value!r}")
        return redact(f"Settings({', '.join(parts)})")

    # ----------------------------------------------------------------- helpers
    @property
    def emulator_host(self) -> str | None:
        """``PUBSUB_EMULATOR_HOST`` if set: then no credentials are used at all."""
        return os.environ.get("PUBSUB_EMULATOR_HOST") or None

    @property
    def effective_stream_lifetime(self) -> float | None:
        """The deadline relay puts on each streaming pull; None (``STREAM_LIFETIME``
        0): google-cloud-pubsub's own, against Pub/Sub and the emulator alike."""
        return self.stream_lifetime or None

    @property
    def flow_control(self) -> FlowControl:
        return FlowControl(
            max_messages=self.flow_max_messages,
            max_bytes=self.flow_max_bytes,
            max_lease_duration=self.flow_max_lease_duration,
            max_lease_extension=self.flow_max_lease_extension,
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
        normalised = normalise_keys(changes, source="replace()")
        coerced = {k: coerce(k, v) for k, v in normalised.items()}
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


def normalise_keys(mapping: Mapping[str, Any], *, source: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        upper = str(key).upper()
        if upper in KEYS:
            out[KEYS[upper]] = value
            continue
        if upper in RENAMED_KEYS:
            raise ConfigurationError(
                f"unknown setting {shown(key)} in {source}: relay replaces it with "
                f"{RENAMED_KEYS[upper]}"
            )
        close = [k for k in KEYS if upper[:6] and k.startswith(upper[:6])]
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigurationError(
            f"unknown setting {shown(key)} in {source}{hint}; known settings: "
            f"{', '.join(sorted(KEYS))}"
        )
    return out


#: ``RELAY_*`` variables that are not settings: the settings module to load, and
#: the emulator launcher ``relay.emulator`` uses.
_NOT_SETTINGS = frozenset({"RELAY_SETTINGS", "RELAY_EMULATOR", "RELAY_EMULATOR_BIN"})


def _from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for var, raw in environ.items():
        if not var.startswith(ENV_PREFIX) or var in _NOT_SETTINGS:
            continue
        key = var[len(ENV_PREFIX) :]
        if key not in KEYS:
            raise ConfigurationError(
                f"unknown environment variable {shown(var)}: relay reads RELAY_<KEY> for KEY in "
                f"{', '.join(sorted(KEYS))} (and RELAY_SETTINGS for a settings module)"
            )
        out[KEYS[key]] = parse_env(KEYS[key], var, raw)
    return out
