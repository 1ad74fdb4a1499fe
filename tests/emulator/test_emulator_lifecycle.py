"""relay.emulator never leaves a Java process behind, even when start() is cut short."""

from __future__ import annotations

import pytest

from relay.emulator import Emulator, EmulatorError


class InterruptedWhileWaiting(Emulator):
    """Ctrl-C arrives while start() waits for the server to listen."""

    def _ready(self) -> bool:
        assert self.process is not None and self.process.poll() is None  # it was launched
        raise KeyboardInterrupt


def test_an_interrupted_start_stops_the_process() -> None:
    emulator = InterruptedWhileWaiting()
    with pytest.raises(KeyboardInterrupt):
        emulator.start()
    assert emulator.process is not None
    assert emulator.process.poll() is not None  # the launched server is gone


def test_a_start_that_times_out_stops_the_process() -> None:
    emulator = Emulator(startup_timeout=0.01)
    with pytest.raises(EmulatorError, match="did not listen"):
        emulator.start()
    assert emulator.process is not None and emulator.process.poll() is not None
