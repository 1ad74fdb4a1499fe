"""What the benchmark scripts share: the payload, the environment guard, medians,
readings of this machine and of processes (``/proc``, ``getrusage``), the JSON
line a child process reports with, the facts a doc section's header states, and
the marked sections of ``docs/`` pages that a benchmark rewrites.

Nothing here talks to the network. ``guard_environment`` points every Google
credential and metadata lookup at loopback so that a library falling back to
Application Default Credentials cannot reach off the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
from collections.abc import Iterable
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

#: The repository's root (the scripts run from it).
ROOT = Path(__file__).resolve().parent.parent
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


# --- readings of this process, of others and of the machine ---------------------

def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def status_kb(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``; ``Threads`` is a count)."""
    status = Path("/proc/self/status").read_text()
    return int(status.split(field + ":", 1)[1].split()[0])


def status_mb(field: str) -> float:
    """``VmRSS``/``VmHWM`` of this process, in MB."""
    return status_kb(field) / 1024


def proc_cpu_seconds(pid: int | None, *, strict: bool = False) -> float:
    """utime + stime of a process, all its threads, from /proc: 0.0 if ``pid`` is
    None or unreadable, unless ``strict`` (then a missing process raises OSError)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        if strict:
            raise
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, as ``/proc/loadavg`` has them ('?' if unread)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


# --- a child process's report: its last stdout line that is a JSON object -------

def emit(out: dict[str, Any]) -> None:
    print(json.dumps(out), flush=True)


def failure(exc: BaseException) -> dict[str, Any]:
    """What a child reports instead of its figures when it raised."""
    return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def last_json(text: str) -> Any:
    """The last line of ``text`` that starts with ``{``, decoded (None if none)."""
    lines = [ln for ln in text.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else None


# --- what a doc section's header states -----------------------------------------

def revision() -> str:
    """HEAD's short hash (read only)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=30, check=False, cwd=ROOT).stdout.strip()
    return "unknown"


def versions(*dists: str) -> str:
    """``"name version"`` of each of ``dists`` that is installed, comma-separated."""
    return ", ".join(f"{d} {metadata.version(d)}" for d in dists
                     if any(metadata.distributions(name=d)))


def linux_python() -> str:
    return f"Linux {platform.release()}, Python {platform.python_version()}"


def run_line(started: datetime, wall_s: float, rev: str) -> str:
    """The ``* Run:`` line: when, how long, and the commit measured."""
    return (f"* Run: {started:%Y-%m-%d %H:%M} UTC, {wall_s / 60:.1f} minutes; relay at commit "
            f"{rev} (working tree as it was, other work in progress)")


def command_line(prefix: str, argv: list[str]) -> str:
    """The command a doc section quotes: ``prefix`` and the arguments, less ``--no-write``."""
    return (prefix + " " + " ".join(a for a in argv if a != "--no-write")).strip()


# --- the docs' marked sections --------------------------------------------------

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
