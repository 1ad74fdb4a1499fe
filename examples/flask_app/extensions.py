"""The extension object, made once with no app: ``create_app`` initialises it."""

from relay.contrib.flask import Relay

relay_ext = Relay()
