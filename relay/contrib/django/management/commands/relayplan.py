"""``manage.py relayplan``: ``relay-cli plan`` on the project's settings and apps."""

from __future__ import annotations

from relay.contrib.django.management.commands._relay import RelayCommand


class Command(RelayCommand):
    help = "Show how Pub/Sub differs from the project's subscriptions, read-only (relay-cli plan)."
    relay_command = "plan"
