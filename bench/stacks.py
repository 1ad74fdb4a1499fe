"""Summarise py-spy's collapsed stacks (``py-spy record -f raw``): where the CPU went.

    python bench/stacks.py PROFILE.txt [--top 20] [--match relay/]

Prints the share of samples per function as the leaf (own time) and, for frames
whose text contains ``--match``, inclusive (own + callees) shares. ``bench_consume
--py-spy`` records with ``--gil`` (only the thread holding the GIL is sampled), so
shares are of the time the process ran Python code. Stacks with a frame matching
``--exclude`` (imports, the consumer's set-up functions) are dropped: they fall
outside the measured window.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


_PREFIX = re.compile(r"^.*(?:site-packages/|lib/python3\.\d+/)")
_ROOT = str(Path(__file__).resolve().parent.parent) + "/"


def shorten(path: str) -> str:
    """A file path relative to site-packages, the stdlib or the repository."""
    return _PREFIX.sub("", path.replace(_ROOT, "", 1))


def short(frame: str) -> str:
    """``func (path/to/site-packages/pkg/mod.py:12)`` -> ``pkg/mod.py:func``."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    return f"{shorten(m.group('file'))}:{m.group('func')}"


EXCLUDE = ("importlib._bootstrap", "consumer.py:run_", "consumer.py:<module>")


def summarise(path: Path, top: int, match: str, exclude: tuple[str, ...] = EXCLUDE) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [short(f) for f in stack.split(";")]
        if any(x in f for f in frames for x in exclude):
            continue
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            if match in f:
                inclusive[f] += n
    if not total:
        return f"{path}: no samples"
    out = [f"{path.name}: {total} samples (on-CPU Python threads)", "", "own time:"]
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    out += ["", f"inclusive, frames matching {match!r}:"]
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("profiles", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--match", default="relay/")
    parser.add_argument("--exclude", action="append", default=[],
                        help=f"drop stacks with a frame containing this (default: {EXCLUDE})")
    args = parser.parse_args(argv)
    for p in args.profiles:
        print(summarise(p, args.top, args.match, tuple(args.exclude) or EXCLUDE))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
