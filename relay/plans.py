"""What a provisioning plan says: ``Step``, ``Plan``, and the text of each difference.

``relay.provisioning`` computes the differences between the declarations and
Pub/Sub; this module words them, for ``relay-cli plan``, the ``verify`` mode's
error and the worker's log. A subscription that changes between pull and push
gets one explicit line (``switch pull -> push (endpoint ...)``) rather than a
field-by-field diff, so nobody applies it without seeing it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from relay.transports.base import PUSH_FIELDS, SubscriptionSpec


@dataclass(frozen=True)
class FieldChange:
    field: str
    current: Any
    wanted: Any

    def __str__(self) -> str:
        return f"{self.field}: {show(self.current)} -> {show(self.wanted)}"


def show(value: Any) -> str:
    if value is None or value == "" or value == {}:
        return "(none)"
    if hasattr(value, "minimum_backoff"):
        return f"{value.minimum_backoff:g}s..{value.maximum_backoff:g}s"
    return repr(value) if isinstance(value, str) else str(value)


def push_text(spec: SubscriptionSpec) -> str:
    """``endpoint 'https://...', service account '...', audience '...'``."""
    text = f"endpoint {spec.push_endpoint!r}"
    if not spec.push_service_account:
        return f"{text}, unauthenticated"
    return (
        f"{text}, service account {spec.push_service_account!r}, "
        f"audience {spec.push_audience or spec.push_endpoint!r}"
    )


def switch_text(current: SubscriptionSpec, wanted: SubscriptionSpec) -> str | None:
    """The line for a switch between pull and push, or None if there is none."""
    if wanted.is_push and not current.is_push:
        return f"switch pull -> push ({push_text(wanted)})"
    if current.is_push and not wanted.is_push:
        return (
            f"switch push -> pull (stop pushing to {current.push_endpoint!r}; messages wait "
            "for a pull worker)"
        )
    return None


def change_lines(
    current: SubscriptionSpec, wanted: SubscriptionSpec, changes: tuple[FieldChange, ...]
) -> tuple[str, ...]:
    """One line per in-place change; a pull/push switch replaces its push fields' lines."""
    switch = switch_text(current, wanted)
    if switch is None:
        return tuple(str(c) for c in changes)
    return (switch, *(str(c) for c in changes if c.field not in PUSH_FIELDS))


def conflict_text(change: FieldChange) -> str:
    return (
        f"{change.field} is {show(change.current)} but the code declares "
        f"{show(change.wanted)}; Pub/Sub cannot change a subscription's {change.field} in "
        "place: delete the subscription (its unacked messages go with it) and start the "
        "worker again"
    )


def wrong_topic_text(name: str, current_topic: str, wanted_topic: str) -> str:
    where = "a deleted topic" if current_topic == "_deleted-topic_" else f"topic {current_topic!r}"
    return (
        f"subscription {name!r} exists on {where}, not on {wanted_topic!r}; delete the "
        "subscription or give this one another name (suffix=...)"
    )


def describe_new(spec: SubscriptionSpec) -> tuple[str, ...]:
    """The lines of a subscription to create: its topic and what is not a default."""
    details = [f"topic: {spec.topic!r}", f"ack_deadline: {spec.ack_deadline}"]
    for name in ("retry_policy", "filter", "dead_letter_topic", "max_delivery_attempts",
                 "enable_message_ordering", "enable_exactly_once_delivery", "labels"):
        value = getattr(spec, name)
        if value not in (None, "", 0, False, {}):
            details.append(f"{name}: {show(value)}")
    if spec.is_push:
        details.append(f"push: {push_text(spec)}")
    return tuple(details)


@dataclass(frozen=True)
class Step:
    """One line of a plan: what would happen to one topic or subscription."""

    action: str  # create | update | conflict | unchanged | skipped (not checkable here)
    kind: str  # topic | subscription | an ExtraStep's kind
    name: str
    details: tuple[str, ...] = ()

    SYMBOLS = {"create": "+", "update": "~", "conflict": "!", "unchanged": "=", "skipped": "?"}

    def render(self) -> list[str]:
        head = f"{self.SYMBOLS[self.action]} {self.kind} {self.name}"
        return [head, *(f"    {line}" for line in self.details)]


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)

    def count(self, action: str) -> int:
        return sum(1 for s in self.steps if s.action == action)

    @property
    def in_sync(self) -> bool:
        """Nothing to create, update or resolve (a skipped step is not a difference)."""
        return all(s.action in ("unchanged", "skipped") for s in self.steps)

    def problems(self) -> list[str]:
        """Everything that does not match, one line each (what ``verify`` reports)."""
        out = []
        for step in self.steps:
            if step.action == "create":
                out.append(f"{step.kind} {step.name} does not exist")
            elif step.action in ("update", "conflict"):
                out.append(f"{step.kind} {step.name} differs: {'; '.join(step.details)}")
        return out

    def render(self, *, show_unchanged: bool = True) -> str:
        lines: list[str] = []
        for step in self.steps:
            if step.action != "unchanged" or show_unchanged:
                lines.extend(step.render())
        skipped = self.count("skipped")
        lines.append(
            f"Plan: {self.count('create')} to create, {self.count('update')} to update, "
            f"{self.count('conflict')} conflict(s), {self.count('unchanged')} unchanged"
            + (f", {skipped} not checked." if skipped else ".")
        )
        return "\n".join(lines)


__all__ = [
    "FieldChange", "Plan", "Step", "change_lines", "conflict_text", "describe_new",
    "push_text", "show", "switch_text", "wrong_topic_text",
]
