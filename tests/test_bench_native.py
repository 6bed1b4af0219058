"""The bench's native scaling harness (``bench/native.py``): wrk's output is read right, and
nginx serves the captured stream byte for byte (issue 6, "two workers").

The nginx and wrk tests need the tools (``apt-get install wrk nginx``) and skip without
them; the output parsing is tested everywhere.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

ROOT: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import native  # ruff: ignore[module-import-not-at-top-of-file]
from _procs import Server, free_port, http_request  # ruff: ignore[module-import-not-at-top-of-file]
from _report import Sample  # ruff: ignore[module-import-not-at-top-of-file]

WRK_OUTPUT: Final = """\
Running 3s test @ http://127.0.0.1:8080/v1/messages
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   150.12ms   20.01ms 300.00ms   70.00%
    Req/Sec   430.00     50.00   500.00     70.00%
  1290 requests in 3.01s, 4.20MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec:    428.57
Transfer/sec:      1.40MB
BAD 5
"""

# Quotes, backslashes and braces, and longer than nginx's 4 KiB limit on a config token
# (a 500-token stream is about 90 KB).
BODY: Final = (
    b'event: content_block_delta\ndata: {"delta":{"text":"it\'s \\"q\\" \\\\ {x}"}}\n\n' * 200
    + b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)

needs_tools = pytest.mark.skipif(bool(native.missing_tools()), reason="wrk and nginx not installed")


def test_wrk_output_is_read_into_the_load_shape() -> None:
    requests, seconds = native._requests_in(WRK_OUTPUT)
    assert (requests, seconds) == (1290, 3.01)
    assert native._number(r"^BAD (\d+)", WRK_OUTPUT) == 5
    assert native._socket_errors(WRK_OUTPUT) == 3
    assert native._socket_errors("Requests/sec: 1.0") == 0
    requests, seconds = native._requests_in("  7 requests in 950.00ms, 1KB read")
    assert requests == 7
    assert seconds == pytest.approx(0.95)


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Server]:
    server = native.nginx_server(tmp_path / "nginx", "nginx", free_port(), BODY)
    try:
        server.start(timeout=20)
        yield server
    finally:
        server.kill()


@needs_tools
def test_nginx_serves_the_stream_byte_for_byte_to_any_method(nginx: Server) -> None:
    for method in ("GET", "POST"):
        status, body = http_request(nginx.port, method, "/v1/messages", body=b"{}")
        assert (status, body) == (200, BODY)


@needs_tools
def test_wrk_counts_complete_streams_and_flags_broken_ones(nginx: Server, tmp_path: Path) -> None:
    script = native.wrk_script(tmp_path, "mock-text:tokens=2", "k")
    result = native.run_wrk(nginx, script, concurrency=2, seconds=1, events_per_stream=2)
    assert result["errors"] == 0
    assert result["outcomes"] == {"ok": result["requests"]}
    assert isinstance(result["requests"], int)
    assert result["requests"] > 10
    assert result["events"] == 2 * result["requests"]
    # An upstream whose body lacks the terminal event: every answer counts as an error.
    nginx.kill()
    time.sleep(0.2)
    broken = native.nginx_server(tmp_path / "broken", "nginx", nginx.port, b"data: {}\n\n")
    try:
        broken.start(timeout=20)
        result = native.run_wrk(broken, script, concurrency=2, seconds=1, events_per_stream=2)
    finally:
        broken.kill()
    assert result["errors"] == result["requests"]
    assert isinstance(result["requests"], int)
    assert result["requests"] > 10
    assert result["outcomes"] == {"ok": 0}


def test_missing_tools_names_what_is_not_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool == "nginx" else "/bin/x")
    assert native.missing_tools() == ["nginx"]


_ROW: Final = "20 tok, gap 0 ms, c=64"


def _native_sample(column: str, repeat: int, streams_per_s: float, cpu_s: float) -> Sample:
    """A native scaling run of 3 s (wrk 0.1 and nginx 0.15 ms of CPU per stream)."""
    load: dict[str, object] = {
        "requests": streams_per_s * 3,
        "seconds": 3.0,
        "streams_per_s": streams_per_s,
        "client_cpu_ms_per_stream": 0.1,
        "upstream_cpu_ms_per_stream": 0.15,
    }
    return Sample(
        group="scaling", row=_ROW, column=column, repeat=repeat, load=load, server_cpu_s=cpu_s
    )


def test_the_two_worker_ceiling_is_two_cores_over_one_workers_and_the_harness_cpu() -> None:
    from _report import _Index, _scaling_ceiling_table

    samples = [
        # One worker: 500 streams/s on 1.0 core (2.0 ms each); two: 800/s at 2.25 ms each.
        _native_sample("trio_gateway wrk+nginx pass", 0, 500.0, 3.0),
        _native_sample("trio_gateway wrk+nginx x2 pass", 0, 800.0, 5.4),
    ]
    table = _scaling_ceiling_table(_Index(samples))
    cells = [cell.strip() for cell in table.splitlines()[-1].strip("|").split("|")]
    # Ceiling: 2 cores / (2.0 + 0.25) ms = 888.9 streams/s, 1.78x the one worker's 500.
    # At the two workers' own 2.25 ms: 2 / 2.5 ms = 800 streams/s, 1.60x: all of the gap
    # between 1.78x and the measured 1.60x is each worker's slowdown.
    assert cells == [
        *[_ROW, "500.0", "1.00", "2.00", "1.80", "2.25", "0.250"],
        *["1.78x", "1.60x", "1.60x"],
    ]
    assert _scaling_ceiling_table(_Index(samples[:1])) == ""  # no two-worker run: no table


def test_the_machines_own_two_core_scaling_is_reported_under_the_ceiling() -> None:
    from _report import _Index, _scaling_ceiling_table

    workers = [
        _native_sample(column, 0, 500.0, 3.0)
        for column in ("trio_gateway wrk+nginx pass", "trio_gateway wrk+nginx x2 pass")
    ]
    # One copy 1.0 s alone; two at once 1.25 s each (2 x 1.0 / 1.25 = 1.6x), then 1.0 s.
    machine = [
        Sample(
            group="machine",
            row="cpu loop",
            column="python",
            repeat=repeat,
            load={"one_s": 1.0, "two_s": two, "speedup": 2.0 / two},
        )
        for repeat, two in enumerate((1.25, 1.0, 1.1))
    ]
    assert "machine itself" not in _scaling_ceiling_table(_Index(workers))
    note = _scaling_ceiling_table(_Index(workers + machine)).split("\n\n")[-1]
    assert "1.000 s of CPU alone (before and after the pair) and 1.100 s per copy" in note
    assert "at 1.82x one core's rate (per repeat: 1.60x, 1.82x, 2.00x)" in note
