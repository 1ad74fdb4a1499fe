"""Making Pub/Sub match the code, checking that it does, or leaving it alone.

The ``PROVISIONING`` setting picks what ``Worker.setup()`` does:

* ``create`` (the default): create missing topics (dead-letter topics included)
  and subscriptions, and update existing subscriptions in place to match their
  declarations. What Pub/Sub cannot change in place (a filter, message
  ordering) is reported as a conflict, loudly, and left as it is.
* ``verify``: read-only. Only ``topics.get`` and ``subscriptions.get`` calls
  (``roles/pubsub.viewer`` covers them); start fails with ``ProvisioningError``
  listing every missing or mismatched topic and subscription. For teams whose
  infrastructure is managed by Terraform and whose workers run with least
  privilege.
* ``off``: no admin calls at all; the worker subscribes and trusts that the
  subscriptions exist (a missing one shows up as a failing stream).

``plan()`` computes the difference with read-only calls whatever the mode;
``relay-cli plan`` prints it.

A subscription may need more than a topic and a subscription (a Cloud Storage
bucket's notification configuration, in ``relay.contrib.storage``). It says so
by having a ``provisioning_steps(settings)`` method (``HasExtraSteps``) that
returns ``ExtraStep`` objects; the three modes and ``plan()`` run them after the
topics and subscriptions and report them in the same plan and result list.
This module knows nothing about what they provision. How plans are worded (and
the explicit line for a switch between pull and push) is ``relay.plans``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from relay.errors import ConfigurationError, ProvisioningError, TransportError
from relay.plans import (
    FieldChange,
    Plan,
    Step,
    change_lines,
    conflict_text,
    describe_new,
    switch_text,
    wrong_topic_text,
)
from relay.push_config import default_audience
from relay.transports.base import (
    UPDATABLE,
    ProvisionAction,
    ProvisionResult,
    SubscriptionSpec,
    Transport,
)

if TYPE_CHECKING:
    from relay.settings import Settings
    from relay.subscription import Subscription

logger = logging.getLogger("relay.provisioning")

#: The fields Pub/Sub can update on an existing subscription are ``UPDATABLE``,
#: imported from the seam, where ``Transport.update_subscription`` is specified.
#: Fields fixed when a subscription is created:
IMMUTABLE = ("filter", "enable_message_ordering")


# ------------------------------------------------------------- what we want
def spec_for(sub: Subscription, settings: Settings) -> SubscriptionSpec:
    """What a (resolved) subscription should look like on Pub/Sub."""
    dead_letter = sub.dead_letter
    return SubscriptionSpec(
        name=sub.name,
        topic=sub.full_topic,
        ack_deadline=sub.ack_deadline or settings.ack_deadline,
        filter=sub.backend_filter_by,
        retry_policy=sub.retry_policy or settings.default_retry_policy,
        dead_letter_topic=dead_letter.topic if dead_letter else "",
        max_delivery_attempts=dead_letter.max_delivery_attempts if dead_letter else 0,
        enable_message_ordering=sub.enable_message_ordering,
        enable_exactly_once_delivery=sub.enable_exactly_once_delivery,
        push_endpoint=sub.push_endpoint,
        push_service_account=sub.push_service_account,
        push_audience=default_audience(
            sub.push_endpoint, sub.push_service_account, sub.push_audience
        ),
    )


class ExtraStep(Protocol):
    """Something a subscription needs provisioned besides its topic and subscription.

    ``kind`` and ``name`` identify it in plans, logs and errors (``notification``,
    ``gs://uploads -> gcs-uploads``); two steps of the same kind and name are a
    ``ConfigurationError`` naming both ``owner``s (their handlers).
    """

    kind: str
    name: str
    owner: str

    def check(self, transport: Transport) -> Step:
        """Read-only: what ``apply`` would do, as a plan line. Action ``skipped``
        when it cannot be checked here (the details say why)."""
        ...

    def apply(self, transport: Transport) -> ProvisionResult | None:
        """Make it match (PROVISIONING='create'); None when skipped. Runs after the
        topics and subscriptions exist. Raises ``ProvisioningError`` naming the fix."""
        ...


@runtime_checkable
class HasExtraSteps(Protocol):
    """A subscription that needs ``ExtraStep``s (its ``provisioning_steps``)."""

    def provisioning_steps(self, settings: Settings) -> Sequence[ExtraStep]: ...


@dataclass(frozen=True)
class Desired:
    """Every topic and subscription a set of subscriptions needs, in creation order,
    and the extra steps they ask for (run after them)."""

    topics: tuple[str, ...]
    subscriptions: tuple[SubscriptionSpec, ...]
    extra: tuple[ExtraStep, ...] = ()


def desired(subscriptions: Iterable[Subscription], settings: Settings) -> Desired:
    """Topics (the subscriptions' and their dead-letter topics) and subscription specs.

    A dead-letter policy with ``keep`` adds a subscription named like its
    dead-letter topic, so dead letters are stored.
    """
    topics: dict[str, None] = {}
    specs: dict[str, SubscriptionSpec] = {}
    keepers: dict[str, SubscriptionSpec] = {}
    extra: dict[tuple[str, str], ExtraStep] = {}
    for sub in subscriptions:
        if isinstance(sub, HasExtraSteps):
            for step in sub.provisioning_steps(settings):
                other = extra.setdefault((step.kind, step.name), step)
                if other is not step:
                    raise ConfigurationError(
                        f"{step.kind} {step.name} is asked for by both {other.owner} and "
                        f"{step.owner}; give one of them its own topic=..."
                    )
        topics[sub.full_topic] = None
        specs[sub.name] = spec_for(sub, settings)
        policy = sub.dead_letter
        if policy is not None:
            topics[policy.topic] = None
            if policy.keep:
                keepers[policy.topic] = SubscriptionSpec(
                    name=policy.topic,
                    topic=policy.topic,
                    ack_deadline=settings.ack_deadline,
                    retry_policy=settings.default_retry_policy,
                )
    for name, keeper in keepers.items():
        if name in specs:
            if specs[name].topic != keeper.topic:
                raise ProvisioningError(
                    f"subscription {name!r} is declared by the code on topic "
                    f"{specs[name].topic!r} and is also the subscription that keeps the dead "
                    f"letters of topic {keeper.topic!r}; rename one of them"
                )
            continue  # the code already declares a subscription of that name on it
        specs[name] = keeper
    return Desired(tuple(topics), tuple(specs.values()), tuple(extra.values()))


# ------------------------------------------------------------------ diffing
def _same(name: str, a: Any, b: Any) -> bool:
    if name == "retry_policy" and a is not None and b is not None:
        return bool(
            abs(a.minimum_backoff - b.minimum_backoff) < 1e-6
            and abs(a.maximum_backoff - b.maximum_backoff) < 1e-6
        )
    if name == "labels":
        return dict(a or {}) == dict(b or {})
    return bool(a == b)


def _effective(spec: SubscriptionSpec) -> SubscriptionSpec:
    """The audience Pub/Sub uses when none is set (the endpoint URL), filled in, so a
    subscription created without one is not reported as differing."""
    audience = default_audience(spec.push_endpoint, spec.push_service_account,
                                spec.push_audience)
    return spec if audience == spec.push_audience else replace(spec, push_audience=audience)


def diff(current: SubscriptionSpec, wanted: SubscriptionSpec) -> tuple[
    tuple[FieldChange, ...], tuple[FieldChange, ...]
]:
    """(changes Pub/Sub can apply in place, changes it cannot).

    The push configuration is updatable: switching between pull and push is an
    update (``relay.plans.switch_text`` words it).
    """
    current, wanted = _effective(current), _effective(wanted)
    updatable = tuple(
        FieldChange(name, getattr(current, name), getattr(wanted, name))
        for name in UPDATABLE
        if not _same(name, getattr(current, name), getattr(wanted, name))
    )
    immutable = tuple(
        FieldChange(name, getattr(current, name), getattr(wanted, name))
        for name in IMMUTABLE
        if not _same(name, getattr(current, name), getattr(wanted, name))
    )
    return updatable, immutable


# -------------------------------------------------------------------- plans
def plan(transport: Transport, wanted: Desired) -> Plan:
    """The difference between the declarations and Pub/Sub, with read-only calls."""
    result = Plan()
    missing_topics = set()
    for topic in wanted.topics:
        if transport.topic_exists(topic):
            result.steps.append(Step("unchanged", "topic", topic))
        else:
            missing_topics.add(topic)
            result.steps.append(Step("create", "topic", topic))
    for spec in wanted.subscriptions:
        current = transport.get_subscription(spec.name)
        if current is None:
            result.steps.append(Step("create", "subscription", spec.name, describe_new(spec)))
            continue
        if current.topic != spec.topic:
            result.steps.append(Step(
                "conflict", "subscription", spec.name,
                (wrong_topic_text(spec.name, current.topic, spec.topic),),
            ))
            continue
        updatable, immutable = diff(current, spec)
        details = change_lines(current, spec, updatable) + tuple(
            conflict_text(c) for c in immutable
        )
        action = "conflict" if immutable else "update" if updatable else "unchanged"
        result.steps.append(Step(action, "subscription", spec.name, details))
    result.steps.extend(step.check(transport) for step in wanted.extra)
    return result


# ------------------------------------------------------------------ running
def provision(
    transport: Transport, wanted: Desired, mode: str
) -> list[ProvisionResult]:
    """Do what ``mode`` says; see the module docstring."""
    if mode == "off":
        logger.info("provisioning is off: subscribing without checking Pub/Sub")
        return []
    if mode == "verify":
        checked = plan(transport, wanted)
        problems = checked.problems()
        if problems:
            raise ProvisioningError(
                "PROVISIONING is 'verify' and Pub/Sub does not match the code:\n  - "
                + "\n  - ".join(problems)
                + "\nApply the missing infrastructure (relay-cli plan shows the difference), "
                "or run with PROVISIONING='create'"
            )
        logger.info(
            "verified %d topic(s) and %d subscription(s)%s: Pub/Sub matches the code",
            len(wanted.topics), len(wanted.subscriptions),
            f" (and {len(wanted.extra)} other step(s))" if wanted.extra else "",
        )
        results = [
            ProvisionResult(s.name, ProvisionAction.UNCHANGED) for s in wanted.subscriptions
        ]
        extra_lines = checked.steps[len(checked.steps) - len(wanted.extra):]
        results.extend(
            ProvisionResult(f"{line.kind} {line.name}", ProvisionAction.UNCHANGED)
            for line in extra_lines if line.action != "skipped"
        )
        return results
    results = create(transport, wanted.topics, wanted.subscriptions)
    for step in wanted.extra:
        result = step.apply(transport)
        if result is not None:
            results.append(result)
    return results


def ensure_subscription(transport: Transport, spec: SubscriptionSpec) -> ProvisionResult:
    """Create the subscription, or update it in place to match ``spec``.

    A subscription on another topic is a ``TransportError``; differences Pub/Sub
    cannot apply in place (filter, message ordering) are returned as conflicts.
    """
    for _ in range(2):  # a second round if someone else creates it meanwhile
        current = transport.get_subscription(spec.name)
        if current is None:
            if transport.create_subscription(spec):
                return ProvisionResult(spec.name, ProvisionAction.CREATED)
            continue
        if current.topic != spec.topic:
            raise TransportError(wrong_topic_text(spec.name, current.topic, spec.topic))
        updatable, immutable = diff(current, spec)
        conflicts = tuple(conflict_text(c) for c in immutable)
        if not updatable:
            return ProvisionResult(spec.name, ProvisionAction.UNCHANGED, (), conflicts)
        changed = tuple(c.field for c in updatable)
        switch = switch_text(current, spec)
        if switch is not None:  # the pull worker, or the push endpoint, stops getting messages
            logger.warning("subscription %s: %s", spec.name, switch)
        transport.update_subscription(spec, changed)
        return ProvisionResult(spec.name, ProvisionAction.UPDATED, changed, conflicts)
    raise TransportError(f"subscription {spec.name!r} keeps appearing and disappearing")


def create(
    transport: Transport, topics: Sequence[str], specs: Sequence[SubscriptionSpec]
) -> list[ProvisionResult]:
    """Create missing topics; create or update subscriptions to match ``specs``."""
    for topic in topics:
        if transport.ensure_topic(topic):
            logger.info("created topic %s", topic)
    results = []
    for spec in specs:
        result = ensure_subscription(transport, spec)
        if result.action is ProvisionAction.CREATED:
            logger.info("created subscription %s on topic %s", spec.name, spec.topic)
        elif result.action is ProvisionAction.UPDATED:
            logger.info("updated subscription %s: %s", spec.name, ", ".join(result.changed))
        for conflict in result.conflicts:
            logger.warning("subscription %s does not match the code: %s", spec.name, conflict)
        results.append(result)
    return results


__all__ = [
    "IMMUTABLE", "Desired", "ExtraStep", "FieldChange", "HasExtraSteps", "Plan", "Step",
    "create", "desired", "diff", "ensure_subscription", "plan", "provision", "spec_for",
]
