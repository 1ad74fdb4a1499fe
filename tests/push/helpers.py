"""Shared pieces for the push tests: envelopes, a WSGI/ASGI caller, keys and certs."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import io
import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

from relay import BaseMiddleware
from relay.push import ASGIPushApp, WSGIPushApp

SERVICE_ACCOUNT = "pusher@relay-test.iam.gserviceaccount.com"
AUDIENCE = "https://push.example.test/pubsub"


def envelope(
    data: Any = None,
    *,
    raw: bytes | None = None,
    subscription: str = "projects/relay-test/subscriptions/orders",
    attributes: Mapping[str, str] | None = None,
    attempt: int | None = 1,
    message_id: str = "m-1",
) -> bytes:
    """A wrapped push body; ``data`` JSON-encoded unless ``raw`` bytes are given."""
    payload = raw if raw is not None else json.dumps(data).encode()
    body: dict[str, Any] = {
        "message": {
            "data": base64.b64encode(payload).decode(),
            "attributes": dict(attributes or {}),
            "messageId": message_id,
            "publishTime": "2026-12-05T10:00:00.123456789Z",
            "orderingKey": "",
        },
        "subscription": subscription,
    }
    if attempt is not None:
        body["deliveryAttempt"] = attempt
    return json.dumps(body).encode()


def call_wsgi(
    app: WSGIPushApp, body: bytes, headers: Mapping[str, str] | None = None,
    *, method: str = "POST", path: str = "/",
) -> tuple[int, str]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/json", "wsgi.input": io.BytesIO(body),
    }
    for key, value in (headers or {}).items():
        environ["HTTP_" + key.upper().replace("-", "_")] = value
    status: list[str] = []

    def start_response(line: str, _headers: list[tuple[str, str]]) -> None:
        status.append(line)

    chunks = app(environ, start_response)
    return int(status[0].split()[0]), b"".join(chunks).decode()


async def acall_asgi(
    app: ASGIPushApp, body: bytes, headers: Mapping[str, str] | None = None,
    *, method: str = "POST", path: str = "/",
) -> tuple[int, str]:
    scope = {
        "type": "http", "method": method, "path": path, "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    events = [{"type": "http.request", "body": body[:5], "more_body": True},
              {"type": "http.request", "body": body[5:], "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return events.pop(0)

    async def send(event: Any) -> None:
        sent.append(event)

    await app(scope, receive, send)
    return sent[0]["status"], b"".join(e.get("body", b"") for e in sent[1:]).decode()


def call_asgi(app: ASGIPushApp, body: bytes, **kw: Any) -> tuple[int, str]:
    return asyncio.run(acall_asgi(app, body, **kw))


class Hooks(BaseMiddleware):
    """Records the processing hooks it sees, by name."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def pre_process_message(self, subscription: Any, message: Any) -> None:
        self.seen.append("pre_process_message")

    def post_process_message_success(self, subscription: Any, message: Any, outcome: Any) -> None:
        self.seen.append("post_process_message_success")

    def post_process_message_failure(self, subscription: Any, message: Any, outcome: Any) -> None:
        self.seen.append("post_process_message_failure")

    def post_process_message(self, subscription: Any, message: Any, outcome: Any) -> None:
        self.seen.append("post_process_message")


# ------------------------------------------------------------------ OIDC keys
class Signer:
    """A locally generated RSA key, its self-signed certificate, and token minting."""

    def __init__(self, key_id: str = "test-key") -> None:
        self.key_id = key_id
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay-test")])
        now = dt.datetime.now(dt.timezone.utc)
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256())
        )
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()

    def token(self, **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "iss": "https://accounts.google.com", "aud": AUDIENCE, "email": SERVICE_ACCOUNT,
            "email_verified": True, "iat": now, "exp": now + 3600, "sub": "1234",
        }
        payload.update(claims)
        signer = crypt.RSASigner.from_string(self.pem, self.key_id)
        token: bytes = jwt.encode(signer, payload)
        return token.decode()


@contextmanager
def cert_server(certs: Mapping[str, str]) -> Iterator[tuple[str, list[int]]]:
    """Serve ``certs`` as Google's cert endpoint on loopback; yields (url, hit counter)."""
    hits = [0]
    body = json.dumps(dict(certs)).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits[0] += 1
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "public, max-age=600")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/certs", hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
