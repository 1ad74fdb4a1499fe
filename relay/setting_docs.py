"""The settings tables of docs/settings.md, made from ``relay.setting_specs``.

The tables sit between marker comments (``<!-- settings-table:start ... -->`` and
``<!-- settings-table:end -->``, the same with ``settings-env``); everything
else in the page is written by hand. To regenerate them after changing a
declaration::

    python -m relay.setting_docs --write docs/settings.md

``--check`` (the default) prints the difference and exits 1 if the page is not
what the declarations give; tests/unit/test_setting_specs.py does the same.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from relay.setting_specs import SETTINGS, Setting
from relay.setting_values import ENV_FORMS

COMMAND = "python -m relay.setting_docs --write docs/settings.md"
NOTE = f"generated from relay/setting_specs.py by `{COMMAND}`: edit the declarations, not this"
BLOCKS = ("settings-table", "settings-env")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _default(spec: Setting) -> str:
    if spec.default_text:
        return spec.default_text
    value: Any = spec.default
    if value is None:
        return "None"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value!r}`"


def reference_table() -> str:
    """One row per setting: key, type, default, what is allowed, what it is for."""
    rows = ["| Key | Type | Default | Allowed | Description |", "|---|---|---|---|---|"]
    for spec in SETTINGS:
        cells = (f"`{spec.key}`", spec.type, _default(spec), spec.rule.allowed() or "any",
                 spec.description)
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(rows)


def environment_table() -> str:
    """One row per environment form: the keys read that way, the format, an example."""
    rows = ["| Kind | Keys | Format | Example |", "|---|---|---|---|"]
    for form in ENV_FORMS:
        keys = ", ".join(f"`{s.key}`" for s in SETTINGS if s.env == form)
        if keys:
            rows.append(f"| {form.kind} | {keys} | {_cell(form.format)} | {form.example} |")
    return "\n".join(rows)


def render(page: str) -> str:
    """``page`` with each generated block replaced by what the declarations give."""
    tables = {"settings-table": reference_table(), "settings-env": environment_table()}
    for block in BLOCKS:
        start, end = f"<!-- {block}:start", f"<!-- {block}:end -->"
        if page.count(start) != 1 or page.count(end) != 1:
            raise ValueError(f"the page needs one {start} ... --> and one {end} line")
        head, rest = page.split(start, 1)
        _, tail = rest.split(end, 1)
        page = f"{head}{start}: {NOTE} -->\n{tables[block]}\n{end}{tail}"
    return page


def difference(path: Path) -> str:
    """The unified diff from ``path`` to what it should be; "" if it is up to date."""
    text = path.read_text(encoding="utf-8")
    lines = difflib.unified_diff(
        text.splitlines(keepends=True), render(text).splitlines(keepends=True),
        fromfile=f"{path} (as it is)", tofile=f"{path} (from the declarations)",
    )
    return "".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m relay.setting_docs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", nargs="?", default="docs/settings.md", type=Path)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the tables in PATH")
    mode.add_argument("--check", action="store_true", help="exit 1 if PATH is out of date")
    args = parser.parse_args(argv)
    if args.write:
        args.path.write_text(render(args.path.read_text(encoding="utf-8")), encoding="utf-8")
        return 0
    diff = difference(args.path)
    if diff:
        sys.stdout.write(f"{diff}\n{args.path} is out of date; run: {COMMAND}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
