"""The CLI's own lines are written whole, so a log line from another thread cannot split one."""

from __future__ import annotations

import io

from relay.console import say


class Writes(io.StringIO):
    """A stream that remembers each write call, as an unbuffered file would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def write(self, text: str) -> int:
        self.calls.append(text)
        return super().write(text)


def test_say_writes_the_line_and_its_newline_in_one_call() -> None:
    stream = Writes()
    say("relay-cli: ready", stream=stream)
    assert stream.calls == ["relay-cli: ready\n"]


def test_print_would_have_written_two_pieces_another_thread_could_come_between() -> None:
    stream = Writes()
    print("relay-cli: ready", file=stream, flush=True)
    assert stream.calls == ["relay-cli: ready", "\n"]  # why say() exists
