"""Log output for ``relay-cli``: human-readable lines or one JSON object per line.

``JsonFormatter`` renders a record as a single line of JSON with stable keys:

* always: ``timestamp`` (ISO 8601, UTC), ``level``, ``logger``, ``event`` (the
  formatted message);
* when the record carries them (relay's ``LoggingMiddleware`` passes them as
  ``extra``): ``operation``, ``topic``, ``subscription``, ``message_id``,
  ``status``, ``duration_ms``;
* when an OpenTelemetry span is current and valid: ``trace_id`` (32 hex
  digits) and ``span_id`` (16 hex digits);
* for a record logged with an exception: ``exc_type`` (the class name) and
  ``exc`` (the formatted traceback);
* any other ``extra`` fields the caller passed, after those.

The formatter logs what it is given: it does not add payloads or settings.
relay's own records carry at most a truncated preview of a payload
(``relay.message.PAYLOAD_PREVIEW_BYTES``) and never credentials; as a backstop
against other libraries' records, both formatters here pass every line through
``relay.redaction.redact``: a PEM private key becomes ``[private key
redacted]`` and the value of a ``private_key`` (``private_key_id``,
``client_secret``, ``refresh_token``, ``api_key``) field becomes ``[redacted]``.

``configure_logging(level, fmt)`` is what the CLI calls: it installs one stderr
handler on the root logger unless the application configured logging already,
in which case it leaves that configuration alone.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone
from typing import Any, TextIO

import orjson
from opentelemetry import trace

from relay.redaction import REDACTED, has_secret, redact

__all__ = [
    "FORMATS",
    "REDACTED",
    "TEXT_DATEFMT",
    "TEXT_FORMAT",
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
    "redact",
]

#: The human-readable line: ``12:00:01 INFO    relay.worker: created topic orders``.
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
TEXT_DATEFMT = "%H:%M:%S"
#: Values of the ``LOG_FORMAT`` setting and of ``relay-cli run --log-format``.
FORMATS = ("text", "json")

#: Keys relay's records may carry as ``extra``, in output order.
_KNOWN = ("operation", "topic", "subscription", "message_id", "status", "duration_ms")
#: Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
_RESERVED = frozenset(
    {"timestamp", "level", "logger", "event", "trace_id", "span_id", "exc_type", "exc", "stack"}
)


def _scrubbed(value: Any) -> Any:
    """A JSON field with any private key redacted (containers become their str())."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact(value if isinstance(value, str) else str(value))


def _timestamp(created: float) -> str:
    moment = datetime.fromtimestamp(created, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line. See the module docstring for the keys."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "timestamp": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = vars(record)
        for key in _KNOWN:
            value = fields.get(key)
            if value is not None:
                out[key] = value
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            out["trace_id"] = format(context.trace_id, "032x")
            out["span_id"] = format(context.span_id, "016x")
        for key, value in fields.items():
            if key not in _STANDARD and key not in _RESERVED and key not in out:
                out[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            out["exc_type"] = record.exc_info[0].__name__
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        # default=str: an ``extra`` value JSON cannot hold is written as its str().
        line = orjson.dumps(out, default=str).decode()
        if has_secret(line):
            line = orjson.dumps({k: _scrubbed(v) for k, v in out.items()}, default=str).decode()
        return line


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT`` lines (``12:00:01 INFO    relay.worker: ...``), private keys redacted."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT, datefmt=TEXT_DATEFMT)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(level: str | int = "INFO", fmt: str = "text", *,
                      stream: TextIO | None = None) -> bool:
    """Log to ``stream`` (default stderr) at ``level`` in ``fmt`` ("text" or "json").

    Does nothing and returns False if the root logger already has handlers: the
    application (a settings or subs module, a framework) configured logging and
    its choice stands. Returns True when it installed the handler.
    """
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}; expected one of {', '.join(FORMATS)}")
    root = logging.getLogger()
    if root.handlers:
        if fmt == "json":
            logging.getLogger("relay.logs").info(
                "logging was configured by the application; the json log format is not applied"
            )
        return False
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    # google's stream manager logs "Re-established stream" at INFO each time a
    # stream reaches STREAM_LIFETIME (30 min by default, 15 s in the fault tests); relay reports
    # the state of its streams itself, so keep google's at WARNING unless set.
    bidi = logging.getLogger("google.api_core.bidi")
    if bidi.level == logging.NOTSET:
        bidi.setLevel(logging.WARNING)
    return True
