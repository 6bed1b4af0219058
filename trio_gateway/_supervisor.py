"""``trio-gateway serve`` with ``server.workers`` > 1: one listening socket, N worker processes.

Theory of operation: the supervisor (this process) binds one listening socket per worker,
all on the configured port with ``SO_REUSEPORT`` (and ``TCP_USER_TIMEOUT`` and the backlog,
``_server.listening_socket``), and starts N workers, each ``python -m trio_gateway worker
--fd N``: a full gateway on hypercorn's trio worker, accepting on its inherited socket. The
kernel hashes new connections evenly across the sockets (one shared socket lets whichever
worker wakes first take most of them). A restarted worker gets its predecessor's socket, so
connections hashed to it wait in its backlog for the moment the restart takes instead of
being refused. The supervisor also runs the built-in mock upstream, once, when configured.

- **Metrics** aggregate across workers through prometheus_client's multiprocess mode: the
  supervisor makes a fresh private directory per run (``mkdtemp``, mode 0700) and passes it
  as ``PROMETHEUS_MULTIPROC_DIR``; every worker's scrape sums all workers' files, so counters
  stay monotonic across scrapes whichever worker answers, also past a worker's death (its
  files stay; its live gauges are dropped with ``mark_process_dead``). Two gateways on one host
  never share a directory, and it is removed when the supervisor exits.
- **Signals**: SIGTERM/SIGINT are forwarded to every worker (each then drains gracefully,
  ``_server.serve_gateway``); a second signal is forwarded too, which hurries the workers.
  The supervisor exits 0 when every worker exited 0 after a shutdown, 1 otherwise.
- **A worker that dies** while no shutdown is under way (hypercorn's own multi-worker mode
  then keeps running with one worker fewer and still exits 0) is logged, its metrics gauges
  dropped, and restarted; the ledger rows it left in flight become ``interrupted`` when its
  replacement starts (their owner pid is dead). More than ``_MAX_RESTARTS`` deaths within
  ``_RESTART_WINDOW`` seconds means something is wrong beyond one request: the supervisor
  shuts the others down and exits 1.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import Final

import trio

from ._config import GatewayConfig
from ._metrics import mark_worker_dead, render_directory
from ._mock import MockUpstream
from ._server import (
    ShutdownSignals,
    listening_socket,
    serve_metrics_listener,
    serve_mock,
    split_bind,
)

__all__ = ["run_workers"]

logger = logging.getLogger("trio_gateway.supervisor")

_MAX_RESTARTS: Final = 5
_RESTART_WINDOW: Final = 60.0
#: Seconds a worker gets beyond its graceful shutdown before the supervisor kills it.
_KILL_MARGIN: Final = 30.0


@dataclass
class _Workers:
    config: GatewayConfig
    config_path: str
    fds: list[int]
    env: dict[str, str]
    shutting_down: bool = False
    shutdown_started: trio.Event = field(default_factory=trio.Event)
    failed: bool = False
    processes: dict[int, trio.Process] = field(default_factory=dict)
    deaths: deque[float] = field(default_factory=deque)

    def command(self, index: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "trio_gateway",
            "worker",
            "--config",
            self.config_path,
            "--fd",
            str(self.fds[index]),
        ]

    async def run_one(self, index: int) -> None:
        """Keep worker ``index`` running until a shutdown; restart it when it dies."""
        while True:
            process = await trio.lowlevel.open_process(
                self.command(index),
                pass_fds=(self.fds[index],),
                env=self.env,
                stdin=subprocess.DEVNULL,
            )
            self.processes[index] = process
            logger.info("worker %d started (pid %d)", index, process.pid)
            code = await process.wait()
            _drop_gauges(process.pid)
            if self.shutting_down:
                if code != 0:
                    logger.error("worker %d (pid %d) exited with %d", index, process.pid, code)
                    self.failed = True
                return
            logger.error("worker %d (pid %d) died with %d; restarting", index, process.pid, code)
            now = trio.current_time()
            self.deaths.append(now)
            while self.deaths and self.deaths[0] < now - _RESTART_WINDOW:
                self.deaths.popleft()
            if len(self.deaths) > _MAX_RESTARTS:
                logger.critical(
                    "%d worker deaths within %g s: shutting down", len(self.deaths), _RESTART_WINDOW
                )
                self.failed = True
                self.signal_all(signal.SIGTERM)
                return

    def signal_all(self, signum: signal.Signals) -> None:
        self.shutting_down = True
        self.shutdown_started.set()
        for process in self.processes.values():
            if process.returncode is None:
                process.send_signal(signum)

    def kill_all(self) -> None:
        for process in self.processes.values():
            if process.returncode is None:
                process.kill()


def _drop_gauges(pid: int) -> None:

    mark_worker_dead(pid)


def run_workers(config: GatewayConfig, *, config_path: str) -> int:
    """Run ``config.server.workers`` worker processes until a signal shuts them down.

    Returns:
        The exit code: 0 when every worker shut down cleanly, 1 otherwise.
    """
    first = listening_socket(config, reuse_port=True)
    socks = [first]
    try:
        port = first.getsockname()[1]
        socks += [
            listening_socket(config, reuse_port=True, port=port)
            for _ in range(config.server.workers - 1)
        ]
        for sock in socks:
            sock.set_inheritable(True)
        metrics_dir = tempfile.mkdtemp(prefix="trio-gateway-metrics-")
        previous = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        try:
            env = dict(os.environ)
            workers = _Workers(config, config_path, [sock.fileno() for sock in socks], env)
            trio.run(_supervise, workers)
            return 1 if workers.failed else 0
        finally:
            shutil.rmtree(metrics_dir, ignore_errors=True)
            if previous is None:
                os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
            else:
                os.environ["PROMETHEUS_MULTIPROC_DIR"] = previous
    finally:
        for sock in socks:
            sock.close()


async def _supervise(workers: _Workers) -> None:
    config = workers.config
    signals = ShutdownSignals()
    async with trio.open_nursery() as nursery:
        await nursery.start(signals.watch)
        if config.mock_upstream is not None:
            host, port = split_bind(config.mock_upstream.bind)
            mock = MockUpstream(interval=config.mock_upstream.interval)
            await nursery.start(serve_mock, mock, host, port)
        if config.metrics.bind is not None:
            directory = workers.env["PROMETHEUS_MULTIPROC_DIR"]
            await nursery.start(
                partial(
                    serve_metrics_listener,
                    config.metrics.bind,
                    partial(render_directory, directory),
                    token=config.metrics.token,
                )
            )
        nursery.start_soon(_forward_signals, workers, signals)
        nursery.start_soon(_watchdog, workers)
        async with trio.open_nursery() as pool:  # ends when every worker has shut down
            for index in range(config.server.workers):
                pool.start_soon(workers.run_one, index)
        nursery.cancel_scope.cancel()


async def _watchdog(workers: _Workers) -> None:
    """Kill workers still running long after the shutdown began (a wedged process)."""
    await workers.shutdown_started.wait()
    server = workers.config.server
    grace = server.graceful_timeout + workers.config.streaming.settle_timeout + _KILL_MARGIN
    await trio.sleep(grace)
    logger.error("workers still running %g s after the shutdown began: killing them", grace)
    workers.failed = True
    workers.kill_all()


async def _forward_signals(workers: _Workers, signals: ShutdownSignals) -> None:
    await signals.first.wait()
    workers.signal_all(signal.SIGTERM)
    await signals.second.wait()
    workers.signal_all(signal.SIGTERM)
