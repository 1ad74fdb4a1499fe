"""Provisioning a bucket's notification configuration: ``NotificationStep``.

A ``relay.provisioning.ExtraStep``: it runs in the three provisioning modes
and in ``relay-cli plan``, after the topics and subscriptions.

Which notification configurations are relay's: those whose custom attributes
carry ``relay-subscription`` equal to this subscription's name and whose topic
is this subscription's topic. Each also carries ``relay-handler``, the
handler's ``module.qualname``. Renaming the handler keeps the subscription's
name and topic (both come from the bucket, the events and the options), so the
old configuration is found and replaced. A configuration without the marker,
or with another subscription's, is never changed or deleted; one that publishes
to the same topic is reported, as each event it selects too arrives twice.

Cloud Storage cannot change a notification configuration in place, so a
differing one is replaced: relay creates the new one first and deletes the old
one after, so no event goes unreported meanwhile (one may be reported twice).
Before creating, relay counts the bucket's configurations against Cloud
Storage's limit of 100 per bucket and refuses, saying how to free a place,
rather than let the call fail. Cloud Storage's other limit, 10 configurations
that trigger for one event type, is left to Cloud Storage (how it counts
configurations with different object name prefixes is not documented): its
refusal becomes a ``ProvisioningError`` quoting it.

The Storage service agent of the bucket's project
(``service-PROJECT_NUMBER@gs-project-accounts.iam.gserviceaccount.com``)
publishes the events, so it needs ``roles/pubsub.publisher`` on the topic.
relay grants no IAM roles; it reads the topic's policy where the transport can
(not on the Pub/Sub emulator) and says whether the role is there.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from relay.contrib.storage.client import storage_client, unavailable, where
from relay.contrib.storage.declaration import (
    MARK_HANDLER,
    MARK_SUBSCRIPTION,
    BucketSubscription,
)
from relay.errors import ProvisioningError, TransportError
from relay.provisioning import Step
from relay.transports.base import ProvisionAction, ProvisionResult, Transport

if TYPE_CHECKING:
    from relay.settings import Settings

logger = logging.getLogger("relay.contrib.storage")

#: Cloud Storage's limits (https://cloud.google.com/storage/quotas).
MAX_PER_BUCKET = 100
MAX_PER_EVENT = 10  # left to Cloud Storage to apply; see the module docstring
#: Roles that hold ``pubsub.topics.publish``, as granted on a topic.
PUBLISHING_ROLES = frozenset({
    "roles/pubsub.publisher", "roles/pubsub.editor", "roles/pubsub.admin",
    "roles/editor", "roles/owner",
})
TOPIC_REF = "//pubsub.googleapis.com/projects/{project}/topics/{topic}"


@dataclass(frozen=True)
class Existing:
    """One notification configuration as read from the bucket."""

    id: str
    topic: str
    event_types: tuple[str, ...]
    object_name_prefix: str
    payload_format: str
    custom_attributes: Mapping[str, str]

    @classmethod
    def of(cls, notification: Any) -> Existing:
        return cls(
            id=str(notification.notification_id),
            topic=TOPIC_REF.format(
                project=notification.topic_project, topic=notification.topic_name
            ),
            event_types=tuple(sorted(notification.event_types or ())),
            object_name_prefix=notification.blob_name_prefix or "",
            payload_format=notification.payload_format or "",
            custom_attributes=dict(notification.custom_attributes or {}),
        )

    def label(self) -> str:
        owner = self.custom_attributes.get(MARK_SUBSCRIPTION)
        whose = f"relay's, for subscription {owner!r}" if owner else "not relay's"
        return f"notification {self.id} ({whose})"


@dataclass(frozen=True)
class Survey:
    """The bucket's configurations, sorted out for one step."""

    everything: tuple[Existing, ...]
    #: relay's for this subscription and topic.
    mine: tuple[Existing, ...]
    #: The one of ``mine`` that matches the declaration exactly, if any.
    current: Existing | None
    #: Others that publish to this topic.
    sharing: tuple[Existing, ...]


class NotificationStep:
    """The notification configuration one ``BucketSubscription`` needs."""

    kind = "notification"

    def __init__(self, sub: BucketSubscription, settings: Settings) -> None:
        self.spec = sub.notification
        self.topic = sub.full_topic
        self.subscription = sub.name
        self.owner = sub.handler_name
        self.settings = settings
        self.name = f"gs://{self.spec.bucket} -> {self.topic}"
        self.marker = {MARK_SUBSCRIPTION: sub.name, MARK_HANDLER: sub.handler_name}

    # -------------------------------------------------------------- the step
    def check(self, transport: Transport) -> Step:
        """Read-only (``relay-cli plan``, ``PROVISIONING='verify'``)."""
        reason = unavailable(self.settings)
        if reason:
            logger.info("notification %s not checked: %s", self.name, reason)
            return Step("skipped", self.kind, self.name, (f"not checked: {reason}",))
        project = self.settings.project_id()
        with storage_client(self.settings, project) as client:
            try:
                survey = self._survey(client, project)
            except _BucketMissing as exc:
                return Step("conflict", self.kind, self.name, (str(exc),))
            action, details = self._difference(survey)
            if survey.current is None:
                problem = self._limit_problem(survey)
                if problem:
                    action, details = "conflict", [*details, problem]
            details.extend(self._sharing(survey))
            grant, granted = self._grant(transport, client, project)
        _log_grant(grant, granted)
        return Step(action, self.kind, self.name, (*details, grant))

    def apply(self, transport: Transport) -> ProvisionResult | None:
        """Create, replace or keep the configuration (``PROVISIONING='create'``)."""
        reason = unavailable(self.settings)
        if reason:
            logger.info("notification %s not provisioned: %s", self.name, reason)
            return None
        project = self.settings.project_id()
        with storage_client(self.settings, project) as client:
            try:
                survey = self._survey(client, project)
            except _BucketMissing as exc:
                raise ProvisioningError(str(exc)) from None
            created = None
            if survey.current is None:
                problem = self._limit_problem(survey)
                if problem:
                    raise ProvisioningError(f"cannot create notification {self.name}: {problem}")
                created = self._create(client, project)
                logger.info(
                    "created notification %s on gs://%s for topic %s (%s)", created,
                    self.spec.bucket, self.topic, ", ".join(self.spec.describe()),
                )
            stale = [n for n in survey.mine if n is not survey.current]
            for old in stale:
                self._delete(client, old)
                logger.info("deleted relay's old notification %s on gs://%s (%s)", old.id,
                            self.spec.bucket, "replaced" if created else "a duplicate")
            for line in self._sharing(survey):
                logger.warning("notification %s: %s", self.name, line)
            _log_grant(*self._grant(transport, client, project))
        if created is not None:
            action = ProvisionAction.UPDATED if stale else ProvisionAction.CREATED
        else:
            action = ProvisionAction.UPDATED if stale else ProvisionAction.UNCHANGED
        changed = tuple(f"replaced {old.id}" for old in stale)
        return ProvisionResult(f"{self.kind} {self.name}", action, changed)

    # -------------------------------------------------------------- reading
    def wanted(self, project: str) -> Existing:
        """The configuration the declaration asks for (id left empty)."""
        spec = self.spec
        return Existing("", TOPIC_REF.format(project=project, topic=self.topic),
                        tuple(sorted(spec.event_types)), spec.object_name_prefix,
                        spec.payload_format, dict(self.marker))

    def _survey(self, client: Any, project: str) -> Survey:
        bucket = client.bucket(self.spec.bucket)
        try:
            found = tuple(Existing.of(n) for n in bucket.list_notifications(**_call(self)))
        except ValueError as exc:  # google-cloud-storage cannot parse a topic it was sent
            raise ProvisioningError(
                f"cannot read the notification configurations of bucket {self.spec.bucket!r}: "
                f"google-cloud-storage refused one of them ({exc})"
            ) from None
        except Exception as exc:
            if _status(exc) == 404:
                raise _BucketMissing(
                    f"bucket {self.spec.bucket!r} does not exist at {where()} (or the "
                    "credentials cannot see it): create it, or fix the bucket name given to "
                    "@bucket_sub"
                ) from None
            raise _storage_error(f"listing the notifications of bucket {self.spec.bucket!r}",
                                 exc) from None
        wanted = self.wanted(project)
        mine = tuple(
            n for n in found
            if n.topic == wanted.topic
            and n.custom_attributes.get(MARK_SUBSCRIPTION) == self.subscription
        )
        same = [n for n in mine if _same(n, wanted)]
        sharing = tuple(n for n in found if n.topic == wanted.topic and n not in mine)
        return Survey(found, mine, same[0] if same else None, sharing)

    def _difference(self, survey: Survey) -> tuple[str, list[str]]:
        if survey.current is not None:
            extra = [n for n in survey.mine if n is not survey.current]
            if not extra:
                return "unchanged", []
            return "update", [f"delete duplicate notification {n.id}" for n in extra]
        new = [*self.spec.describe(), f"custom_attributes: {_show_dict(self.marker)}"]
        if not survey.mine:
            return "create", new
        old = survey.mine[0]
        wanted = self.wanted("")
        lines = [
            f"replace notification {', '.join(n.id for n in survey.mine)} (Cloud Storage cannot "
            "change one in place: the new one is created first, then the old one deleted)"
        ]
        for field in ("event_types", "object_name_prefix", "payload_format"):
            before, after = getattr(old, field), getattr(wanted, field)
            if before != after:
                lines.append(f"{field}: {_show(before)} -> {_show(after)}")
        for key in sorted(set(old.custom_attributes) | set(wanted.custom_attributes)):
            before_value = old.custom_attributes.get(key)
            after_value = wanted.custom_attributes.get(key)
            if before_value != after_value:
                lines.append(f"{key}: {_show(before_value)} -> {_show(after_value)}")
        return "update", lines

    def _limit_problem(self, survey: Survey) -> str | None:
        """Cloud Storage's limit per bucket, counted before creating."""
        total = len(survey.everything)
        if total < MAX_PER_BUCKET:
            return None
        bucket = self.spec.bucket
        ours = sum(1 for n in survey.everything if MARK_SUBSCRIPTION in n.custom_attributes)
        order = (
            " relay creates the new one before deleting the old one, so it needs a free place."
            if survey.mine else ""
        )
        return (
            f"bucket {bucket!r} has {total} notification configurations ({ours} of them "
            f"relay's), Cloud Storage's limit per bucket.{order} Delete unused ones (gcloud "
            f"storage buckets notifications list gs://{bucket}, then gcloud storage buckets "
            "notifications delete ...), or use another bucket"
        )

    def _sharing(self, survey: Survey) -> list[str]:
        return [
            f"{n.label()} also publishes to topic {self.topic}: events both select arrive twice"
            for n in survey.sharing
        ]

    def _grant(self, transport: Transport, client: Any, project: str) -> tuple[str, bool | None]:
        """One line on the service agent's right to publish, and True/False/None (unknown)."""
        needs = f"roles/pubsub.publisher on topic {self.topic}"
        try:  # the agent of the bucket's project publishes, wherever the topic is
            owner = client.get_bucket(self.spec.bucket, **_call(self)).project_number
            agent = client.get_service_account_email(project=str(owner or project),
                                                     **_call(self))
        except Exception as exc:
            return (f"Cloud Storage's service agent needs {needs}; its address cannot be read "
                    f"({_brief(exc)})", None)
        member = f"serviceAccount:{agent}"
        try:
            if not transport.topic_exists(self.topic):
                return f"service agent {agent} will need {needs} once it exists", None
            policy = transport.topic_iam_policy(self.topic)
        except NotImplementedError as exc:
            return f"service agent {agent} needs {needs}: cannot be read here ({exc})", None
        except TransportError as exc:
            return f"service agent {agent} needs {needs}: cannot be read ({exc})", None
        roles = sorted(r for r, members in policy.items() if r in PUBLISHING_ROLES
                       and member in members)
        if roles:
            return f"service agent {agent} may publish to topic {self.topic} ({roles[0]})", True
        return (
            f"service agent {agent} has no role on topic {self.topic} that lets it publish (a "
            "grant on the whole project does not show here); without one no event arrives: "
            f"gcloud pubsub topics add-iam-policy-binding {self.topic} --project={project} "
            f"--member={member} --role=roles/pubsub.publisher", False,
        )

    # -------------------------------------------------------------- writing
    def _create(self, client: Any, project: str) -> str:
        spec = self.spec
        notification = client.bucket(spec.bucket).notification(
            topic_name=self.topic,
            topic_project=project,
            custom_attributes=dict(self.marker),
            event_types=list(spec.event_types) or None,
            blob_name_prefix=spec.object_name_prefix or None,
            payload_format=spec.payload_format,
        )
        try:
            notification.create(timeout=self.settings.admin_timeout)
        except Exception as exc:
            raise _storage_error(f"creating notification {self.name}", exc) from None
        return str(notification.notification_id)

    def _delete(self, client: Any, old: Existing) -> None:
        notification = client.bucket(self.spec.bucket).notification(notification_id=old.id)
        try:
            notification.delete(**_call(self))
        except Exception as exc:
            if _status(exc) == 404:
                return  # gone already
            raise _storage_error(
                f"deleting relay's old notification {old.id} on gs://{self.spec.bucket} (the "
                "new one exists; delete the old one by hand or start again)", exc,
            ) from None


class _BucketMissing(Exception):
    pass


def _same(current: Existing, wanted: Existing) -> bool:
    return (
        current.event_types == wanted.event_types
        and current.object_name_prefix == wanted.object_name_prefix
        and current.payload_format == wanted.payload_format
        and dict(current.custom_attributes) == dict(wanted.custom_attributes)
    )


def _call(step: NotificationStep) -> dict[str, Any]:
    """Timeout and retry of a read: transient errors retried for ADMIN_TIMEOUT in all."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    timeout = step.settings.admin_timeout
    return {"timeout": timeout, "retry": DEFAULT_RETRY.with_timeout(timeout)}


def _status(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)
    return code if isinstance(code, int) else None


def _brief(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _storage_error(action: str, exc: BaseException) -> ProvisioningError:
    """A Storage call's failure, with what to do about it; anything else is re-raised."""
    from google.api_core import exceptions as gexc

    if not isinstance(exc, (gexc.GoogleAPIError, OSError)):
        raise exc
    status = _status(exc)
    if isinstance(exc, (gexc.RetryError, OSError)):
        hint = (f"Cloud Storage at {where()} did not answer within ADMIN_TIMEOUT: check the "
                "network or STORAGE_EMULATOR_HOST, or raise ADMIN_TIMEOUT")
    elif status in (401, 403):
        hint = ("the credentials need storage.buckets.update on the bucket "
                "(roles/storage.admin), or provision it with Terraform and run with "
                "PROVISIONING='verify' or 'off'")
    elif status == 400:
        hint = (f"Cloud Storage allows {MAX_PER_BUCKET} notification configurations per bucket, "
                f"{MAX_PER_EVENT} per event type, and needs its service agent to have "
                "roles/pubsub.publisher on the topic")
    else:
        hint = "see the message above"
    return ProvisioningError(f"{action} failed: {_brief(exc)}; {hint}")


def _log_grant(line: str, granted: bool | None) -> None:
    logger.log(logging.WARNING if granted is False else logging.INFO, "%s", line)


def _show(value: Any) -> str:
    if value in (None, "", ()):
        return "(none)"
    if isinstance(value, tuple):
        return ", ".join(value)
    return repr(value)


def _show_dict(values: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(values.items()))
