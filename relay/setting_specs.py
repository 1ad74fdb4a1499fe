"""Every setting, declared once.

Each ``Setting`` gives a key's type, default, rule (range, choices or
conversion: ``relay.setting_values``), environment form, one-line description
and whether it is a secret. From these come ``Settings``' defaults, what
``Settings.load`` converts and checks, how ``RELAY_<KEY>`` is parsed, what
``repr(settings)`` hides, and the reference tables in docs/settings.md
(``python -m relay.setting_docs --write docs/settings.md`` regenerates them).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from relay.errors import ConfigurationError
from relay.policies import MAX_DELIVERY_ATTEMPTS, MIN_DELIVERY_ATTEMPTS, RetryPolicy
from relay.redaction import redact, shown
from relay.setting_credentials import check_credentials, coerce_credentials
from relay.setting_values import (
    BOOL,
    DECIMAL,
    DOTTED,
    JSON,
    LIST,
    RETRY,
    TEXT,
    WHOLE,
    Choice,
    Custom,
    EnvForm,
    Flag,
    Items,
    Number,
    Rule,
    Text,
    a_filter,
    client_options,
    encoder,
    refuse_key,
    region,
    results,
    retry_policy,
    retry_policy_object,
    transport,
)

if TYPE_CHECKING:
    from relay.settings import Settings


@dataclass(frozen=True)
class Setting:
    """One setting: ``name`` is its field name; its key is ``name.upper()``."""

    name: str
    type: str  # as docs/settings.md shows it
    default: Any
    rule: Rule
    env: EnvForm
    description: str  # one line, for the docs table
    secret: bool = False  # never shown: not in repr, not in any error
    default_text: str = ""  # the docs' Default column, when repr(default) is not it

    @property
    def key(self) -> str:
        return self.name.upper()

    def coerce(self, value: Any) -> Any:
        """What the setting stores for ``value`` given to ``Settings.load``."""
        if not self.secret:
            refuse_key(self.key, value)
        return self.rule.coerce(self.key, value)

    def check(self, value: Any) -> None:
        """The constructor's check of a value it stores as given."""
        if not self.secret:
            refuse_key(self.key, value)
        self.rule.check(self.key, value)

    def field(self) -> Any:
        """The ``Settings`` field with this default."""
        value = self.default
        if type(value).__hash__ is None:  # a dict: each Settings gets its own copy
            return dataclasses.field(default_factory=lambda: copy.copy(value))
        return dataclasses.field(default=value)


def _credential(key: str, value: Any) -> Any:
    return coerce_credentials(key.lower(), value)


def _whole_object(key: str, value: Any) -> None:
    """The credentials are checked together, by ``check_credentials``."""


#: Google's OAuth2 certificates: ``relay.push.auth.GOOGLE_CERTS_URL`` (not imported:
#: that module imports google-auth, which loading the settings does not need).
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
_LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


def _email(key: str, value: Any) -> str | None:
    """None (or empty), or one ``name@domain`` address."""
    if value is None or value == "":
        return None
    if (not isinstance(value, str) or value.count("@") != 1 or value.startswith("@")
            or value.endswith("@") or any(c.isspace() for c in value)):
        raise ConfigurationError(
            f"{key}: expected a service account's email, like "
            f"'pusher@my-project.iam.gserviceaccount.com', got {shown(value)}"
        )
    return value


def _certs_url(key: str, value: Any) -> str:
    """An https URL; plain http only on this machine (a test's local certificate set)."""
    if isinstance(value, str) and value.startswith("https://") and len(value) > 8:
        return value
    if isinstance(value, str) and value.startswith("http://"):
        host = value[len("http://"):].split("/", 1)[0].rsplit(":", 1)[0]
        if host in _LOOPBACK:
            return value
    raise ConfigurationError(
        f"{key}: expected an https:// URL serving Google's token-signing certificates "
        f"(plain http:// only for 127.0.0.1, localhost or [::1]), got {shown(value)}"
    )


_KEY = "`client_email`, `private_key` and `token_uri`"
_SECONDS = "float (s)"
_GRPC = '`TRANSPORT="grpc"` only'

SETTINGS: tuple[Setting, ...] = (
    Setting("gc_project_id", "str or None", None, Text(empty=None, note="a project id"), TEXT,
            "the project that owns the topics and subscriptions; see [Project id](#project-id)"),
    Setting("gc_credentials_path", "str or `pathlib.Path` or None", None,
            Custom(_credential, "the path of a readable service-account key file (JSON)",
                   _whole_object), TEXT,
            "path to a service-account key file, read and checked when the settings are built "
            "(unless `PUBSUB_EMULATOR_HOST` is set); see [Credentials](#credentials)",
            secret=True),
    Setting("gc_credentials_json", "str, dict or None", None,
            Custom(_credential, f"a service-account key: a JSON object with {_KEY}",
                   _whole_object), TEXT,
            "the key file's contents: a JSON object string, or the dict `json.load` gives "
            "(stored as its JSON)", secret=True),
    Setting("gc_storage_regions", "list of str", (),
            Items(region, "region names, e.g. `europe-west1`"), LIST,
            "regions where Pub/Sub may store messages of topics relay creates; empty: Pub/Sub's "
            "default policy", default_text="`[]`"),
    Setting("sub_prefix", "str", "", Text(empty=""), TEXT,
            "subscription-name prefix for `@sub`s that give no `prefix`"),
    Setting("topic_prefix", "str", "", Text(empty=""), TEXT,
            "prefix for every topic name, on publish and on subscribe"),
    Setting("middleware", "list", ("relay.contrib.logging_middleware.LoggingMiddleware",),
            Items(note="dotted paths, `BaseMiddleware` subclasses or instances",
                  example='["relay.contrib.logging_middleware.LoggingMiddleware"]'), LIST,
            "middleware, outermost first; replaces the default list",
            default_text='`["relay.contrib.logging_middleware.LoggingMiddleware"]`'),
    Setting("ack_deadline", "int (s)", 60, Number(int, 10, 600), WHOLE,
            "ack deadline of subscriptions that declare none"),
    Setting("provisioning", "str", "create", Choice(("create", "verify", "off")), TEXT,
            "what `Worker.setup()` does: `create` (create, and update to match the code), "
            "`verify` (read-only: fail listing what is missing or differs) or `off` (no admin "
            "calls); see [Reliability](reliability.md#provisioning-modes)"),
    Setting("admin_timeout", _SECONDS, 60.0, Number(float, 0.1, 3600), DECIMAL,
            "how long one provisioning call (get/create/update), retries included, may take"),
    Setting("publisher_blocking", "bool", False, Flag(), BOOL,
            "whether `publish()` waits for Pub/Sub's confirmation by default"),
    Setting("publisher_timeout", _SECONDS, 3.0, Number(float, 0.001, 3600), DECIMAL,
            "how long a blocking publish waits"),
    Setting("publisher_retry_timeout", _SECONDS, 60.0, Number(float, 0.1, 3600), DECIMAL,
            "how long the transport keeps retrying one publish before its future fails and "
            "`post_publish_failure` fires"),
    Setting("publisher_max_messages", "int", 1000, Number(int, 1, 10_000_000), WHOLE,
            "messages published but not yet confirmed, at most (back-pressure, see "
            "[Publishing](publishing.md#back-pressure))"),
    Setting("publisher_max_bytes", "int", 100 * 1024**2, Number(int, 1024, 100 * 1024**3), WHOLE,
            "payload bytes published but not yet confirmed, at most (one bigger message still "
            "goes, alone)", default_text="`104857600` (100 MiB)"),
    Setting("publisher_limit_behavior", "str", "block", Choice(("block", "error")), TEXT,
            "at the limit, `block` waits for room (at most `PUBLISHER_RETRY_TIMEOUT`), `error` "
            "does not: a publish that finds no room raises `PublishError`"),
    Setting("encoder", "callable or None", None,
            Custom(encoder, "`obj -> JSON-able`, a `json.JSONEncoder` subclass, or a dotted "
                   "path to either"), DOTTED,
            "fallback JSON encoder for types relay does not know"),
    Setting("filter_subs_by", "callable or list of callables", (),
            Items(a_filter, "a callable, or a list of them; each may be a dotted path",
                  example='["myapp.filters.only_orders"]'), LIST,
            "filters every subscription applies, each called with `**attributes`",
            default_text="`[]`"),
    Setting("default_retry_policy", "`RetryPolicy` or None", RetryPolicy(),
            Custom(retry_policy, "a `RetryPolicy`, a `(min, max)` pair, "
                   '`{"minimum_backoff": ..., "maximum_backoff": ...}` or None',
                   retry_policy_object), RETRY,
            "redelivery backoff for subscriptions that declare none; None: no retry policy",
            default_text="`RetryPolicy(10, 600)`"),
    Setting("dead_letter_topic", "str or None", None,
            Text("a topic name (may use {topic})", empty=None,
                 note="a topic name; may use `{topic}` and `{subscription}`"), TEXT,
            "dead-letter topic for subscriptions that declare none (`TOPIC_PREFIX` applied), "
            'e.g. `"{topic}-dead-letter"`; None: no dead-lettering'),
    Setting("max_delivery_attempts", "int", 5,
            Number(int, MIN_DELIVERY_ATTEMPTS, MAX_DELIVERY_ATTEMPTS), WHOLE,
            "deliveries before Pub/Sub moves a message to the dead-letter topic, for "
            "subscriptions that declare none"),
    Setting("dead_letter_keep", "bool", True, Flag(), BOOL,
            "create a subscription (named like the topic) on each dead-letter topic, so dead "
            "letters are stored"),
    Setting("client_options", "dict", {}, Custom(client_options, "a dict"), JSON,
            'passed to Google\'s clients, e.g. `{"api_endpoint": "..."}`', default_text="`{}`"),
    Setting("concurrency", "int", 16, Number(int, 1, 10_000), WHOLE,
            "sync handlers running at once across all subscriptions (and, separately, async "
            "handlers)"),
    Setting("flow_max_messages", "int", 100, Number(int, 1, 1_000_000), WHOLE,
            "messages one subscription's stream holds unsettled"),
    Setting("flow_max_bytes", "int", 100 * 1024**2, Number(int, 1024, 10 * 1024**3), WHOLE,
            "bytes one stream holds unsettled", default_text="`104857600` (100 MiB)"),
    Setting("flow_max_lease_duration", _SECONDS, 3600.0, Number(float, 10, 7 * 24 * 3600),
            DECIMAL, "how long the client keeps extending an unsettled message's lease"),
    Setting("flow_max_lease_extension", _SECONDS, 0.0,
            Number(float, 10, 600, zero="the subscription's ack deadline"), DECIMAL,
            "the longest single lease extension; also how soon Pub/Sub redelivers what a "
            "crashed or cut-off worker held (see below)"),
    Setting("stream_lifetime", _SECONDS, 0.0,
            Number(float, 5, 3600, zero="the client's default"), DECIMAL,
            "how long each streaming pull lives before it is reopened; 0: 30 minutes, "
            "google-cloud-pubsub's own deadline (see below)"),
    Setting("drain_timeout", _SECONDS, 30.0, Number(float, 0, 3600), DECIMAL,
            "how long `Worker.stop()` waits for running handlers"),
    Setting("transport", "str", "grpc",
            Custom(transport, '`"grpc"`, `"pubsub"`, `"memory"`, or a dotted path to a '
                   "`Transport` class"), TEXT,
            "how relay talks to Pub/Sub: `grpc` is relay's own client ([the gRPC "
            "transport](transport.md)), `pubsub` google-cloud-pubsub's (kept for at "
            "least one release); a class is built as `cls(settings)`"),
    Setting("streams_per_subscription", "int", 1, Number(int, 1, 32), WHOLE,
            f"streaming pulls per subscription, sharing its `FLOW_*` bounds; {_GRPC}"),
    Setting("publisher_batch_max_messages", "int", 100, Number(int, 1, 1000), WHOLE,
            f"a publish batch is sent at this many messages; {_GRPC}"),
    Setting("publisher_batch_max_bytes", "int", 1_000_000, Number(int, 1024, 10_000_000), WHOLE,
            f"... or at this many bytes; {_GRPC}"),
    Setting("publisher_batch_max_latency", _SECONDS, 0.01, Number(float, 0, 10), DECIMAL,
            f"... or this long after its first message, whichever comes first; {_GRPC}"),
    Setting("health_port", "int or None", None, Number(int, 0, 65535, optional=True), WHOLE,
            "port of `relay-cli run`'s `/livez` and `/readyz` probes, 0 for a free one; None "
            "(or empty in the environment): no probe server; see "
            "[Health probes](observability.md#health-probes)"),
    Setting("health_host", "str", "127.0.0.1", Text("an address", note="an address"), TEXT,
            'the address the probe server binds; `"0.0.0.0"` (or `"::"`) to be reachable from '
            "outside the host or pod"),
    Setting("health_failure_threshold", _SECONDS, 120.0, Number(float, 1, 24 * 3600), DECIMAL,
            "how long a subscription's stream may stay failed or disconnected before `/livez` "
            "fails"),
    Setting("log_format", "str", "text", Choice(("text", "json")), TEXT,
            "`relay-cli run`'s log output: readable lines or one JSON object per line; see "
            "[Logs](observability.md#logs)"),
    Setting("results", "str or None", None,
            Custom(results, '`"pubsub"`, `"memory"`, a dotted path to a '
                   "`relay.results.ResultBackend` subclass, or None (`none`, `off` or empty in "
                   "the environment)"), TEXT,
            "where task outcomes go (see [Tasks](tasks.md#results) and below); None: off"),
    Setting("results_topic", "str", "relay-results",
            Text("a topic name", name=True, note="a valid Pub/Sub topic name"), TEXT,
            'the topic outcomes travel on with `RESULTS="pubsub"` (`TOPIC_PREFIX` applied)'),
    Setting("push_auth", "str", "oidc", Choice(("oidc", "off")), TEXT,
            "how the push app checks requests: `oidc` verifies the Google-signed token "
            "against `PUSH_AUDIENCE` and `PUSH_SERVICE_ACCOUNT`; `off` accepts any request "
            "(local development only, logged as a WARNING); see [Push](push.md#settings)"),
    Setting("push_audience", "str or None", None,
            Text(empty=None, note="the push subscription's audience"), TEXT,
            "the audience configured on the push subscriptions (Pub/Sub's default: the push "
            "endpoint URL); required with `PUSH_AUTH=\"oidc\"`"),
    Setting("push_service_account", "str or None", None,
            Custom(_email, "a service account's email"), TEXT,
            "the service account Pub/Sub signs push tokens as; required with "
            '`PUSH_AUTH="oidc"`'),
    Setting("push_certs_url", "str", GOOGLE_CERTS_URL,
            Custom(_certs_url, "an `https://` URL (`http://` on loopback only)"), TEXT,
            "where the token-signing certificates are fetched; change it only to serve a "
            "local certificate set in tests"),
)

#: The declarations by field name.
SPECS: dict[str, Setting] = {spec.name: spec for spec in SETTINGS}
#: The settings never shown.
SECRETS = frozenset(spec.name for spec in SETTINGS if spec.secret)


#: The ``Settings`` field of each setting, with its declared default.
FIELDS: dict[str, Any] = {spec.name: spec.field() for spec in SETTINGS}


def coerce(name: str, value: Any) -> Any:
    """What setting ``name`` (a field name) stores for ``value``."""
    return SPECS[name].coerce(value)


def parse_env(name: str, var: str, raw: str) -> Any:
    """The value of environment variable ``var`` (for setting ``name``), before ``coerce``."""
    return SPECS[name].env.parse(var, raw)


class SettingsError(ConfigurationError):
    """Several settings are wrong: one line for each, in ``problems``."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(redact(p) for p in problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problems in the settings:\n{lines}")


def raise_all(errors: list[ConfigurationError]) -> None:
    """Nothing for no errors; one: that error as it is; more: one ``SettingsError``
    listing each (its own lines too, if one is a ``SettingsError``)."""
    problems = [p for e in errors for p in (e.problems if isinstance(e, SettingsError)
                                            else (str(e),))]
    if len(problems) == 1:
        raise errors[0]
    if problems:
        raise SettingsError(problems)


def validate(s: Settings) -> None:
    """The constructor's checks: each value as given, then the credentials together.
    Raises one error for every problem found."""
    errors: list[ConfigurationError] = []
    for spec in SETTINGS:
        try:
            spec.check(getattr(s, spec.name))
        except ConfigurationError as exc:
            errors.append(exc)
    try:
        check_credentials(s)
    except ConfigurationError as exc:
        errors.append(exc)
    raise_all(errors)
