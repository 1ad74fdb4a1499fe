"""Thin ASGI and WSGI adapters over ``PushHandler``: no web framework needed.

``asgi_app(handler)`` serves with uvicorn, hypercorn or under FastAPI /
Starlette (``app.mount("/pubsub", asgi_app(handler))``); ``wsgi_app(handler)``
with gunicorn, waitress or under Flask / Django. Each answers ``POST`` only
(405 otherwise). A path below the mount point names the subscription when the
request carries no other name (unwrapped messages without metadata): mount
once and let Pub/Sub push ``no_wrapper`` subscriptions to ``/<mount>/<name>``.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from relay.push.app import PushHandler, PushResponse

logger = logging.getLogger("relay.push")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
StartResponse = Callable[..., Any]

_REASONS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 413: "Content Too Large", 503: "Service Unavailable",
}


def _route(path: str) -> str:
    """The subscription a path below the mount point names, or ``""``."""
    return path.strip("/").rsplit("/", 1)[-1] if path.strip("/") else ""


class ASGIPushApp:
    """An ASGI 3 application serving ``handler``; handles ``lifespan`` too."""

    def __init__(self, handler: PushHandler) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope.get("method") != "POST":
            await self._send(send, PushResponse(405, "push requests are POSTs\n"))
            return
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())
        }
        chunks: list[bytes] = []
        more = True
        while more:
            event = await receive()
            if event["type"] == "http.disconnect":
                return
            chunks.append(event.get("body", b""))
            more = bool(event.get("more_body", False))
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        response = await self.handler.handle_async(
            headers, b"".join(chunks), subscription=_route(path)
        )
        await self._send(send, response)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif event["type"] == "lifespan.shutdown":
                self.handler.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    @staticmethod
    async def _send(send: Send, response: PushResponse) -> None:
        body = response.body.encode("utf-8")
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class WSGIPushApp:
    """A WSGI application serving ``handler`` on the server's request threads."""

    def __init__(self, handler: PushHandler) -> None:
        self.handler = handler

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            return self._send(start_response, PushResponse(405, "push requests are POSTs\n"))
        headers = {
            key[5:].replace("_", "-").lower(): str(value)
            for key, value in environ.items() if key.startswith("HTTP_")
        }
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(key):
                headers[key.replace("_", "-").lower()] = str(environ[key])
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return self._send(start_response, PushResponse(400, "bad Content-Length\n"))
        stream: io.BufferedIOBase = environ.get("wsgi.input") or io.BytesIO()
        body = stream.read(length) if length > 0 else b""
        response = self.handler.handle(
            headers, body, subscription=_route(environ.get("PATH_INFO", ""))
        )
        return self._send(start_response, response)

    @staticmethod
    def _send(start_response: StartResponse, response: PushResponse) -> list[bytes]:
        body = response.body.encode("utf-8")
        reason = _REASONS.get(response.status, "")
        headers = [*response.headers, ("Content-Length", str(len(body)))]
        start_response(f"{response.status} {reason}".rstrip(), headers)
        return [body]


def asgi_app(handler: PushHandler | None = None) -> ASGIPushApp:
    """The ASGI application for ``handler`` (default: ``from_settings()``)."""
    return ASGIPushApp(handler if handler is not None else _from_settings())


def wsgi_app(handler: PushHandler | None = None) -> WSGIPushApp:
    """The WSGI application for ``handler`` (default: ``from_settings()``)."""
    return WSGIPushApp(handler if handler is not None else _from_settings())


def _from_settings() -> PushHandler:
    from relay.push.configure import from_settings

    return from_settings()
