"""Users' type checkers see publish's real parameters (mypy run on two snippets).

``relay.publish`` and friends take ``Publisher``'s own signatures, so a wrong
argument type or a misread result is an error in the user's editor and CI.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

GOOD = '''
import asyncio
from concurrent.futures import Future

import relay


def sync() -> None:
    future: Future[str] = relay.publish("orders", {"id": 1}, ordering_key="k", source="web")
    message_id: str = future.result()
    results: relay.PublishResults = relay.publish_many("orders", [1, relay.Item(2, kind="x")])
    ids: list[str | None] = results.message_ids
    print(message_id, ids)


async def asynchronous() -> None:
    message_id: str = await relay.apublish("orders", {"id": 1}, timeout=2.0, source="web")
    results = await relay.apublish_many("orders", [{"id": 2}], raise_exception=False)
    ok: bool = results.ok
    print(message_id, ok)
'''

BAD = '''
import relay

relay.publish("orders", {}, ordering_key=5)
relay.publish("orders", {}, source=1)
relay.publish("orders", {}, blocking="yes")
count: int = relay.publish("orders", {}).result()


async def main() -> None:
    not_awaited: str = relay.apublish("orders", {})
    await relay.apublish("orders", {}, timeout="soon")
    relay.publish_many("orders", [1], timeout="soon")
'''


def mypy(tmp_path: Path, source: str) -> list[str]:
    path = tmp_path / "snippet.py"
    path.write_text(source)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental",
         "--cache-dir", str(tmp_path / "cache"), str(path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return [line for line in done.stdout.splitlines() if ": error:" in line]


def test_correct_calls_type_check(tmp_path: Path) -> None:
    assert mypy(tmp_path, GOOD) == []


def test_wrong_arguments_and_misread_results_are_type_errors(tmp_path: Path) -> None:
    errors = mypy(tmp_path, BAD)
    lines = sorted(int(re.search(r":(\d+): error", e).group(1)) for e in errors)  # type: ignore[union-attr]
    # Every bad line (4-7, 11-13) is flagged, each once or more, and nothing else.
    assert sorted(set(lines)) == [4, 5, 6, 7, 11, 12, 13], "\n".join(errors)
    joined = "\n".join(errors)
    assert '"ordering_key" has incompatible type "int"; expected "str"' in joined
    assert '"source" has incompatible type "int"; expected "str"' in joined
    assert "Coroutine" in joined  # an apublish that was not awaited
