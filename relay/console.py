"""The command line's own lines: each written whole, in one call.

``print(text)`` writes the text and the newline separately; when Python runs
unbuffered (``PYTHONUNBUFFERED``, ``python -u``, common in containers) those are
two writes, and a log line from another thread sharing the same file can land
between them, leaving a half line and a blank one. ``say`` writes one line at
once and flushes, so a log collector reading stdout and stderr together sees
whole lines.
"""

from __future__ import annotations

import sys
from typing import TextIO


def say(text: str, *, stream: TextIO | None = None) -> None:
    """Write ``text`` and a newline to ``stream`` (stdout by default) in one write."""
    out = sys.stdout if stream is None else stream
    out.write(text + "\n")
    out.flush()
