"""The worker side of ``relay-cli run --processes N``: how many, the command line
each child runs, and the tag its log lines carry (``relay.processes`` is the
supervisor that starts them)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from relay.logs import TEXT_DATEFMT, TEXT_FORMAT, TextFormatter

__all__ = ["child_command", "cpu_count", "process_count", "tag_child_logs"]


def cpu_count() -> int:
    """CPUs this process may run on: its affinity (Linux; what a container's cpuset
    allows), else ``os.cpu_count()``. A CPU quota (``cpu.max``) is not seen."""
    affinity = getattr(os, "sched_getaffinity", None)
    if affinity is not None:
        return max(1, len(affinity(0)))
    return os.cpu_count() or 1


def process_count(text: str) -> int:
    """``--processes``: ``auto`` (``cpu_count()``) or a whole number of at least 1."""
    if text.strip().lower() == "auto":
        return cpu_count()
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(f"{text!r} is not a number of processes: give 1 or more, or auto")
    return count


class _Tag(logging.Filter):
    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index
        self.pid = os.getpid()

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.index  # JSON logs: "worker" and "pid" keys
        record.pid = self.pid
        return True


class _TaggedText(TextFormatter):
    """``TEXT_FORMAT`` with ``[worker I pid P]`` before the logger's name."""

    def __init__(self, tag: str) -> None:
        logging.Formatter.__init__(
            self, TEXT_FORMAT.replace("%(name)s", f"{tag} %(name)s"), datefmt=TEXT_DATEFMT
        )


def tag_child_logs(index: int) -> None:
    """Make a child's log lines say which worker wrote them (text: ``[worker I pid P]``)."""
    tag = f"[worker {index} pid {os.getpid()}]"
    for handler in logging.getLogger().handlers:
        handler.addFilter(_Tag(index))
        if type(handler.formatter) is TextFormatter:  # relay-cli's, not the application's
            handler.setFormatter(_TaggedText(tag))


def child_command(args: argparse.Namespace, index: int, *, provisioning: str = "off") -> list[str]:
    """The command line of child ``index``: ``relay-cli run`` as the supervisor was run."""
    command = [
        sys.executable, "-m", "relay.cli", "run", "--root", os.path.abspath(args.root),
        "--log-level", args.log_level, "--provisioning", provisioning, "--health-port", "0",
        "--worker-index", str(index), "--supervisor-pid", str(os.getpid()),
    ]
    if args.settings:
        command += ["--settings", args.settings]
    if args.log_format:
        command += ["--log-format", args.log_format]
    if args.subs:
        command += ["--subs", *args.subs]
    return command
