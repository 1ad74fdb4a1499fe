"""Start and stop a local Pub/Sub emulator on a free loopback port.

Two servers speak Pub/Sub's gRPC API here, and both are started as a process
of their own, the way a real service sits apart from its clients:

* ``relay`` (the default): relay's own server, ``python -m relay.server``
  (see docs/emulator.md). It needs nothing but relay.
* ``google``: Google's emulator from the Cloud SDK (Java). Its launcher is
  found, in order, from ``RELAY_EMULATOR_BIN``, from
  ``CLOUDSDK_ROOT``/``CLOUDSDK_ROOT_DIR``, or from the SDK root that ``gcloud
  info`` prints. The launcher execs Java, so the process we start is the
  server: stopping it by PID stops the emulator (``gcloud beta emulators
  pubsub start`` would leave Java running).

``Emulator(kind=...)`` picks one; without ``kind``, the ``RELAY_EMULATOR``
environment variable does (``relay`` or ``google``), else ``relay``. Used by
``relay-cli run --emulator``, relay's own test fixtures and ``bench/``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from relay.errors import RelayError

LAUNCHER = Path("platform/pubsub-emulator/bin/cloud-pubsub-emulator")
#: The servers ``Emulator`` can start: relay's own, and Google's (Java).
KINDS = ("relay", "google")
#: The environment variable that picks the default kind.
KIND_VARIABLE = "RELAY_EMULATOR"
#: What each server writes to its log once it listens.
_READY = {"relay": b"relay Pub/Sub server listening on", "google": b"Server started"}


class EmulatorError(RelayError):
    """The emulator could not be found or did not start."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def default_kind() -> str:
    """``RELAY_EMULATOR`` if set (checked), else ``relay``."""
    kind = os.environ.get(KIND_VARIABLE, "").strip() or "relay"
    if kind not in KINDS:
        raise EmulatorError(
            f"{KIND_VARIABLE}={kind!r} is not an emulator relay knows: use one of {KINDS} "
            "(relay: relay's own server, no Java; google: Google's emulator from the Cloud SDK)"
        )
    return kind


def find_launcher() -> Path:
    """The emulator launcher script, or ``EmulatorError`` saying how to install it."""
    explicit = os.environ.get("RELAY_EMULATOR_BIN")
    if explicit:
        path = Path(explicit)
        if path.is_file():
            return path
        raise EmulatorError(f"RELAY_EMULATOR_BIN={explicit!r} does not exist")
    roots = [os.environ.get("CLOUDSDK_ROOT"), os.environ.get("CLOUDSDK_ROOT_DIR")]
    gcloud = shutil.which("gcloud")
    if gcloud:
        try:
            out = subprocess.run(
                [gcloud, "info", "--format=value(installation.sdk_root)"],
                capture_output=True, text=True, timeout=60, check=False,
            )
            roots.append(out.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
        roots.append(str(Path(os.path.realpath(gcloud)).parent.parent))
    for root in roots:
        if root and (Path(root) / LAUNCHER).is_file():
            return Path(root) / LAUNCHER
    raise EmulatorError(
        "the Pub/Sub emulator was not found: install the Cloud SDK with its "
        "'pubsub-emulator' component (gcloud components install pubsub-emulator, or the "
        "google-cloud-cli-pubsub-emulator package), or set RELAY_EMULATOR_BIN to the "
        f"cloud-pubsub-emulator launcher. Looked under: {[r for r in roots if r]}"
    )


class Emulator:
    """A running emulator process. Use as a context manager or call ``stop()``.

    ``kind`` is ``"relay"`` or ``"google"`` (default: ``default_kind()``).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        *,
        kind: str | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise EmulatorError(f"the emulator is only started on loopback, not {host!r}")
        if kind is not None and kind not in KINDS:
            raise EmulatorError(f"emulator kind {kind!r} is not one of {KINDS}")
        self.kind = kind or default_kind()
        self.host = host
        self.port = port or free_port(host)
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (kept open for the process)
            prefix="relay-emulator-", suffix=".log", delete=False
        )

    @property
    def label(self) -> str:
        """What the server is, for messages: relay's or Google's."""
        return "relay's Pub/Sub server" if self.kind == "relay" else "Google's Pub/Sub emulator"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> Emulator:
        """Launch the server and wait until it listens; on any failure or
        interruption (Ctrl-C while waiting), the process is stopped before the
        error propagates, so no Java is ever left behind."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _command(self) -> list[str]:
        if self.kind == "relay":
            return [sys.executable, "-m", "relay.server", "--host", self.host,
                    "--port", str(self.port)]
        launcher = find_launcher()
        data_dir = tempfile.mkdtemp(prefix="relay-emulator-data-")
        return [str(launcher), f"--host={self.host}", f"--port={self.port}", f"--dir={data_dir}"]

    def _start(self) -> Emulator:
        self.process = subprocess.Popen(
            self._command(),
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EmulatorError(
                    f"{self.label} exited with code {self.process.returncode} at start; "
                    f"its log: {self.log_tail()}"
                )
            if self._ready():
                return self
            time.sleep(0.1)
        raise EmulatorError(
            f"{self.label} did not listen on {self.address} within {self.startup_timeout} s; "
            f"its log: {self.log_tail()}"
        )

    def _ready(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                pass
        except OSError:
            return False
        with open(self._log.name, "rb") as fh:
            return _READY[self.kind] in fh.read()

    def log_tail(self, limit: int = 2000) -> str:
        try:
            with open(self._log.name, "rb") as fh:
                return fh.read()[-limit:].decode("utf-8", "replace")
        except OSError:
            return "<no log>"

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server by its PID (TERM, then KILL). Idempotent."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running_emulator(port: int | None = None, kind: str | None = None) -> Iterator[Emulator]:
    """Start an emulator and point ``PUBSUB_EMULATOR_HOST`` at it for the block."""
    previous = os.environ.get("PUBSUB_EMULATOR_HOST")
    with Emulator(port=port, kind=kind) as emulator:
        os.environ["PUBSUB_EMULATOR_HOST"] = emulator.address
        try:
            yield emulator
        finally:
            if previous is None:
                os.environ.pop("PUBSUB_EMULATOR_HOST", None)
            else:
                os.environ["PUBSUB_EMULATOR_HOST"] = previous
