"""``python -m relay.server``: serve until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from relay.console import say
from relay.server.server import PubSubServer, ServerError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m relay.server", description="relay's in-memory Pub/Sub server"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8085, help="0 for a free port")
    parser.add_argument(
        "--max-workers", type=int, default=1024, metavar="N",
        help="calls served at once, each streaming pull included (default: 1024)",
    )
    parser.add_argument(
        "--allow-remote", action="store_true",
        help="listen on a non-loopback host and push to non-loopback endpoints (the "
        "server has no authentication)",
    )
    args = parser.parse_args(argv)
    try:
        server = PubSubServer(
            args.host, args.port, allow_remote=args.allow_remote, max_workers=args.max_workers
        ).start()
    except ServerError as exc:
        say(f"error: {exc}", stream=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    say(f"relay Pub/Sub server listening on {server.address}")
    while not stop.wait(0.5):
        pass
    server.stop(grace=1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
