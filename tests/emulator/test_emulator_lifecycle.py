"""relay.emulator never leaves a server process behind (Java, or relay's own), even
when start() is cut short."""

from __future__ import annotations

import pytest

from relay.emulator import Emulator, EmulatorError


class InterruptedWhileWaiting(Emulator):
    """Ctrl-C arrives while start() waits for the server to listen."""

    def _ready(self) -> bool:
        assert self.process is not None and self.process.poll() is None  # it was launched
        raise KeyboardInterrupt


KINDS = pytest.mark.parametrize("kind", ["relay", "google"])


@KINDS
def test_an_interrupted_start_stops_the_process(kind: str) -> None:
    emulator = InterruptedWhileWaiting(kind=kind)
    with pytest.raises(KeyboardInterrupt):
        emulator.start()
    assert emulator.process is not None
    assert emulator.process.poll() is not None  # the launched server is gone


@KINDS
def test_a_start_that_times_out_stops_the_process(kind: str) -> None:
    emulator = Emulator(kind=kind, startup_timeout=0.01)
    with pytest.raises(EmulatorError, match="did not listen"):
        emulator.start()
    assert emulator.process is not None and emulator.process.poll() is not None


def test_an_unknown_kind_names_the_two_there_are(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EmulatorError, match=r"\('relay', 'google'\)"):
        Emulator(kind="java")
    monkeypatch.setenv("RELAY_EMULATOR", "gogle")
    with pytest.raises(EmulatorError, match="RELAY_EMULATOR='gogle' is not an emulator"):
        Emulator()
