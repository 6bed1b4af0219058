"""The benchmark suite: one invocation runs the whole scenario matrix and prints the tables.

Theory of operation: the bench starts, on free loopback ports, the mock upstream
(``trio-gateway mock-upstream --interval 0``, the baseline), the bare hypercorn-trio stack
(``bench/bare_stack.py``, the stack's own ceiling) and ``trio-gateway serve`` on the shipped
config pointed at that mock (one worker; a second instance with two workers for the scaling
rows), plus the LiteLLM proxy (``--litellm VENV``) and any ``--extra-url`` gateway. Every
scenario is one run of ``bench/load.py`` (a separate process, so its CPU is its own) against
one column (a server and a mode): pass-through (``mock-text:...``, same protocol) or
translated (``via-chat/mock-text:...``, an Anthropic client on the Chat upstream). Around each
run it reads the server's CPU seconds (psutil, all its processes) and its peak RSS (the
kernel's ``VmHWM``, reset before the run), then waits until the servers are idle again
(bounded) so a run does not pay for the previous one's leftovers (drains after the client
left).

Groups (``--groups``, all by default): ``paced`` (20 tokens 50 ms apart at 128 concurrent
streams, first on a fresh gateway: peak RSS; only content deltas are paced, the mock's
``token_pace``), ``peer`` (20 tokens at 32 streams through each gateway: the comparison
with LiteLLM), ``matrix`` (20 and 500 tokens x gap 0 and
10 ms x concurrency 1, 64, 512), ``length`` (20 to 5 000 tokens at 4 streams, whole streams
only: CPU per request against the stream's length), ``protocols`` (Chat and Responses
pass-through), ``scaling``
(one vs two workers), ``idle`` (1 000 streams held open at one event per 5 s: RSS per stream,
on fresh processes), ``large`` (one 64 MiB event through the gateway: intact, peak RSS).
``--repeat N`` runs everything N times (interleaved) and the tables show medians.

Invariants:
    * every run is bounded (``load.py --seconds`` and a subprocess timeout; every wait has a
      limit), and every child process is killed at the end, also on error or SIGTERM;
    * the baseline of every row is the mock called directly in the same invocation.

    python bench/run.py --repeat 3 --plot bench/plots --litellm /tmp/litellm-venv
    python bench/run.py --quick
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import native
from _procs import (
    LITELLM_KEY,
    ROOT,
    Server,
    Servers,
    free_port,
    gateway_config,
    http_request,
    litellm_config,
)
from _report import Column, Row, Sample, render_report

LOAD: Final = Path(__file__).resolve().parent / "load.py"
BARE: Final = Path(__file__).resolve().parent / "bare_stack.py"
HUGE_BYTES: Final = 67108864
GROUPS: Final = ("paced", "peer", "matrix", "length", "protocols", "scaling", "idle", "large")
SCALING: Final = ("trio_gateway fast", "trio_gateway x2")
#: The scaling gateways of the native harness (``native.py``: wrk and nginx), one worker first.
NATIVE: Final = ("trio_gateway wrk+nginx", "trio_gateway wrk+nginx x2")


PACED: Final = Row(20, 0.05, 128, seconds=7.0, ramp=1.25, measure_after=1.5, token_pace=True)
PEER: Final = Row(20, 0.0, 32)  # the comparison with another gateway


@dataclass(frozen=True)
class Settings:
    """How big the runs are (full or ``--quick``)."""

    seconds: float = 3.0
    tokens: tuple[int, ...] = (20, 500)
    gaps: tuple[float, ...] = (0.0, 0.01)
    concurrency: tuple[int, ...] = (1, 64, 512)
    paced: Row = PACED
    peer: Row = PEER
    protocol_rows: tuple[Row, ...] = (
        Row(500, 0.0, 64, path="/v1/chat/completions"),
        Row(500, 0.0, 64, path="/v1/responses"),
    )
    protocol_columns: tuple[str, ...] = ("mock", "bare", "trio_gateway pass")
    scaling_rows: tuple[Row, ...] = (Row(500, 0.0, 64), Row(20, 0.0, 64))
    native_warmup: float = 1.0
    idle_servers: tuple[str, ...] = ("bare", "trio_gateway")
    idle_streams: int = 1000
    idle_gap: float = 5.0
    idle_ramp: float = 2.5
    idle_hold: float = 5.0
    huge_bytes: int = HUGE_BYTES
    quiesce_limit: float = 15.0
    #: The ``length`` group: stream lengths (tokens), at ``length_concurrency`` streams, each
    #: length run to about ``length_events`` events in whole streams (at least 25).
    length_tokens: tuple[int, ...] = (20, 500, 2000, 5000)
    length_concurrency: int = 4
    length_events: int = 30_000
    #: The ``scaling`` group's machine calibration: additions in the fixed CPU-bound loop
    #: run once alone and as two copies at once (:func:`run_machine_pair`).
    pair_loop: int = 15_000_000


QUICK: Final = Settings(
    seconds=0.6,
    tokens=(20,),
    gaps=(0.0,),
    concurrency=(4,),
    paced=Row(20, 0.02, 8, seconds=1.2, ramp=0.2, measure_after=0.3, token_pace=True),
    peer=Row(20, 0.0, 2),
    protocol_rows=(
        Row(20, 0.0, 2, path="/v1/chat/completions"),
        Row(20, 0.0, 2, path="/v1/responses"),
    ),
    protocol_columns=("mock", "trio_gateway pass"),
    scaling_rows=(Row(20, 0.0, 4),),
    native_warmup=1.0,
    idle_servers=("trio_gateway",),
    idle_streams=20,
    idle_gap=1.0,
    idle_ramp=0.2,
    idle_hold=1.6,
    huge_bytes=1 << 20,
    quiesce_limit=3.0,
    length_tokens=(10, 40, 160),
    length_events=2_000,
    pair_loop=500_000,
)


@dataclass
class Bench:
    """The servers, the columns and the collected samples of one invocation."""

    args: argparse.Namespace
    settings: Settings
    servers: Servers
    by_name: dict[str, Server] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    columns: list[Column] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def server(self, name: str) -> Server:
        return self.by_name[name]

    def measured(self) -> list[Server]:
        return [s for s in self.by_name.values() if s.measured and s.process is not None]

    def log(self, text: str) -> None:
        sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {text}\n")
        sys.stderr.flush()


# --- servers --------------------------------------------------------------------------------


def start_servers(bench: Bench) -> None:
    """Start the mock, the bare stack, the gateway(s), LiteLLM; register the extra URLs."""
    servers, directory = bench.servers, bench.servers.directory
    mock_port = free_port()
    mock = servers.python(
        "mock",
        ["-m", "trio_gateway", "mock-upstream", "--port", str(mock_port), "--interval", "0"],
        ready_path="/v1/models",
        port=mock_port,
    )
    bare_port = free_port()
    bare = servers.python(
        "bare", [str(BARE), "--port", str(bare_port)], ready_path="/v1/models", port=bare_port
    )
    # (name, workers, max_event_bytes, upstream port, upstream path prefix)
    gateways: list[tuple[str, int, int | None, int, str]] = [
        ("trio_gateway", 1, None, mock_port, "")
    ]
    groups = set(bench.args.groups)
    if "scaling" in groups:
        # Against the bare stack's merged endpoint: the mock would be the bottleneck.
        gateways.append(("trio_gateway fast", 1, None, bare_port, "/merged"))
        gateways.append(("trio_gateway x2", 2, None, bare_port, "/merged"))
    if "large" in groups:
        gateways.append(("trio_gateway big", 1, 2 * bench.settings.huge_bytes, mock_port, ""))
    native_port = 0
    if "scaling" in groups:
        missing = native.missing_tools()
        if missing:
            bench.notes.append(
                f"The native scaling harness did not run: {' and '.join(missing)} not on PATH "
                "(Debian: `apt-get install wrk nginx`)."
            )
        else:
            # Started per row (``run_native``): nginx serves the row's bytes.
            native_port = free_port()
            for name, workers in zip(NATIVE, (1, 2), strict=True):
                gateways.append((name, workers, None, native_port, ""))
    bench.log("starting the mock, the bare stack and the gateway(s)")
    for server in (mock, bare):
        bench.by_name[server.name] = servers.add(server)
    for name, workers, max_event, upstream_port, prefix in gateways:
        port = free_port()
        folder = directory / name.replace(" ", "_")
        folder.mkdir()
        config = gateway_config(
            folder,
            port=port,
            mock_port=upstream_port,
            workers=workers,
            max_event_bytes=max_event,
            upstream_prefix=prefix,
        )
        server = servers.python(
            name.replace(" ", "_"),
            ["-m", "trio_gateway", "serve", "--config", str(config)],
            ready_path="/readyz",
            port=port,
        )
        server = replace(server, name=name)
        # The large-event gateway starts only for its run (fresh memory), the native
        # harness's gateways only for theirs (their upstream starts with them).
        later = name == "trio_gateway big" or name in NATIVE
        bench.by_name[name] = servers.add(server, start=not later)
    if native_port:
        nginx = native.nginx_server(directory / "nginx", "nginx", native_port, b"")
        bench.by_name["nginx"] = servers.add(nginx, start=False)
    if bench.args.litellm:
        port = free_port()
        config = litellm_config(directory, mock_port=mock_port)
        litellm = Server(
            "litellm",
            [
                str(Path(bench.args.litellm) / "bin" / "litellm"),
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--num_workers",
                "1",
            ],
            port,
            "/health/liveliness",
            directory / "litellm.log",
            env={
                "LITELLM_MASTER_KEY": LITELLM_KEY,
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "LITELLM_TELEMETRY": "False",
            },
            key=LITELLM_KEY,
            cwd=directory,
        )
        bench.log("starting LiteLLM (about 10 s)")
        bench.by_name["litellm"] = servers.add(litellm)
    for spec in bench.args.extra_url:
        name, _, url = spec.rpartition("=")
        parts = urlsplit(url)
        name = name or f"{parts.hostname}:{parts.port}"
        extra = Server(
            name,
            [],
            parts.port or 80,
            "/",
            directory / f"{name}.log",
            key=bench.args.extra_key,
            host=parts.hostname or "127.0.0.1",
            measured=False,
        )
        bench.by_name[name] = servers.add(extra, start=False)
    others = [name for name, s in bench.by_name.items() if name == "litellm" or not s.measured]
    scaling = [name for name in (*SCALING, *NATIVE) if name in bench.by_name]
    bench.columns = make_columns(["trio_gateway", *others], scaling)


def make_columns(gateways: Sequence[str], scaling: Sequence[str]) -> list[Column]:
    """The columns of the tables: the baselines, the bare stack, every gateway x mode, and
    the scaling gateways (``scaling``, one worker first)."""
    columns = [
        Column("mock", "mock", kind="baseline"),
        Column("mock chat", "mock", kind="baseline", path="/v1/chat/completions"),
        Column("bare", "bare", kind="bare"),
        Column("bare merged", "bare", kind="bare", path_prefix="/merged", gap0_only=True),
    ]
    for name in gateways:
        columns.append(Column(f"{name} pass", name, kind="gateway", gateway=name, mode="pass"))
        columns.append(
            Column(
                f"{name} translated",
                name,
                kind="gateway",
                gateway=name,
                mode="translated",
                model_prefix="via-chat/",
                baseline="mock chat",
            )
        )
    for name in scaling:  # one worker: the baseline of its harness's two-worker column
        base = f"{NATIVE[0] if name in NATIVE else SCALING[0]} pass"
        columns.append(Column(f"{name} pass", name, kind="gateway", mode="pass", baseline=base))
    return columns


def column(bench: Bench, label: str) -> Column:
    return next(c for c in bench.columns if c.label == label)


# --- one run ----------------------------------------------------------------------------------


def run_cell(
    bench: Bench,
    group: str,
    row: Row,
    col: Column,
    repeat: int,
    *,
    extra: Sequence[str] = (),
    model: str | None = None,
    during: Callable[[float], None] | None = None,
) -> Sample:
    """One load run of ``row`` against ``col``, with the server's CPU and peak RSS."""
    server = bench.server(col.server)
    seconds = row.seconds if row.seconds else bench.settings.seconds
    model = model or f"{col.model_prefix}mock-{row.spec}"
    command = [
        sys.executable,
        str(LOAD),
        "--json",
        "--host",
        server.host,
        "--port",
        str(server.port),
        "--path",
        col.path_prefix + (col.path or row.path),
        "--model",
        model,
        "--key",
        server.key,
        "--concurrency",
        str(row.concurrency),
        "--seconds",
        f"{seconds:g}",
        "--ramp",
        f"{row.ramp:g}",
        "--measure-after",
        f"{row.measure_after:g}",
        *extra,
    ]
    if server.measured:
        server.reset_peak()
        cpu_before = server.cpu_seconds()
    busy_before = machine_cpu()
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        while process.poll() is None:
            elapsed = time.monotonic() - started
            if elapsed > seconds + 60:
                process.kill()
                break
            if during is not None:
                during(elapsed)
            time.sleep(0.05)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    if process.returncode != 0:
        raise RuntimeError(f"load.py failed ({process.returncode}): {stderr.decode()[-2000:]}")
    load = json.loads(stdout)
    sample = Sample(group=group, row=row.label, column=col.label, repeat=repeat, load=load)
    busy_after = machine_cpu()
    sample.machine_busy = (busy_after[0] - busy_before[0]) / max(
        busy_after[1] - busy_before[1], 1e-9
    )
    if server.measured:
        sample.server_cpu_s = server.cpu_seconds() - cpu_before
        sample.server_peak_rss = server.peak_rss()
        sample.server_rss = server.rss()
    bench.samples.append(sample)
    bench.log(f"{group:9} {row.label:24} {col.label:26} {sample.brief()}")
    waited = bench.servers.quiesce(bench.measured(), limit=bench.settings.quiesce_limit)
    if waited >= bench.settings.quiesce_limit:
        bench.log(f"  (servers still busy after {waited:.0f} s; going on)")
    _reset_mock(bench)
    return sample


def machine_cpu() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, wall seconds) so far: /proc/stat's ``cpu``
    line (busy = everything but idle and iowait)."""
    fields = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    busy = sum(fields) - fields[3] - fields[4]
    return busy / ticks, time.monotonic()


def _reset_mock(bench: Bench) -> None:
    # The mock logs every request; clear the log so it does not grow for the whole bench.
    try:
        http_request(bench.server("mock").port, "POST", "/_mock/reset", body=b"{}")
    except OSError as error:
        bench.log(f"  (mock reset failed: {error})")


# --- groups -----------------------------------------------------------------------------------


def run_paced(bench: Bench, repeat: int) -> None:
    """20 tokens 50 ms apart at 128 streams, first thing on a fresh gateway (peak RSS)."""
    if repeat > 0:
        for name in ("trio_gateway", "litellm"):
            if name in bench.by_name:
                bench.log(f"restarting {name} (fresh memory for the paced run)")
                bench.server(name).restart()
    row = bench.settings.paced
    for label in ("mock", "mock chat", "bare", "trio_gateway pass", "trio_gateway translated"):
        run_cell(bench, "paced", row, column(bench, label), repeat)
    for col in bench.columns:
        if col.gateway not in {"", "trio_gateway"} and col.mode == "pass":
            run_cell(bench, "paced", row, col, repeat)


def matrix_rows(settings: Settings) -> list[Row]:
    return [
        Row(tokens, gap, conc)
        for tokens in settings.tokens
        for gap in settings.gaps
        for conc in settings.concurrency
    ]


def run_matrix(bench: Bench, repeat: int) -> None:
    cap = bench.args.extra_max_concurrency
    for row in matrix_rows(bench.settings):
        for col in bench.columns:
            if col.server in (*SCALING, *NATIVE) or (col.gap0_only and row.gap > 0):
                continue
            if col.gateway not in {"", "trio_gateway"} and row.concurrency > cap:
                continue  # see --extra-max-concurrency
            run_cell(bench, "matrix", row, col, repeat)


def run_length(bench: Bench, repeat: int) -> None:
    """The cost of one request against the stream's length (gap 0, pass-through), through
    the gateway and the bare stack. Each length runs a fixed number of whole streams
    (``--max-requests``): no stream is cut by a deadline, so the server's CPU divides by
    exactly the streams it served."""
    settings = bench.settings
    for tokens in settings.length_tokens:
        row = Row(tokens, 0.0, settings.length_concurrency, seconds=120.0)
        extra = ["--max-requests", str(max(25, settings.length_events // tokens))]
        for label in ("bare", "trio_gateway pass"):
            run_cell(bench, "length", row, column(bench, label), repeat, extra=extra)


def run_peer(bench: Bench, repeat: int) -> None:
    """The issue's comparison row: 20-token streams at c=32 through each gateway."""
    row = bench.settings.peer
    for label in ("mock", "trio_gateway pass"):
        run_cell(bench, "peer", row, column(bench, label), repeat)
    for col in bench.columns:
        if col.gateway not in {"", "trio_gateway"} and col.mode == "pass":
            run_cell(bench, "peer", row, col, repeat)


def run_protocols(bench: Bench, repeat: int) -> None:
    for row in bench.settings.protocol_rows:
        for label in bench.settings.protocol_columns:
            run_cell(bench, "protocols", row, column(bench, label), repeat)


def run_scaling(bench: Bench, repeat: int) -> None:
    if repeat > 0:  # the idle group restarted their upstream (the bare stack)
        for name in SCALING:
            bench.server(name).restart()
    for row in bench.settings.scaling_rows:
        for name in SCALING:
            run_cell(bench, "scaling", row, column(bench, f"{name} pass"), repeat)
    if "nginx" in bench.by_name:
        run_machine_pair(bench, repeat)
        for row in bench.settings.scaling_rows:
            run_native(bench, row, repeat)


#: The machine calibration's loop: prints the CPU seconds it took.
_PAIR_LOOP: Final = """
import sys, time
began = time.process_time()
total = 0
for i in range(int(sys.argv[1])):
    total += i
print(time.process_time() - began)
"""


def run_machine_pair(bench: Bench, repeat: int) -> None:
    """The machine's own two-core scaling, next to the two-worker rows: a fixed CPU-bound
    Python loop, one copy alone, two copies at once, one alone again, each timed in CPU
    seconds (the two lone copies bracket the pair, as the host's speed drifts within
    seconds). A host that runs each core slower while both are busy shows here without any
    gateway code (``2 * one_s / two_s`` below 2), and the same slowdown caps two workers."""
    loop = str(bench.settings.pair_loop)

    def copies(n: int) -> list[float]:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _PAIR_LOOP, loop], stdout=subprocess.PIPE, text=True
            )
            for _ in range(n)
        ]
        return [float(proc.communicate(timeout=120)[0]) for proc in procs]

    bench.servers.quiesce(bench.measured(), limit=bench.settings.quiesce_limit)
    (before,) = copies(1)
    two = sum(copies(2)) / 2
    (after,) = copies(1)
    one = (before + after) / 2
    load: dict[str, object] = {"one_s": one, "two_s": two, "speedup": 2 * one / two}
    bench.samples.append(
        Sample(group="machine", row="cpu loop", column="python", repeat=repeat, load=load)
    )
    bench.log(f"machine   two copies of a {loop}-addition loop: {2 * one / two:.2f}x one copy")


def run_native(bench: Bench, row: Row, repeat: int) -> None:
    """``row`` through one and two workers with wrk as the client and nginx serving the
    mock's bytes for the row (``native.py``); fresh servers for every row."""
    model = f"mock-{row.spec}"
    mock = bench.server("mock")
    body = native.capture_stream(mock.port, model, mock.key)
    events = body.count(b"\n\n")
    old = bench.server("nginx")
    old.kill()
    nginx = native.nginx_server(Path(old.log).parent, "nginx", old.port, body)
    bench.by_name["nginx"] = nginx
    bench.servers.add(nginx)
    script = native.wrk_script(bench.servers.directory, model, bench.server(NATIVE[0]).key)
    try:
        for name in NATIVE:
            gateway = bench.server(name)
            gateway.restart()
            col = column(bench, f"{name} pass")
            native.run_wrk(
                gateway,
                script,
                concurrency=row.concurrency,
                seconds=bench.settings.native_warmup,
                events_per_stream=events,
            )
            bench.servers.quiesce(bench.measured(), limit=bench.settings.quiesce_limit)
            seconds = row.seconds if row.seconds else bench.settings.seconds
            nginx_before, before, busy_before = (
                nginx.cpu_seconds(),
                gateway.cpu_seconds(),
                machine_cpu(),
            )
            gateway.reset_peak()
            load = native.run_wrk(
                gateway,
                script,
                concurrency=row.concurrency,
                seconds=seconds,
                events_per_stream=events,
            )
            busy_after = machine_cpu()
            sample = Sample(
                group="scaling", row=row.label, column=col.label, repeat=repeat, load=load
            )
            sample.server_cpu_s = gateway.cpu_seconds() - before
            sample.server_peak_rss = gateway.peak_rss()
            sample.server_rss = gateway.rss()
            sample.machine_busy = (busy_after[0] - busy_before[0]) / max(
                busy_after[1] - busy_before[1], 1e-9
            )
            requests = float(load["requests"])  # type: ignore[arg-type]
            load["upstream_cpu_ms_per_stream"] = (
                1000 * (nginx.cpu_seconds() - nginx_before) / max(requests, 1.0)
            )
            bench.samples.append(sample)
            bench.log(f"{'scaling':9} {row.label:24} {col.label:26} {sample.brief()}")
            gateway.kill()
            bench.servers.quiesce(bench.measured(), limit=bench.settings.quiesce_limit)
    finally:
        for name in NATIVE:
            bench.server(name).kill()


def run_idle(bench: Bench, repeat: int) -> None:
    """N streams held open through a fresh server, one event every few seconds."""
    names = [*bench.settings.idle_servers, *(["litellm"] if "litellm" in bench.by_name else [])]
    for name in names:
        _idle_one(bench, name, repeat)


def _idle_one(bench: Bench, name: str, repeat: int) -> None:
    settings = bench.settings
    server = bench.server(name)
    bench.log(f"restarting {name} for the idle-stream run")
    server.restart()
    col = column(bench, "bare" if name == "bare" else f"{name} pass")
    run_cell(bench, "idle-warmup", Row(20, 0.0, 4), col, repeat)
    before = server.rss()
    samples: list[tuple[int, int]] = []
    settle = settings.idle_ramp + min(2.0, settings.idle_gap / 2)
    last = [0.0]

    stop = settings.idle_ramp + settings.idle_hold - 0.7  # before the client closes them

    def sample(elapsed: float) -> None:
        if settle <= elapsed <= stop and elapsed - last[0] >= 0.5:
            last[0] = elapsed
            samples.append((server.rss(), server.connections()))

    row = Row(
        1,
        settings.idle_gap,
        settings.idle_streams,
        seconds=settings.idle_ramp + settings.idle_hold,
        ramp=settings.idle_ramp,
    )
    extra = ["--max-requests", str(settings.idle_streams)]
    result = run_cell(bench, "idle", row, col, repeat, extra=extra, during=sample)
    if samples:
        # Per stream actually open at the sample: under load the ramp can lag, and dividing
        # by the streams asked for would flatter the figure. Samples with under 95 % of them
        # open do not count.
        full = [(r, c) for r, c in samples if c >= 0.95 * settings.idle_streams]
        per_stream = sorted((r - before) / c for r, c in full)[len(full) // 2] if full else math.nan
        result.idle = {
            "streams": settings.idle_streams,
            "rss_before": before,
            "rss_open": sorted(r for r, _ in samples)[len(samples) // 2],
            "per_stream": per_stream,
            "open_seen": sorted(c for _, c in samples)[len(samples) // 2],
            "heads": result.stat("ttfb_ms", "n"),
        }
    if name != "trio_gateway":
        # A fresh bare stack for the next matrix; LiteLLM keeps working through the streams it
        # could not open for a long time, which would load the machine during the next runs.
        server.restart()


def run_large(bench: Bench, repeat: int) -> None:
    """One huge single event: directly from the mock (reference digest), then through a
    fresh gateway whose ``max_event_bytes`` admits it, then through the shipped limit."""
    size = bench.settings.huge_bytes
    row = Row(1, 0.0, 1, seconds=60.0)
    model = f"mock-huge:bytes={size}"
    extra = ["--max-requests", "1", "--digest"]
    direct = run_cell(bench, "large", row, column(bench, "mock"), repeat, extra=extra, model=model)
    big = bench.server("trio_gateway big")
    big.restart()

    def intact(through: Sample) -> bool:
        return bool(
            through.load["largest_sha256"]
            and through.load["largest_sha256"] == direct.load["largest_sha256"]
            and through.load["errors"] == 0
        )

    try:
        col = Column("trio_gateway pass", "trio_gateway big", kind="gateway", gateway="big")
        before = big.rss()
        through = run_cell(bench, "large", row, col, repeat, extra=extra, model=model)
        through.large = {
            "event_bytes": direct.num("largest_event"),
            "intact": intact(through),
            "rss_before": before,
            "growth": through.server_peak_rss - before,
        }
    finally:
        big.kill()
    # The shipped max_event_bytes must admit the event too (its framing makes it a little
    # more than 64 MiB); this gateway is not fresh, so no growth is reported for it.
    shipped = Column("trio_gateway shipped limit", "trio_gateway", kind="gateway")
    limited = run_cell(bench, "large", row, shipped, repeat, extra=extra, model=model)
    limited.large = {"event_bytes": direct.num("largest_event"), "intact": intact(limited)}


RUNNERS: Final[dict[str, Callable[[Bench, int], None]]] = {
    "paced": run_paced,
    "matrix": run_matrix,
    "length": run_length,
    "peer": run_peer,
    "protocols": run_protocols,
    "scaling": run_scaling,
    "idle": run_idle,
    "large": run_large,
}


# --- environment ------------------------------------------------------------------------------


def environment(bench: Bench) -> dict[str, str]:
    """Machine, versions and git SHA for the report."""

    def version(module: str) -> str:
        try:
            return metadata.version(module)
        except metadata.PackageNotFoundError:
            return "-"

    sha = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "trio_gateway"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    ).stdout.strip()
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    env = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "git": sha + (" (trio_gateway/ modified)" if dirty else ""),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs ({cpu}), Linux "
        f"{platform.release()}",
        "python": platform.python_version(),
        "versions": ", ".join(
            f"{m} {version(m)}" for m in ("trio", "hypercorn", "h11", "httpx", "psutil")
        ),
        "command": " ".join(["python", "bench/run.py", *sys.argv[1:]]),
    }
    if "litellm" in bench.by_name:
        out = subprocess.run(
            [str(Path(bench.args.litellm) / "bin" / "pip"), "show", "litellm"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        lines = [ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Version")]
        env["litellm"] = f"LiteLLM proxy {lines[0] if lines else '?'} (uvicorn, 1 worker)"
    return env


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per scenario (medians)")
    parser.add_argument("--quick", action="store_true", help="a tiny matrix, a few seconds")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per matrix run")
    parser.add_argument("--groups", default=",".join(GROUPS), help="comma list of groups")
    parser.add_argument("--plot", metavar="DIR", help="write PNG charts (needs matplotlib)")
    parser.add_argument("--litellm", metavar="VENV", help="start the LiteLLM proxy from VENV")
    parser.add_argument(
        "--extra-url",
        action="append",
        default=[],
        metavar="[NAME=]URL",
        help="another gateway serving the same model names (repeatable)",
    )
    parser.add_argument("--extra-key", default="sk-demo-key", help="API key for --extra-url")
    parser.add_argument(
        "--extra-max-concurrency",
        type=int,
        default=64,
        metavar="N",
        help="skip matrix rows above N streams for LiteLLM and --extra-url gateways",
    )
    parser.add_argument("--json-out", metavar="FILE", help="write every sample as JSON")
    parser.add_argument("--markdown-out", metavar="FILE", help="write the report as markdown")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    parser.add_argument(
        "--from-json",
        nargs="+",
        metavar="FILE",
        help="only render the report of --json-out files (a later file's groups replace "
        "the same groups of earlier ones: re-run a group and merge it)",
    )
    args = parser.parse_args(argv)
    args.groups = [g for g in args.groups.split(",") if g]
    unknown = set(args.groups) - set(GROUPS)
    if unknown:
        parser.error(f"unknown groups {sorted(unknown)}; known: {', '.join(GROUPS)}")
    if not 1 <= args.repeat <= 10 or not 0.5 <= args.seconds <= 60:
        parser.error("bounded runs only: 1 <= --repeat <= 10, 0.5 <= --seconds <= 60")
    return args


def render_saved(args: argparse.Namespace, settings: Settings) -> int:
    """``--from-json``: the report of saved samples (the columns follow from their labels)."""
    samples: list[Sample] = []
    env: dict[str, str] = {}
    for number, name in enumerate(args.from_json):
        payload = json.loads(Path(name).read_text())
        loaded = [Sample(**sample) for sample in payload["samples"]]
        groups = {sample.group for sample in loaded}
        samples = [s for s in samples if s.group not in groups] + loaded
        if number == 0:
            env = dict(payload["env"])
            first_settings = payload.get("settings", asdict(settings))
        else:
            later = payload["env"]
            env[f"merged run {number}"] = (
                f"groups {', '.join(sorted(groups))} replaced by a run of {later['date']} "
                f"(git {later['git']}): {later['command']}"
            )
    labels = {sample.column for sample in samples}
    named = {
        label.rsplit(" ", 1)[0] for label in labels if label.endswith((" pass", " translated"))
    }
    others = sorted(named - {"trio_gateway", *SCALING, *NATIVE})
    scaling = [name for name in (*SCALING, *NATIVE) if f"{name} pass" in labels]
    report = render_report(
        samples,
        make_columns(["trio_gateway", *others], scaling),
        env=env,
        repeats=1 + max(sample.repeat for sample in samples),
        settings=first_settings,
        plot_dir=Path(args.plot) if args.plot else None,
    )
    sys.stdout.write(report)
    if args.markdown_out:
        Path(args.markdown_out).write_text(report)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench; prints the markdown report on stdout."""
    args = parse_args(argv)
    settings = QUICK if args.quick else Settings(seconds=args.seconds)
    if args.from_json:
        return render_saved(args, settings)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the servers
    directory = Path(tempfile.mkdtemp(prefix="trio-gateway-bench-"))
    started = time.monotonic()
    try:
        with Servers(directory) as servers:
            bench = Bench(args, settings, servers)
            start_servers(bench)
            env = environment(bench)
            if bench.notes:
                env["notes"] = " ".join(bench.notes)
            for repeat in range(args.repeat):
                for group in GROUPS:
                    if group in args.groups:
                        bench.log(f"repeat {repeat + 1}/{args.repeat}: {group}")
                        RUNNERS[group](bench, repeat)
        env["duration"] = f"{(time.monotonic() - started) / 60:.1f} min"
        if args.json_out:
            payload = {
                "env": env,
                "settings": asdict(settings),
                "samples": [asdict(s) for s in bench.samples],
            }
            Path(args.json_out).write_text(json.dumps(payload, indent=1))
        report = render_report(
            bench.samples,
            bench.columns,
            env=env,
            repeats=args.repeat,
            settings=asdict(settings),
            plot_dir=Path(args.plot) if args.plot else None,
        )
        sys.stdout.write(report)
        if args.markdown_out:
            Path(args.markdown_out).write_text(report)
    finally:
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            sys.stderr.write(f"work dir kept: {directory}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
