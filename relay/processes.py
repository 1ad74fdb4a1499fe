"""``relay-cli run --processes N``: one supervisor process and N worker processes.

``Supervisor`` is what ``relay-cli run`` becomes when N > 1 (1, the default,
runs the worker in the process itself, as before):

* It provisions once, as ``PROVISIONING`` says, then starts N children, each
  ``python -m relay.cli run`` with the same settings, ``--subs``/``--root`` and
  log options, and ``--provisioning off``: N children creating the same topics
  and subscriptions at once would race, and would multiply admin calls that
  Pub/Sub rate-limits. A child restarted later does not provision again
  either, as a reopened stream does not. (With ``TRANSPORT`` ``memory`` each
  child has a broker of its own, and provisions it.)
* A child that exits while the supervisor is not stopping is restarted after
  ``restart_delay(failures)`` seconds: 1 s doubling to 60 s, back to 1 s once a
  child has consumed for ``HEALTHY_AFTER`` seconds. Exit code 2 (a
  configuration error) is not retried: the supervisor stops the others and
  exits 2.
* Each child serves its probes on a free loopback port; the supervisor reads
  every child's ``/readyz`` each second, serves the aggregate on
  ``HEALTH_PORT`` (``probe()``), and restarts a child whose own ``/livez`` would
  fail (or whose probes stay silent) for ``HEALTH_FAILURE_THRESHOLD`` seconds.
* SIGTERM or SIGINT is forwarded to every child as SIGTERM; each drains as a
  single worker does. The supervisor waits ``DRAIN_TIMEOUT`` + ``STOP_MARGIN``
  seconds, SIGKILLs what is left, and exits 0 only if every child exited 0.
  A second signal SIGKILLs every child at once and exits 1.

Children stay in the supervisor's process group, so a terminal's Ctrl-C
reaches them too; a child ignores the repeat (only the supervisor escalates).
A child whose supervisor vanished (``kill -9``) stops gracefully within a
second. Children write their logs straight to stderr, tagged ``[worker I pid
P]`` in text and with ``worker`` and ``pid`` keys in JSON; what they print on
stdout is copied to the supervisor's stdout with that tag, except the two lines
the supervisor reads (the probe address, and ``READY``, which it prints itself
once every child consumes).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import signal
import subprocess
import threading
import time
from typing import Any

from relay.commands import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, PROG, READY
from relay.console import say
from relay.health import HealthServer, liveness
from relay.process_child import child_command
from relay.process_health import (
    SupervisorHealth,
    WorkerRun,
    WorkerSlot,
    answer,
    poll_workers,
    worker_status,
)
from relay.settings import Settings
from relay.stop_signals import StopSignals
from relay.subscription import Subscription

__all__ = ["Supervisor", "restart_delay", "supervise"]

logger = logging.getLogger("relay.processes")

RESTART_BACKOFF_MIN = 1.0
RESTART_BACKOFF_MAX = 60.0
#: A child that has consumed this long resets its restart backoff.
HEALTHY_AFTER = 30.0
#: Exits in a row (without HEALTHY_AFTER of consuming between) called a crash loop.
CRASH_LOOP = 5
#: Seconds allowed past DRAIN_TIMEOUT for a child to close its streams and exit.
STOP_MARGIN = 15.0
_TICK = 0.1
_HEALTH_LINE = re.compile(r"health probes at (http://\S+)/livez")


def restart_delay(failures: int) -> float:
    """Seconds before restarting a child that has exited ``failures`` times in a row."""
    return min(RESTART_BACKOFF_MAX, RESTART_BACKOFF_MIN * 2.0 ** max(0, failures - 1))


def _exit_text(code: int) -> str:
    if code >= 0:
        return f"exited with code {code}"
    try:
        return f"was killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"was killed by signal {-code}"


# --------------------------------------------------------- in the supervisor
class Supervisor:
    """Runs ``count`` worker processes until ``stop`` is requested; see the module docstring."""

    def __init__(
        self, args: argparse.Namespace, settings: Settings, subscriptions: list[Subscription],
        stop: StopSignals, *, count: int, prog: str = PROG,
    ) -> None:
        self.args = args
        self.settings = settings
        self.subscriptions = subscriptions
        self.stop = stop
        self.prog = prog
        self.children = [WorkerSlot(i) for i in range(1, count + 1)]
        self.threshold = settings.health_failure_threshold
        self.drain_wait = settings.drain_timeout + STOP_MARGIN
        # An in-memory broker is each process's own: nothing to race for there.
        self.child_provisioning = "create" if settings.transport == "memory" else "off"
        self.provisioned = False
        self.started = False  # every child consumed at once (READY was printed)
        self.stopping = False
        self.stopped = False
        self.heartbeat = time.monotonic()
        self._done = threading.Event()
        self._out = threading.Lock()
        self._env = {**os.environ, "RELAY_HEALTH_HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1"}

    # ------------------------------------------------------------- lifecycle
    def run(self) -> int:
        """Provision, start the children, keep them up, stop them; the exit code."""
        health: HealthServer | None = None
        try:
            if self.settings.health_port is not None:
                health = SupervisorHealth(
                    self, host=self.settings.health_host, port=self.settings.health_port,
                    failure_threshold=self.threshold,
                ).start()
                say(f"{self.prog}: health probes at {health.url}/livez and {health.url}/readyz")
            if not self.stop.requested.is_set():
                self._provision()
            if self.stop.requested.is_set():
                return EXIT_OK
            logger.info("starting %d worker processes", len(self.children))
            for child in self.children:
                self._spawn(child)
            threading.Thread(
                target=poll_workers, args=(self.children, self._done),
                name="relay-processes-poll", daemon=True,
            ).start()
            return self._drain(self._supervise())
        finally:
            self._done.set()
            self._kill_all()  # only after a second signal or an error: nothing is left otherwise
            if health is not None:
                health.stop()

    def _provision(self) -> None:
        from relay import provisioning
        from relay.app import build_transport
        from relay.subscription import check_unique

        resolved = check_unique(s.resolve(self.settings) for s in self.subscriptions)
        wanted = provisioning.desired(resolved, self.settings)
        transport = build_transport(self.settings)
        try:
            provisioning.provision(transport, wanted, self.settings.provisioning)
        finally:
            transport.close()
        self.provisioned = True
        self.heartbeat = time.monotonic()

    def _spawn(self, child: WorkerSlot) -> None:
        child.restart_at = None
        try:
            process = subprocess.Popen(
                child_command(self.args, child.index, provisioning=self.child_provisioning),
                env=self._env,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,  # stderr: ours
            )
        except OSError as exc:
            child.failures += 1
            child.restart_at = time.monotonic() + restart_delay(child.failures)
            child.last_exit = f"could not be started: {exc}"
            logger.error("worker %d could not be started (%s); next try in %.0f s",
                         child.index, exc, restart_delay(child.failures))
            return
        run = child.run = WorkerRun(process, time.monotonic())
        threading.Thread(
            target=self._copy_output, args=(child.index, run),
            name=f"relay-worker-{child.index}-output", daemon=True,
        ).start()
        logger.info("started worker %d (pid %d)", child.index, process.pid)

    def _copy_output(self, index: int, run: WorkerRun) -> None:
        """Read a child's stdout: note its probe address and READY, copy the rest, tagged."""
        stream = run.process.stdout
        assert stream is not None
        tag = f"[worker {index} pid {run.pid}]"
        with stream:
            for raw in stream:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if READY in line:
                    run.consuming = True
                    logger.info("worker %d (pid %d) is consuming", index, run.pid)
                elif run.health_url is None and (found := _HEALTH_LINE.search(line)):
                    run.health_url = found.group(1)
                else:
                    with self._out, contextlib.suppress(OSError, ValueError):
                        say(f"{tag} {line}")

    def _supervise(self) -> int:
        while not self.stop.requested.is_set():
            now = self.heartbeat = time.monotonic()
            for child in self.children:
                code = self._tend(child, now)
                if code is not None:
                    return code
            if not self.started and all(c.run and c.run.consuming for c in self.children):
                self.started = True
                logger.info("all %d workers are consuming", len(self.children))
                say(READY.replace(PROG, self.prog, 1))
            self.stop.requested.wait(_TICK)
        return EXIT_OK

    def _tend(self, child: WorkerSlot, now: float) -> int | None:
        """Restart, kill or check one child; an exit code to stop everything with."""
        run = child.run
        if run is None:
            if child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                self._spawn(child)
            return None
        code = run.process.poll()
        if code is None:
            if run.kill_at is None:
                self._check_live(child, run, now)
            elif now >= run.kill_at:
                logger.error("worker %d (pid %d) did not stop within %.0f s: killing it",
                             child.index, run.pid, self.drain_wait)
                run.process.kill()
            return None
        child.run = None
        child.last_exit = _exit_text(code)
        pid, uptime = run.pid, now - run.started
        if code == EXIT_CONFIG:
            logger.error(
                "worker %d (pid %d) exited with code %d: a configuration error (its error line "
                "is above), which restarting cannot fix; stopping the other workers",
                child.index, pid, code,
            )
            return EXIT_CONFIG
        if run.consuming and uptime >= HEALTHY_AFTER:
            child.failures = 0
        child.failures += 1
        delay = restart_delay(child.failures)
        child.restart_at = now + delay
        why = f" ({run.why})" if run.why else ""
        if child.failures >= CRASH_LOOP:
            logger.error(
                "worker %d (pid %d) %s after %.1f s%s; it is crash-looping: %d exits in a row "
                "without consuming for %.0f s in between (its log lines above say why); "
                "restarting it in %.0f s (at most every %.0f s)", child.index, pid,
                child.last_exit, uptime, why, child.failures, HEALTHY_AFTER, delay,
                RESTART_BACKOFF_MAX,
            )
        else:
            logger.error("worker %d (pid %d) %s after %.1f s%s; restarting it in %.1f s",
                         child.index, pid, child.last_exit, uptime, why, delay)
        return None

    def _check_live(self, child: WorkerSlot, run: WorkerRun, now: float) -> None:
        """Stop (to restart) a child its own ``/livez`` would fail, or whose probes are silent."""
        body = run.body
        silent = now - (run.started if body is None else run.answered)
        if silent > self.threshold:
            reasons = [f"its probes have not answered for {silent:.0f} s"]
        elif body is not None:
            reasons = liveness(body, self.threshold)
        else:
            return
        if reasons:
            run.why = "not live: " + "; ".join(reasons)
            logger.error("worker %d (pid %d) is %s; stopping it, to restart it",
                         child.index, run.pid, run.why)
            self._terminate(run, now)

    def _terminate(self, run: WorkerRun, now: float) -> None:
        if run.kill_at is None:
            run.kill_at = now + self.drain_wait
            with contextlib.suppress(ProcessLookupError):
                run.process.send_signal(signal.SIGTERM)

    def _drain(self, code: int) -> int:
        """SIGTERM every child, wait for them (SIGKILL at the deadline); the exit code."""
        self.stopping = True
        now = time.monotonic()
        running = [c for c in self.children if c.run is not None]
        for child in self.children:
            child.restart_at = None
            if child.run is not None:
                self._terminate(child.run, now)
        if running:
            logger.info("stopping %d worker(s): SIGTERM sent, waiting up to %.0f s for them "
                        "to drain", len(running), self.drain_wait)
        clean = True
        while running:
            now = self.heartbeat = time.monotonic()
            for child in list(running):
                run = child.run
                assert run is not None and run.kill_at is not None
                status = run.process.poll()
                if status is None:
                    if now >= run.kill_at:
                        logger.error("worker %d (pid %d) did not drain within %.0f s: killing it",
                                     child.index, run.pid, self.drain_wait)
                        run.process.kill()
                    continue
                running.remove(child)
                child.run, child.last_exit = None, _exit_text(status)
                if status == EXIT_OK:
                    logger.info("worker %d (pid %d) stopped", child.index, run.pid)
                else:
                    clean = False
                    logger.error("worker %d (pid %d) %s while stopping", child.index,
                                 run.pid, child.last_exit)
            time.sleep(_TICK)
        self.stopped = True
        if code != EXIT_OK:
            return code
        return EXIT_OK if clean else EXIT_FAILURE

    def _kill_all(self) -> None:
        for child in self.children:
            run = child.run
            if run is not None and run.process.poll() is None:
                logger.error("killing worker %d (pid %d)", child.index, run.pid)
                run.process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    run.process.wait(10)

    # ---------------------------------------------------------------- health
    def status(self) -> dict[str, Any]:
        """The supervisor and every worker (``docs/reliability.md``, "Several processes")."""
        now = time.monotonic()
        workers = [worker_status(child, now) for child in self.children]
        return {
            "pid": os.getpid(),
            "processes": len(self.children),
            "started": self.started,
            "stopping": self.stopping or self.stop.requested.is_set(),
            "provisioned": self.provisioned,
            "supervisor_alive": not self.provisioned or now - self.heartbeat < self.threshold,
            "inflight": sum((w["status"] or {}).get("inflight", 0) for w in workers),
            "workers": workers,
        }

    def probe(self, probe: str) -> dict[str, Any]:
        """The JSON body of the supervisor's ``/livez`` or ``/readyz``."""
        status = self.status()
        not_live = None
        if self.stopped:
            not_live = "the workers have stopped"
        elif not status["supervisor_alive"]:
            not_live = (f"the supervisor has not looked at its workers for "
                        f"{time.monotonic() - self.heartbeat:.0f} s")
        return answer(probe, status, not_live=not_live)


def supervise(
    args: argparse.Namespace, settings: Settings, subscriptions: list[Subscription],
    stop: StopSignals, *, count: int, prog: str = PROG,
) -> int:
    """``relay-cli run --processes COUNT``: run a ``Supervisor``; the exit code."""
    if args.health_port is not None:  # --health-port beats HEALTH_PORT, validated the same way
        settings = settings.replace(health_port=args.health_port)
    if settings.transport == "memory":
        logger.warning("TRANSPORT 'memory' with --processes: each worker process has its own "
                       "in-memory broker")
    return Supervisor(args, settings, subscriptions, stop, count=count, prog=prog).run()
