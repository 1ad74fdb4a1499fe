"""Provisioning on Pub/Sub: the read-only and the admin calls behind ``Transport``'s
provisioning primitives. What to change is decided in ``relay.provisioning``."""

from __future__ import annotations

import datetime
import logging
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.protobuf import field_mask_pb2
from google.pubsub_v1 import types as gtypes

from relay.errors import TransportError
from relay.settings import Settings
from relay.transports.base import RetryPolicy, SubscriptionSpec

logger = logging.getLogger("relay.transports.pubsub")

#: ``ProvisionResult.changed`` uses relay's spec field names; the field mask
#: uses Pub/Sub's.
_FIELD_MASK_PATHS = {
    "ack_deadline": "ack_deadline_seconds",
    "retry_policy": "retry_policy",
    "labels": "labels",
    "dead_letter_topic": "dead_letter_policy",
    "max_delivery_attempts": "dead_letter_policy",
    "enable_exactly_once_delivery": "enable_exactly_once_delivery",
    # The push configuration is replaced as a whole; an empty one makes it a pull
    # subscription again.
    "push_endpoint": "push_config",
    "push_service_account": "push_config",
    "push_audience": "push_config",
}


class PubSubAdmin:
    """Provisioning methods of ``PubSubTransport`` (a mixin: it supplies the clients)."""

    settings: Settings
    #: Full topic names by short name (each transport's constructor makes it).
    _topic_paths: dict[str, str]

    # Supplied by PubSubTransport.
    def _publisher_client(self) -> Any:
        raise NotImplementedError

    def _subscriber_client(self) -> Any:
        raise NotImplementedError

    @property
    def project(self) -> str:
        raise NotImplementedError

    @property
    def endpoint(self) -> str:
        """Where the clients connect: the emulator, a configured endpoint, or Google."""
        options = self.settings.client_options or {}
        return (
            self.settings.emulator_host
            or str(options.get("api_endpoint") or "")
            or "pubsub.googleapis.com"
        )

    def topic_path(self, topic: str) -> str:
        path = self._topic_paths.get(topic)
        if path is None:
            path = self._topic_paths[topic] = f"projects/{self.project}/topics/{topic}"
        return path

    def subscription_path(self, subscription: str) -> str:
        return f"projects/{self.project}/subscriptions/{subscription}"

    def ensure_topic(self, topic: str) -> bool:
        client = self._publisher_client()
        request: dict[str, Any] = {"name": self.topic_path(topic)}
        if self.settings.gc_storage_regions:
            request["message_storage_policy"] = {
                "allowed_persistence_regions": list(self.settings.gc_storage_regions)
            }
        try:
            client.create_topic(request=request, **self._admin())
            return True
        except gexc.AlreadyExists:
            return False
        except gexc.PermissionDenied as exc:
            # Allowed to use the topic but not to create topics: fine if it exists.
            try:
                client.get_topic(topic=request["name"], **self._admin())
            except gexc.GoogleAPICallError:
                raise _provisioning_error(
                    f"creating topic {topic!r}", exc, self.endpoint
                ) from exc
            return False
        except gexc.GoogleAPIError as exc:
            raise _provisioning_error(f"creating topic {topic!r}", exc, self.endpoint) from exc

    def topic_exists(self, topic: str) -> bool:
        try:
            self._publisher_client().get_topic(topic=self.topic_path(topic), **self._admin())
        except gexc.NotFound:
            return False
        except gexc.GoogleAPIError as exc:
            raise _provisioning_error(f"reading topic {topic!r}", exc, self.endpoint) from exc
        return True

    def get_subscription(self, name: str) -> SubscriptionSpec | None:
        client = self._subscriber_client()
        try:
            sub = client.get_subscription(
                subscription=self.subscription_path(name), **self._admin()
            )
        except gexc.NotFound:
            return None
        except gexc.GoogleAPIError as exc:
            raise _provisioning_error(
                f"reading subscription {name!r}", exc, self.endpoint
            ) from exc
        policy = None
        if "retry_policy" in sub:
            policy = RetryPolicy(
                sub.retry_policy.minimum_backoff.total_seconds() or 10.0,
                sub.retry_policy.maximum_backoff.total_seconds() or 600.0,
            )
        dead_letter, attempts = "", 0
        if "dead_letter_policy" in sub and sub.dead_letter_policy.dead_letter_topic:
            dead_letter = self._short_topic(sub.dead_letter_policy.dead_letter_topic)
            attempts = sub.dead_letter_policy.max_delivery_attempts or 5
        push = _push_fields(sub)
        return SubscriptionSpec(
            name=name,
            topic=self._short_topic(sub.topic),
            ack_deadline=sub.ack_deadline_seconds,
            filter=sub.filter,
            retry_policy=policy,
            labels=dict(sub.labels),
            dead_letter_topic=dead_letter,
            max_delivery_attempts=attempts,
            enable_message_ordering=sub.enable_message_ordering,
            enable_exactly_once_delivery=sub.enable_exactly_once_delivery,
            push_endpoint=push[0],
            push_service_account=push[1],
            push_audience=push[2],
        )

    def _short_topic(self, path: str) -> str:
        """``projects/<ours>/topics/x`` -> ``x``; other projects keep the full path."""
        prefix = f"projects/{self.project}/topics/"
        return path[len(prefix):] if path.startswith(prefix) else path

    def _topic_ref(self, topic: str) -> str:
        return topic if topic.startswith("projects/") else self.topic_path(topic)

    def _to_proto(self, spec: SubscriptionSpec) -> Any:
        sub = gtypes.Subscription(
            name=self.subscription_path(spec.name),
            topic=self.topic_path(spec.topic),
            ack_deadline_seconds=spec.ack_deadline,
            filter=spec.filter,
            labels=dict(spec.labels),
            enable_message_ordering=spec.enable_message_ordering,
            enable_exactly_once_delivery=spec.enable_exactly_once_delivery,
        )
        if spec.retry_policy is not None:
            sub.retry_policy = _retry_policy(spec.retry_policy)
        if spec.expiration_ttl is not None:
            sub.expiration_policy = gtypes.ExpirationPolicy(
                ttl=datetime.timedelta(seconds=spec.expiration_ttl)
            )
        if spec.message_retention is not None:
            sub.message_retention_duration = datetime.timedelta(seconds=spec.message_retention)
        if spec.dead_letter_topic:
            sub.dead_letter_policy = gtypes.DeadLetterPolicy(
                dead_letter_topic=self._topic_ref(spec.dead_letter_topic),
                max_delivery_attempts=spec.max_delivery_attempts,
            )
        if spec.push_endpoint:
            sub.push_config = _push_config(spec)
        return sub

    def create_subscription(self, spec: SubscriptionSpec) -> bool:
        try:
            self._subscriber_client().create_subscription(
                request=self._to_proto(spec), **self._admin()
            )
        except gexc.AlreadyExists:
            return False
        except gexc.NotFound as exc:
            raise TransportError(
                f"cannot create subscription {spec.name!r}: topic {spec.topic!r} (or its "
                f"dead-letter topic) does not exist ({exc.message}); Worker.setup() creates "
                "topics first with PROVISIONING='create'"
            ) from exc
        except gexc.GoogleAPIError as exc:
            raise _provisioning_error(
                f"creating subscription {spec.name!r}", exc, self.endpoint
            ) from exc
        if spec.retry_policy is not None and self.settings.emulator_host:
            _warn_emulator_retry_policy(spec.name)
        return True

    def delete_subscription(self, name: str) -> bool:
        try:
            self._subscriber_client().delete_subscription(
                subscription=self.subscription_path(name), **self._admin()
            )
        except gexc.NotFound:
            return False
        except gexc.GoogleAPIError as exc:
            raise _provisioning_error(
                f"deleting subscription {name!r}", exc, self.endpoint
            ) from exc
        return True

    def update_subscription(self, spec: SubscriptionSpec, fields: tuple[str, ...]) -> None:
        update = self._to_proto(spec)
        paths = list(dict.fromkeys(_FIELD_MASK_PATHS[name] for name in fields))
        mask = field_mask_pb2.FieldMask(paths=paths)
        try:
            self._subscriber_client().update_subscription(
                request={"subscription": update, "update_mask": mask}, **self._admin()
            )
        except gexc.GoogleAPIError as exc:
            raise _provisioning_error(
                f"updating {', '.join(fields)} of subscription {spec.name!r}", exc, self.endpoint
            ) from exc

    def topic_iam_policy(self, topic: str) -> dict[str, frozenset[str]]:
        try:
            policy = self._publisher_client().get_iam_policy(
                request={"resource": self.topic_path(topic)}, **self._admin()
            )
        except gexc.MethodNotImplemented as exc:
            raise NotImplementedError(
                f"Pub/Sub at {self.endpoint} does not implement GetIamPolicy (the emulator "
                "has no IAM)"
            ) from exc
        except gexc.GoogleAPIError as exc:
            raise _provisioning_error(
                f"reading the IAM policy of topic {topic!r}", exc, self.endpoint
            ) from exc
        return {b.role: frozenset(b.members) for b in policy.bindings}

    def _admin(self) -> dict[str, Any]:
        return _admin_call(self.settings.admin_timeout)


# -------------------------------------------------------------------- helpers
def _admin_call(timeout: float) -> dict[str, Any]:
    """Retry transient errors for at most ``timeout`` seconds in all (ADMIN_TIMEOUT)."""
    return {
        "retry": gretry.Retry(
            initial=0.1, maximum=min(10.0, timeout), multiplier=1.3, timeout=timeout,
            predicate=gretry.if_exception_type(
                gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.Aborted, gexc.Unknown
            ),
        ),
        "timeout": timeout,
    }


def _provisioning_error(action: str, exc: BaseException, endpoint: str = "") -> TransportError:
    hint = ""
    if isinstance(exc, (gexc.RetryError, gexc.ServiceUnavailable, gexc.DeadlineExceeded)):
        hint = (
            f"; Pub/Sub at {endpoint or 'its endpoint'} did not answer within ADMIN_TIMEOUT: "
            "check the network, PUBSUB_EMULATOR_HOST or CLIENT_OPTIONS['api_endpoint'], "
            "or raise ADMIN_TIMEOUT"
        )
    elif isinstance(exc, gexc.PermissionDenied):
        hint = (
            "; the credentials may not manage topics and subscriptions: grant "
            "roles/pubsub.editor, or provision with Terraform and run with "
            "PROVISIONING='verify' (read-only) or 'off'"
        )
    return TransportError(f"{action} failed: {type(exc).__name__}: {exc}{hint}")


_warned_emulator_retry_policy = False


def _warn_emulator_retry_policy(subscription: str) -> None:
    """Once per process: the emulator's retry-policy fault (docs/reliability.md)."""
    global _warned_emulator_retry_policy
    if _warned_emulator_retry_policy:
        return
    _warned_emulator_retry_policy = True
    logger.warning(
        "subscription %r has a retry policy: the Pub/Sub emulator can stop redelivering "
        "messages that a retry policy delays a second time (an emulator fault; see "
        "docs/reliability.md, 'The emulator'). If handlers fail repeatedly in emulator "
        "runs, set DEFAULT_RETRY_POLICY=none there", subscription,
    )


def _push_config(spec: SubscriptionSpec) -> Any:
    config = gtypes.PushConfig(push_endpoint=spec.push_endpoint)
    if spec.push_service_account:
        config.oidc_token = gtypes.PushConfig.OidcToken(
            service_account_email=spec.push_service_account, audience=spec.push_audience
        )
    return config


def _push_fields(sub: Any) -> tuple[str, str, str]:
    """A subscription's push endpoint, service account and audience ("" for pull)."""
    if "push_config" not in sub or not sub.push_config.push_endpoint:
        return "", "", ""
    config = sub.push_config
    if "oidc_token" not in config:
        return config.push_endpoint, "", ""
    token = config.oidc_token
    return config.push_endpoint, token.service_account_email, token.audience


def _retry_policy(policy: RetryPolicy) -> Any:
    return gtypes.RetryPolicy(
        minimum_backoff=datetime.timedelta(seconds=policy.minimum_backoff),
        maximum_backoff=datetime.timedelta(seconds=policy.maximum_backoff),
    )
