"""``manage.py runrelay``: ``relay-cli run`` on the project's settings and apps."""

from __future__ import annotations

from relay.contrib.django.management.commands._relay import RelayCommand


class Command(RelayCommand):
    help = "Provision and consume the project's subscriptions until SIGINT/SIGTERM (relay-cli run)."
    relay_command = "run"
