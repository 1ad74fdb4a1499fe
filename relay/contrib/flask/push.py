"""Push delivery in a Flask app: the blueprint ``Relay.mount_push`` registers.

Its view hands Flask's request (headers, body, the subscription a path below
the mount point names) to a ``PushHandler`` and returns the handler's status
and text as a Flask response: the parsing, verification, routing and pipeline
are ``relay.push``'s, as for the bare WSGI app. The view answers ``POST`` at
``<url_prefix>`` (with or without the trailing slash: Pub/Sub does not follow
redirects) and at ``<url_prefix>/<subscription>``; Flask answers 405 to other
methods. See docs/push.md.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from relay.push import PushHandler

#: The blueprint's name: ``url_for("relay_push.push")``.
BLUEPRINT = "relay_push"


def push_blueprint(handler: PushHandler, *, name: str = BLUEPRINT) -> Blueprint:
    """A blueprint serving ``handler``; register it with a ``url_prefix``."""
    blueprint = Blueprint(name, __name__)

    def push(subscription: str = "") -> Response:
        headers = {key.lower(): value for key, value in request.headers.items()}
        answer = handler.handle(headers, request.get_data(cache=False), subscription=subscription)
        return Response(answer.body, status=answer.status, headers=answer.headers)

    blueprint.add_url_rule("/", "push", push, methods=["POST"])
    blueprint.add_url_rule("", "push", push, methods=["POST"])  # no redirect to "/"
    blueprint.add_url_rule("/<subscription>", "push", push, methods=["POST"])
    return blueprint


__all__ = ["BLUEPRINT", "push_blueprint"]
