"""The apps under real servers and frameworks: wsgiref over loopback HTTP, and the
ASGI app through httpx's ASGITransport, mounted in FastAPI."""

from __future__ import annotations

import asyncio
import threading
import urllib.error
import urllib.request
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import httpx
from fastapi import FastAPI

from relay import App, MiddlewareChain, Settings, sub
from relay.push import PushHandler, Unverified, asgi_app, wsgi_app
from relay.transports.memory import MemoryTransport

from .helpers import envelope


def make(ran: list[Any]) -> PushHandler:
    @sub(topic="orders")
    def orders(data: Any, **attrs: Any) -> None:
        if data == "fail":
            raise RuntimeError("boom")
        ran.append(data)

    conf = Settings.load(environ={}, gc_project_id="relay-test", transport="memory")
    app = App(conf, transport=MemoryTransport(), middleware=MiddlewareChain())
    return PushHandler([orders], verifier=Unverified(), app=app)


class Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def post(url: str, body: bytes) -> int:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_wsgi_app_under_a_real_http_server() -> None:
    ran: list[Any] = []
    handler = make(ran)
    server = make_server("127.0.0.1", 0, wsgi_app(handler), handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/"
        assert post(url, envelope({"id": 1})) == 200
        assert post(url, envelope("fail")) == 503
        assert post(url, b"{not json") == 400
        assert post(url, envelope(1, subscription="projects/p/subscriptions/other")) == 404
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert ran == [{"id": 1}]


def test_asgi_app_mounted_in_fastapi() -> None:
    ran: list[Any] = []
    handler = make(ran)
    api = FastAPI()
    api.mount("/pubsub", asgi_app(handler))

    async def run() -> list[int]:
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            codes = []
            for body in (envelope({"id": 2}), envelope("fail"), b"nope"):
                response = await client.post("/pubsub/", content=body)
                codes.append(response.status_code)
            # unwrapped, routed by the path below the mount point
            response = await client.post("/pubsub/orders", content=b'"raw"')
            codes.append(response.status_code)
            return codes

    assert asyncio.run(run()) == [200, 503, 400, 200]
    assert ran == [{"id": 2}, "raw"]
    handler.close()
