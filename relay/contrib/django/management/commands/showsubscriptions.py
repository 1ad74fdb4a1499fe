"""``manage.py showsubscriptions``: ``relay-cli subs`` on the project's settings and apps."""

from __future__ import annotations

from relay.contrib.django.management.commands._relay import RelayCommand


class Command(RelayCommand):
    help = "List the subscriptions runrelay would consume (relay-cli subs)."
    relay_command = "subs"
