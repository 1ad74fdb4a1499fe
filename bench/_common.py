"""What the benchmark scripts share: the payload, the environment guard, medians,
and the marked sections of ``docs/`` pages that a benchmark rewrites.

Nothing here talks to the network. ``guard_environment`` points every Google
credential and metadata lookup at loopback so that a library falling back to
Application Default Credentials cannot reach off the machine.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterable
from pathlib import Path

PROJECT = "relay-bench"
TOPIC = "bench-consume"
#: The two attributes every benchmark message carries.
ATTRIBUTES = {"event": "order.created", "source": "bench"}
PAYLOAD_TARGET_BYTES = 300


def payload(seq: int) -> bytes:
    """A JSON object of ~300 bytes (the same shape for every ``seq``)."""
    import orjson

    doc: dict[str, object] = {
        "seq": seq,
        "order_id": f"ord-{seq:010d}",
        "customer": {"id": 100_000 + seq % 997, "email": f"user{seq % 997}@example.com"},
        "items": [
            {"sku": f"SKU-{(seq * 7 + i) % 10_000:05d}", "qty": 1 + i, "price": "19.99"}
            for i in range(2)
        ],
        "currency": "EUR",
        "created_at": "2026-01-01T12:00:00.000000+00:00",
        "pad": "",
    }
    raw = orjson.dumps(doc)
    doc["pad"] = "x" * max(0, PAYLOAD_TARGET_BYTES - len(raw))
    return orjson.dumps(doc)


def guard_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """Make any metadata-server or ADC probe fail fast on loopback (in place)."""
    target = os.environ if env is None else env
    target["NO_GCE_CHECK"] = "true"
    target["GCE_METADATA_HOST"] = "127.0.0.1:1"
    target["GCE_METADATA_IP"] = "127.0.0.1:1"
    target.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    return dict(target)


def median(values: Iterable[float]) -> float:
    data = list(values)
    return statistics.median(data) if data else float("nan")


def markers(name: str) -> tuple[str, str]:
    """The HTML comments around the section of a page that benchmark ``name`` owns."""
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def marked_section(doc: Path, name: str) -> str:
    """Section ``name`` of ``doc``, markers included ('' if it has none): what a
    benchmark that rewrites the whole page carries over."""
    start, end = markers(name)
    text = doc.read_text() if doc.exists() else ""
    if start not in text or end not in text:
        return ""
    return start + text.split(start, 1)[1].split(end, 1)[0] + end


def write_section(doc: Path, name: str, body: str, *, heading: str = "") -> None:
    """Put ``body`` between the markers of section ``name`` of ``doc``, leaving the
    rest of the page alone; a page without them gets ``heading`` and the section
    at its end."""
    start, end = markers(name)
    body = body.rstrip("\n")
    block = f"{start}\n{body}\n{end}"
    text = doc.read_text() if doc.exists() else ""
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        lead = f"{heading}\n\n" if heading else ""
        text = (text.rstrip("\n") + "\n\n" if text else "") + lead + block + "\n"
    doc.write_text(text)
