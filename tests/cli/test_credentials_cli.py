"""``relay-cli`` never prints a credential: not in its error line, its logs or a traceback.

Each case runs ``relay-cli`` in a subprocess with a freshly generated key given
wrongly (in a ``--settings`` module or in ``RELAY_*`` variables), at log level
DEBUG or INFO, in the text or the JSON format, and searches stdout and stderr
for any piece of the key. Every case fails before any network traffic:
``PUBSUB_EMULATOR_HOST`` is unset and the key's token URI is a closed loopback
port.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from relay.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK
from tests.cli.conftest import Project
from tests.keys import corrupted, leaked, service_account_key

INFO, PEM = service_account_key()
KEY_JSON = json.dumps(INFO)
SUBS = "from relay import sub\n\n@sub(topic='orders')\ndef on_order(data, **attrs):\n    pass\n"


def _settings_module(relay: str, prelude: str = "") -> Callable[[Project], list[str]]:
    """A ``conf`` module reading the key from key.json, so its source holds no key."""
    def write(project: Project) -> list[str]:
        project.write("conf.py", "import json\n" + prelude + "KEY = json.load(open("
                      f"{str(project.root / 'key.json')!r}))\nRELAY = {relay}\n")
        return ["--settings", "conf"]
    return write


LEAKY_MIDDLEWARE = """
import relay

class Leaky(relay.BaseMiddleware):
    def setup(self, settings, **kwargs):
        raise RuntimeError("cannot use " + json.dumps(KEY))
"""

#: id: (settings module writer or None, RELAY_* variables, exit code, what stderr says).
CASES: dict[str, tuple[Any, dict[str, str], int, str]] = {
    # the cases 2 and 4: a dict (now taken) and the key's JSON as the path
    "module-json-dict-is-taken": (
        _settings_module("{'GC_CREDENTIALS_JSON': KEY}"), {}, EXIT_OK, "",
    ),
    "module-json-bytes": (
        _settings_module("{'GC_CREDENTIALS_JSON': json.dumps(KEY).encode()}"), {}, EXIT_CONFIG,
        "GC_CREDENTIALS_JSON: expected the key file's contents as a JSON string",
    ),
    "module-path-is-the-key": (
        _settings_module("{'GC_CREDENTIALS_PATH': json.dumps(KEY)}"), {}, EXIT_CONFIG,
        "GC_CREDENTIALS_PATH: expected the key file's path, got a str holding a private key",
    ),
    "module-project-id-is-the-key": (
        _settings_module("{'GC_PROJECT_ID': KEY}"), {}, EXIT_CONFIG,
        "GC_PROJECT_ID: got a dict holding a private key (not shown)",
    ),
    "env-path-is-the-key": (
        None, {"RELAY_GC_CREDENTIALS_PATH": KEY_JSON}, EXIT_CONFIG,
        "GC_CREDENTIALS_PATH: expected the key file's path, got a str holding a private key",
    ),
    "env-json-cut-short": (
        None, {"RELAY_GC_CREDENTIALS_JSON": KEY_JSON[:1000]}, EXIT_CONFIG,
        "GC_CREDENTIALS_JSON is not valid JSON (Unterminated string",
    ),
    "env-path-to-a-pem-file": (
        None, {"RELAY_GC_CREDENTIALS_PATH": "key.pem"}, EXIT_CONFIG,
        "GC_CREDENTIALS_PATH: the file is not valid JSON",
    ),
    "env-client-options-hold-the-key": (
        None, {"RELAY_CLIENT_OPTIONS": json.dumps({"credentials_info": INFO})}, EXIT_CONFIG,
        "CLIENT_OPTIONS: got a dict holding a private key (not shown)",
    ),
    "a-settings-module-error-quoting-the-key": (
        _settings_module("{'MIDDLEWARE': ['conf.Leaky']}", LEAKY_MIDDLEWARE),
        {}, EXIT_FAILURE, "RuntimeError: cannot use {",
    ),
}


def _run(project: Project, case: str, level: str, fmt: str) -> tuple[int, str, str]:
    writer, env, _, _ = CASES[case]
    project.write("subs.py", SUBS)
    project.write("key.json", KEY_JSON)
    project.write("key.pem", PEM)
    args = writer(project) if writer else []
    command = "subs" if CASES[case][2] == EXIT_OK else "run"
    extra = ["--log-level", level] + (["--log-format", fmt] if command == "run" else [])
    done = project.cli(command, *args, *extra, env=env)
    return done.returncode, done.stdout + done.stderr, done.stderr


#: Every case once, at one of the four level/format pairs in turn.
_PAIRS = [("DEBUG", "json"), ("INFO", "text"), ("DEBUG", "text"), ("INFO", "json")]


@pytest.mark.parametrize(
    ("case", "level", "fmt"),
    [(case, *_PAIRS[i % len(_PAIRS)]) for i, case in enumerate(CASES)],
)
def test_a_key_given_wrongly_is_never_printed(
    project: Project, case: str, level: str, fmt: str
) -> None:
    code, output, stderr = _run(project, case, level, fmt)

    assert code == CASES[case][2], output
    assert CASES[case][3] in stderr, stderr
    if code != EXIT_OK:
        assert stderr.count("relay-cli: error: ") == 1, stderr
    assert "PRIVATE KEY" not in output
    assert not leaked(output, INFO) and not leaked(output.replace("\\n", "\n"), INFO)


@pytest.mark.parametrize("level", ["DEBUG", "INFO"])
@pytest.mark.parametrize(("fmt", "transport"), [("text", "pubsub"), ("json", "grpc")])
def test_a_key_google_auth_refuses_fails_the_worker_without_printing_it(
    project: Project, level: str, fmt: str, transport: str
) -> None:
    # It passes the settings' checks (a complete key file), so the worker starts,
    # logs, and fails at its first Pub/Sub call, when google-auth loads the key.
    project.write("subs.py", SUBS)
    bad = corrupted(INFO)
    env = {"RELAY_TRANSPORT": transport, "RELAY_GC_CREDENTIALS_JSON": json.dumps(bad)}

    done = project.cli("run", "--log-level", level, "--log-format", fmt, env=env)

    output = done.stdout + done.stderr
    assert done.returncode == EXIT_CONFIG, output
    assert "relay-cli: error: GC_CREDENTIALS_JSON: not usable service-account credentials" in (
        done.stderr
    )
    assert "PRIVATE KEY" not in output
    assert not leaked(output, bad) and not leaked(output.replace("\\n", "\n"), bad)
