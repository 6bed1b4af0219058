"""Child processes of the bench: start, probe, measure and always kill them.

Theory of operation: every server the bench drives (the mock upstream, the bare stack,
``trio-gateway serve``, optionally the LiteLLM proxy) is a :class:`Server`: a subprocess in its
own session (so its whole process group, workers included, can be killed by the group id the
bench created), on a free loopback port, probed for readiness over HTTP with a deadline.
:class:`Servers` owns all of them and kills every one on exit, also on an exception or a
signal. Measurements read ``/proc`` and psutil for the server's processes (the process and its
children): CPU seconds (user + system), RSS, and the kernel's peak-RSS mark ``VmHWM``, which
:meth:`Server.reset_peak` resets through ``/proc/PID/clear_refs`` so each run gets its own
true peak rather than a sampled one.

Invariants:
    * every wait is bounded (readiness, quiescence, process exit);
    * only processes started here are signalled, by their own process group id.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import psutil

__all__ = [
    "ROOT",
    "Server",
    "Servers",
    "free_port",
    "gateway_config",
    "http_request",
    "litellm_config",
]

ROOT: Final = Path(__file__).resolve().parents[1]
SHIPPED_CONFIG: Final = ROOT / "config.toml"


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_request(
    port: int, method: str, path: str, *, body: bytes = b"", timeout: float = 2.0
) -> tuple[int, bytes]:
    """One small HTTP/1.1 request to 127.0.0.1 (for probes and control calls)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"content-type": "application/json"} if body else {}
        conn.request(method, path, body=body or None, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def gateway_config(
    directory: Path,
    *,
    port: int,
    mock_port: int,
    workers: int = 1,
    max_event_bytes: int | None = None,
    upstream_prefix: str = "",
) -> Path:
    """The shipped ``config.toml`` pointed at the bench's mock, written into ``directory``.

    The ``[mock_upstream]`` section is removed (the bench runs the mock as its own process),
    the bind and upstream ports (plus ``upstream_prefix``, a path such as ``/merged``), the
    ledger path and ``workers`` are replaced, and ``on_client_disconnect`` becomes
    ``"cancel"``: the bench's clients only leave at the end of a run, and draining those
    upstreams would bill the next run. Everything else (keys, routing, the ``mock-*``
    pass-through and ``via-chat/*`` translated models, the other streaming settings) stays
    as shipped.
    """
    text = _without_mock_section(SHIPPED_CONFIG.read_text())
    replacements = {
        "127.0.0.1:8080": f"127.0.0.1:{port}",
        "127.0.0.1:8081": f"127.0.0.1:{mock_port}{upstream_prefix}",
        'path = "trio-gateway.db"': f'path = "{directory / "ledger.db"}"',
        "workers = 1 ": f"workers = {workers} ",
        'on_client_disconnect = "drain"': 'on_client_disconnect = "cancel"',
    }
    if max_event_bytes is not None:
        replacements["max_event_bytes = 83886080"] = f"max_event_bytes = {max_event_bytes}"
    for old, new in replacements.items():
        if old not in text:
            raise RuntimeError(f"config.toml changed: {old!r} not found")
        text = text.replace(old, new)
    if "\n[mock_upstream]" in text:
        raise RuntimeError("config.toml changed: cannot remove the [mock_upstream] section")
    path = directory / "config.toml"
    path.write_text(text)
    return path


def _without_mock_section(text: str) -> str:
    # The section runs from its header to the next blank line.
    out: list[str] = []
    skipping = False
    for line in text.splitlines(keepends=True):
        if line.strip() == "[mock_upstream]":
            skipping = True
        elif skipping and not line.strip():
            skipping = False
        if not skipping:
            out.append(line)
    return "".join(out)


LITELLM_KEY: Final = "sk-bench-0123456789abcdef0123456789abcdef"


def litellm_config(directory: Path, *, mock_port: int) -> Path:
    """A LiteLLM proxy config with the gateway's model names, pointing at the mock.

    ``mock-*`` goes to the mock's Anthropic endpoint (pass-through for an Anthropic client),
    ``via-chat/*`` to its Chat Completions endpoint (LiteLLM translates for an Anthropic
    client; ``use_chat_completions_url_for_anthropic_messages`` keeps it on the streaming Chat
    endpoint, where it would otherwise call the Responses API without streaming and fake the
    stream). No database; the master key is :data:`LITELLM_KEY`.
    """
    text = f"""model_list:
  - model_name: "via-chat/*"
    litellm_params:
      model: "openai/*"
      api_base: "http://127.0.0.1:{mock_port}/v1"
      api_key: "sk-mock"
  - model_name: "mock-*"
    litellm_params:
      model: "anthropic/mock-*"
      api_base: "http://127.0.0.1:{mock_port}"
      api_key: "sk-mock"
litellm_settings:
  drop_params: true
  telemetry: false
  use_chat_completions_url_for_anthropic_messages: true
"""
    path = directory / "litellm.yaml"
    path.write_text(text)
    return path


@dataclass
class Server:
    """One server process of the bench.

    Attributes:
        name: the label in the tables.
        command: the argv.
        port: the loopback port it listens on.
        ready_path: a GET path that answers 200 once it serves.
        env: extra environment variables.
        log: the file its stdout and stderr go to.
        key: the API key callers send.
        host: the address it listens on.
        measured: whether its CPU and memory can be read (it runs here).
    """

    name: str
    command: list[str]
    port: int
    ready_path: str
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    key: str = "sk-demo-key"
    host: str = "127.0.0.1"
    measured: bool = True
    cwd: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 90.0) -> None:
        """Start the process and wait (bounded) until ``ready_path`` answers 200."""
        env = {**os.environ, **self.env}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.cwd,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start; see {self.log}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if http_request(self.port, "GET", self.ready_path, timeout=1.0)[0] == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s; see {self.log}")

    def kill(self) -> None:
        """Kill the process group this bench created for it (bounded wait)."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)

    def restart(self) -> None:
        """A fresh process (fresh memory) on the same port."""
        self.kill()
        self.start()

    @property
    def pid(self) -> int:
        """The main process id."""
        assert self.process is not None, f"{self.name} is not running"
        return self.process.pid

    def processes(self) -> list[psutil.Process]:
        """The server's processes: the main one and its descendants (workers)."""
        main = psutil.Process(self.pid)
        return [main, *main.children(recursive=True)]

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of all its processes so far."""
        total = 0.0
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def rss(self) -> int:
        """Resident bytes of all its processes."""
        return sum(_status_kb(p.pid, "VmRSS") for p in self.processes()) * 1024

    def peak_rss(self) -> int:
        """The largest ``VmHWM`` (peak RSS since the last reset) among its processes."""
        return max(_status_kb(p.pid, "VmHWM") for p in self.processes()) * 1024

    def reset_peak(self) -> None:
        """Reset the kernel's peak-RSS mark of its processes (``clear_refs`` 5)."""
        for proc in self.processes():
            with contextlib.suppress(OSError):
                Path(f"/proc/{proc.pid}/clear_refs").write_text("5")

    def connections(self) -> int:
        """Established client connections (to its listening port) held by its processes."""
        count = 0
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                count += sum(
                    1
                    for c in proc.net_connections("tcp")
                    if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == self.port
                )
        return count


def _status_kb(pid: int, field_name: str) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(rf"^{field_name}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


class Servers:
    """All the bench's servers; a context manager that kills every one on exit."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.all: list[Server] = []

    def __enter__(self) -> Servers:
        signal.signal(signal.SIGTERM, _exit_on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill_all()

    def add(self, server: Server, *, start: bool = True) -> Server:
        """Register ``server`` (killed on exit) and start it."""
        self.all.append(server)
        if start:
            server.start()
        return server

    def kill_all(self) -> None:
        """Kill every registered server."""
        for server in self.all:
            server.kill()

    def python(self, name: str, args: Sequence[str], *, ready_path: str, port: int) -> Server:
        """A server run by this interpreter (the project's venv)."""
        return Server(
            name,
            [sys.executable, *args],
            port,
            ready_path,
            self.directory / f"{name}.log",
            cwd=self.directory,
        )

    def quiesce(self, servers: Sequence[Server], *, limit: float = 15.0) -> float:
        """Wait (at most ``limit`` s) until the servers are idle: under 5 % of a core
        together over a 0.25 s window. Returns the seconds waited."""
        started = time.monotonic()
        measured = [s for s in servers if s.measured and s.process is not None]
        while time.monotonic() - started < limit:
            before = sum(s.cpu_seconds() for s in measured)
            time.sleep(0.25)
            if sum(s.cpu_seconds() for s in measured) - before < 0.0125:
                break
        return time.monotonic() - started


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)
