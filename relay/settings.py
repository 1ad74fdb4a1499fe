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
and what it expects; ``load`` reports every problem it finds at once, one a line.
Each setting is declared once, in ``relay.setting_specs``.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from relay.errors import ConfigurationError
from relay.policies import RetryPolicy
from relay.redaction import redact, shown
from relay.setting_specs import FIELDS, SECRETS, SPECS, coerce, parse_env, raise_all, validate
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

    # Each setting's default, rule, environment form and description are declared
    # once, in relay.setting_specs (docs/settings.md has the table made from them).
    gc_project_id: str | None = FIELDS["gc_project_id"]
    gc_credentials_path: str | None = FIELDS["gc_credentials_path"]
    gc_credentials_json: str | None = FIELDS["gc_credentials_json"]
    gc_storage_regions: tuple[str, ...] = FIELDS["gc_storage_regions"]
    sub_prefix: str = FIELDS["sub_prefix"]
    topic_prefix: str = FIELDS["topic_prefix"]
    middleware: tuple[Any, ...] = FIELDS["middleware"]
    ack_deadline: int = FIELDS["ack_deadline"]
    publisher_blocking: bool = FIELDS["publisher_blocking"]
    publisher_timeout: float = FIELDS["publisher_timeout"]
    publisher_retry_timeout: float = FIELDS["publisher_retry_timeout"]
    encoder: Callable[[Any], Any] | None = FIELDS["encoder"]
    filter_subs_by: tuple[Callable[..., bool], ...] = FIELDS["filter_subs_by"]
    default_retry_policy: RetryPolicy | None = FIELDS["default_retry_policy"]
    client_options: Mapping[str, Any] = FIELDS["client_options"]
    concurrency: int = FIELDS["concurrency"]
    flow_max_messages: int = FIELDS["flow_max_messages"]
    flow_max_bytes: int = FIELDS["flow_max_bytes"]
    flow_max_lease_duration: float = FIELDS["flow_max_lease_duration"]
    flow_max_lease_extension: float = FIELDS["flow_max_lease_extension"]
    stream_lifetime: float = FIELDS["stream_lifetime"]
    streams_per_subscription: int = FIELDS["streams_per_subscription"]
    publisher_batch_max_messages: int = FIELDS["publisher_batch_max_messages"]
    publisher_batch_max_bytes: int = FIELDS["publisher_batch_max_bytes"]
    publisher_batch_max_latency: float = FIELDS["publisher_batch_max_latency"]
    drain_timeout: float = FIELDS["drain_timeout"]
    transport: str = FIELDS["transport"]
    provisioning: str = FIELDS["provisioning"]
    admin_timeout: float = FIELDS["admin_timeout"]
    dead_letter_topic: str | None = FIELDS["dead_letter_topic"]
    max_delivery_attempts: int = FIELDS["max_delivery_attempts"]
    dead_letter_keep: bool = FIELDS["dead_letter_keep"]
    publisher_max_messages: int = FIELDS["publisher_max_messages"]
    publisher_max_bytes: int = FIELDS["publisher_max_bytes"]
    publisher_limit_behavior: str = FIELDS["publisher_limit_behavior"]
    health_port: int | None = FIELDS["health_port"]
    health_host: str = FIELDS["health_host"]
    health_failure_threshold: float = FIELDS["health_failure_threshold"]
    log_format: str = FIELDS["log_format"]
    results: str | None = FIELDS["results"]
    results_topic: str = FIELDS["results_topic"]
    push_auth: str = FIELDS["push_auth"]
    push_audience: str | None = FIELDS["push_audience"]
    push_service_account: str | None = FIELDS["push_service_account"]
    push_certs_url: str = FIELDS["push_certs_url"]

    # ----------------------------------------------------------------- loading
    @classmethod
    def load(
        cls,
        mapping: Mapping[str, Any] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Defaults <- ``mapping`` <- ``RELAY_*`` environment <- keyword overrides.

        Every problem is reported at once: one ``ConfigurationError`` with a line
        for each unknown key and each bad value (a ``SettingsError`` when there
        are several)."""
        errors: list[ConfigurationError] = []
        values: dict[str, Any] = {}
        if mapping:
            values.update(_normalise(mapping, "settings mapping", errors))
        env = os.environ if environ is None else environ
        values.update(_from_environ(env, errors))
        if overrides:
            values.update(_normalise(overrides, "keyword arguments", errors))
        try:  # the constructor checks the credentials, from whatever was given
            built = cls(**_coerce_all(values, errors))
        except ConfigurationError as exc:
            errors.append(exc)
        raise_all(errors)  # raises if built is unbound
        return built

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
        """Every setting but the secrets (the credentials): those show only whether
        they are set."""
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in SECRETS and value is not None:
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
        errors: list[ConfigurationError] = []
        coerced = _coerce_all(_normalise(changes, "replace()", errors), errors)
        raise_all(errors)
        return dataclasses.replace(self, **coerced)


KEYS: dict[str, str] = {spec.key: spec.name for spec in SPECS.values()}


def _read(path: str | None) -> str | None:
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError:
        return None


def normalise_keys(mapping: Mapping[str, Any], *, source: str) -> dict[str, Any]:
    """``mapping`` by field name; an error naming every unknown key in it."""
    errors: list[ConfigurationError] = []
    out = _normalise(mapping, source, errors)
    raise_all(errors)
    return out


def _normalise(
    mapping: Mapping[str, Any], source: str, errors: list[ConfigurationError]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        upper = str(key).upper()
        if upper in KEYS:
            out[KEYS[upper]] = value
        elif upper in RENAMED_KEYS:
            errors.append(ConfigurationError(
                f"unknown setting {shown(key)} in {source}: relay replaces it with "
                f"{RENAMED_KEYS[upper]}"
            ))
        else:
            close = [k for k in KEYS if upper[:6] and k.startswith(upper[:6])]
            hint = f" (did you mean {close[0]}?)" if close else ""
            errors.append(ConfigurationError(
                f"unknown setting {shown(key)} in {source}{hint}; known settings: "
                f"{', '.join(sorted(KEYS))}"
            ))
    return out


def _coerce_all(values: Mapping[str, Any], errors: list[ConfigurationError]) -> dict[str, Any]:
    """The values each setting stores; an error in ``errors`` for each it refuses."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        try:
            out[name] = coerce(name, value)
        except ConfigurationError as exc:
            errors.append(exc)
    return out


#: ``RELAY_*`` variables that are not settings: the settings module to load, and
#: the emulator launcher ``relay.emulator`` uses.
_NOT_SETTINGS = frozenset({"RELAY_SETTINGS", "RELAY_EMULATOR", "RELAY_EMULATOR_BIN"})


def _from_environ(environ: Mapping[str, str], errors: list[ConfigurationError]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for var, raw in environ.items():
        if not var.startswith(ENV_PREFIX) or var in _NOT_SETTINGS:
            continue
        key = var[len(ENV_PREFIX) :]
        if key not in KEYS:
            errors.append(ConfigurationError(
                f"unknown environment variable {shown(var)}: relay reads RELAY_<KEY> for KEY in "
                f"{', '.join(sorted(KEYS))} (and RELAY_SETTINGS for a settings module)"
            ))
            continue
        try:
            out[KEYS[key]] = parse_env(KEYS[key], var, raw)
        except ConfigurationError as exc:
            errors.append(exc)
    return out
