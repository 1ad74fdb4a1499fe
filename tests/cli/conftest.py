"""Fixtures for the CLI tests: a scratch project directory, isolated from the suite."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import relay


class Project:
    """A temporary directory the CLI runs in, with helpers to write modules into it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, relpath: str, source: str = "") -> Path:
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
        return path

    def cli(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``relay-cli ARGS`` in a subprocess, in this directory."""
        return subprocess.run(
            [sys.executable, "-m", "relay.cli", *args],
            cwd=self.root, env=self.env(env), capture_output=True, text=True, timeout=60,
            check=False,
        )

    @staticmethod
    def env(extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items()
            if not k.startswith("RELAY_") and k != "PUBSUB_EMULATOR_HOST"
        }
        env["RELAY_TRANSPORT"] = "memory"
        env.update(extra or {})
        return env


def _defined_under(module: object, root: Path) -> bool:
    locations = [getattr(module, "__file__", None) or "", *list(getattr(module, "__path__", []))]
    return any(loc and Path(loc).resolve().is_relative_to(root.resolve()) for loc in locations)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    """A scratch project as the current directory, on the memory transport.

    Modules the test imports from it and entries it adds to sys.path are removed
    afterwards, so every test can have its own ``subs`` and ``settings`` modules.
    """
    for var in list(os.environ):
        if var.startswith("RELAY_") or var in ("PUBSUB_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("RELAY_TRANSPORT", "memory")
    monkeypatch.chdir(tmp_path)
    modules = set(sys.modules)
    path = list(sys.path)
    try:
        yield Project(tmp_path)
    finally:
        ours = [n for n in set(sys.modules) - modules if _defined_under(sys.modules[n], tmp_path)]
        for name in ours:
            del sys.modules[name]
        sys.path[:] = path
        relay.reset()
