"""Run one page's snippets (a JSON list on stdin) in this fresh process.

Run by test_snippets.py with the working directory a temporary folder. Every
block runs in the page's one namespace, in order; a block that is a file of the
example is written there (under its path) and imported, its names added to the
namespace. Code is compiled with the page's name and line numbers, so a
traceback points at the page. Then every ``test_*`` function the page defined
is called (fixtures: ``relay_memory``, ``pubsub_emulator``, and those the
page's prelude provides in its ``fixtures`` dict). A prelude's ``after_block``,
if it defines one, is called with each block (its ``line`` and ``file``) once
the block has run.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import importlib
import inspect
import json
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def fixture(name: str, provided: dict[str, Any]) -> Iterator[Any]:
    if name in provided:  # a context manager factory of the page's prelude
        with provided[name]() as value:
            yield value
    elif name == "relay_memory":
        from relay.testing import memory_app

        with memory_app() as env:
            yield env
    elif name == "pubsub_emulator":
        from relay.emulator import running_emulator

        with running_emulator() as emulator:
            yield emulator
    else:
        raise LookupError(f"no fixture {name!r} for a snippet's test")


def import_file(relative: str, code: str, line: int) -> dict[str, Any]:
    path = Path(relative)
    for parent in reversed(path.parents[:-1]):
        parent.mkdir(exist_ok=True)
        (parent / "__init__.py").touch()
    # Padded so that the file's line numbers are the page's.
    path.write_text("\n" * line + code + "\n")
    dotted = ".".join(path.with_suffix("").parts)
    dotted = dotted.removesuffix(".__init__")
    importlib.invalidate_caches()
    if dotted in sys.modules:  # a package imported (empty) before its __init__.py block
        module = importlib.reload(sys.modules[dotted])
    else:
        module = importlib.import_module(dotted)
    return {k: v for k, v in vars(module).items() if not k.startswith("__")}


def main() -> int:
    spec = json.load(sys.stdin)
    page, prelude, blocks = spec["page"], spec["prelude"], spec["blocks"]
    sys.path.insert(0, str(Path.cwd()))
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    namespace: dict[str, Any] = {"__name__": "snippets"}
    exec(compile(prelude, f"<prelude of {page} in tests/docs/test_snippets.py>", "exec"), namespace)
    where = page
    after_block = namespace.get("after_block")
    try:
        for block in blocks:
            where = f"{page}:{block['line']}" + (f" ({block['file']})" if block["file"] else "")
            if block["file"]:
                namespace.update(import_file(block["file"], block["code"], block["line"]))
            else:
                source = "\n" * block["line"] + block["code"]
                code = compile(source, page, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
                result = eval(code, namespace)
                if inspect.iscoroutine(result):
                    loop.run_until_complete(result)
            if callable(after_block):
                after_block(block)
        tests = [
            (name, value)
            for name, value in namespace.items()
            if name.startswith("test_") and inspect.isfunction(value)
        ]
        for name, test in tests:
            where = f"{page}: {name}() (line {test.__code__.co_firstlineno})"
            with contextlib.ExitStack() as stack:
                kwargs = {
                    param: stack.enter_context(fixture(param, namespace.get("fixtures", {})))
                    for param in inspect.signature(test).parameters
                }
                result = test(**kwargs)
                if inspect.iscoroutine(result):
                    loop.run_until_complete(result)
        cleanup = namespace.get("cleanup")
        if callable(cleanup):
            cleanup()
    except BaseException:
        traceback.print_exc()
        print(f"\nSNIPPET FAILED: {where}", file=sys.stderr)
        return 1
    print(f"ran {len(blocks)} blocks and {len(tests)} tests of {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
