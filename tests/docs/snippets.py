"""Find the ```python blocks of the guides (docs/*.md), for test_snippets.py."""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)")
NOT_RUN = re.compile(r"<!--\s*not-run:\s*(?P<reason>.+?)\s*-->")
# A block (or a part of one) whose first line is `# path/to/name.py ...` is that
# file of the example.
FILE_COMMENT = re.compile(r"^# (?P<path>(?:[A-Za-z_][\w-]*/)*[A-Za-z_]\w*\.py)\b")


@dataclass(frozen=True)
class Block:
    page: str  # "docs/quickstart.md"
    line: int  # the line of the opening fence (1-based)
    code: str  # dedented
    not_run: str | None  # the reason given by <!-- not-run: reason -->
    file: str | None = None  # "shop/subs.py" when the block is a file of the example

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def guides() -> list[Path]:
    """The guides: docs/*.md (the API reference pages have no code of their own)."""
    return sorted(DOCS.glob("*.md"))


def python_blocks(path: Path) -> list[Block]:
    """The page's ```python blocks, in order, a multi-file block split per file."""
    page = str(path.relative_to(ROOT))
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, lang = match["indent"], match["lang"]
        end = i + 1
        while end < len(lines) and not (
            lines[end].startswith(indent) and lines[end].strip() == "```"
        ):
            end += 1
        if lang == "python":
            previous = next((line for line in reversed(lines[:i]) if line.strip()), "")
            marker = NOT_RUN.search(previous)
            code = textwrap.dedent("\n".join(lines[i + 1 : end]))
            blocks.extend(_split_files(page, i + 1, code, marker["reason"] if marker else None))
        i = end + 1
    return blocks


def _split_files(page: str, fence: int, code: str, not_run: str | None) -> list[Block]:
    lines = code.splitlines()
    if not lines or not FILE_COMMENT.match(lines[0]):
        return [Block(page, fence, code, not_run)]
    starts = [n for n, line in enumerate(lines) if FILE_COMMENT.match(line)]
    parts = []
    for start, stop in zip(starts, [*starts[1:], len(lines)], strict=True):
        path = FILE_COMMENT.match(lines[start])["path"]  # type: ignore[index]
        # Line `fence + start` is the file's comment line, as the fence is a block's.
        body = "\n".join(lines[start + 1 : stop])
        parts.append(Block(page, fence + start, body, not_run, path))
    return parts
