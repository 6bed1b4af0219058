"""A native harness for the scaling rows: wrk as the client, nginx as the upstream.

Theory of operation: "two workers vs one" asks how far the gateway scales, so nothing else
may take the cores it would scale into. The bench's own client (``load.py``) and upstreams
(the mock, the bare stack) are Python on the same 2 cores: they cost about as much per
stream as the gateway itself, so with one worker the machine is already 1.5 cores busy and
the second worker gets what is left. Here the client is ``wrk`` (C, one thread) and the
upstream is ``nginx`` (C, one process) answering every request with the mock's exact bytes
for the row, captured from the mock once (a ``Content-Length`` body instead of the mock's
chunks, so the upstream's cost is close to nothing). Each costs well under 0.1 ms per
stream, measured and reported with the rows.

wrk counts a request as done when its body ends; a Lua ``response`` hook also counts every
answer that is not a 200 carrying the protocol's terminal event (``message_stop``), so a
stream the gateway broke is an error, not a success.

Invariants:
    * bounded: ``wrk -d`` and a subprocess timeout; the servers are the bench's
      :class:`~_procs.Server` objects, killed with the rest;
    * needs ``wrk`` and ``nginx`` on ``PATH`` (Debian: ``apt-get install wrk nginx``);
      without them the rows are skipped with a note, and the goal shows no figure.
"""

from __future__ import annotations

import http.client
import json
import math
import re
import resource
import shutil
import subprocess
from pathlib import Path
from typing import Final

from _procs import Server

__all__ = ["capture_stream", "missing_tools", "nginx_server", "run_wrk", "wrk_script"]

#: The terminal event a complete Anthropic stream carries.
TERMINAL: Final = "message_stop"

_LUA: Final = """\
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["x-api-key"] = "{key}"
wrk.headers["anthropic-version"] = "2023-06-01"
wrk.headers["content-type"] = "application/json"
wrk.headers["accept"] = "text/event-stream"

local threads = {{}}
function setup(thread) table.insert(threads, thread) end

bad = 0
function response(status, headers, body)
  if status ~= 200 or not string.find(body, "{terminal}", 1, true) then bad = bad + 1 end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + thread:get("bad") end
  io.write(string.format("BAD %d\\n", total))
end
"""


def missing_tools() -> list[str]:
    """The native tools not on ``PATH`` (empty: the harness can run)."""
    return [tool for tool in ("wrk", "nginx") if shutil.which(tool) is None]


def capture_stream(port: int, model: str, key: str) -> bytes:
    """The body of one streaming ``/v1/messages`` call to the mock (chunked framing removed)."""
    body = json.dumps(_request(model))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"content-type": "application/json", "x-api-key": key}
        conn.request("POST", "/v1/messages", body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    if response.status != 200 or TERMINAL.encode() not in data:
        raise RuntimeError(f"mock answered {response.status} without {TERMINAL}")
    return data


def _request(model: str) -> dict[str, object]:
    return {
        "model": model,
        "stream": True,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "hi"}],
    }


def nginx_server(directory: Path, name: str, port: int, body: bytes) -> Server:
    """An nginx (one process, no logs) that answers every request with ``body`` as SSE.

    The body is a file (a ``return`` string is limited to 4 KiB of config token); the static
    module answers a POST with 405, which ``error_page 405 =200`` turns into the file."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "body.sse").write_bytes(body)
    temp = "\n".join(
        f"  {kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = directory / "nginx.conf"
    conf.write_text(
        "master_process off;\n"  # one process, this user's: it can read the directory
        "daemon off;\n"
        f"pid {directory / 'nginx.pid'};\n"
        f"error_log {directory / 'error.log'} warn;\n"
        "events { worker_connections 8192; }\n"
        "http {\n"
        "  access_log off;\n"
        "  keepalive_requests 1000000;\n"
        "  keepalive_timeout 300s;\n"
        f"{temp}\n"
        "  server {\n"
        f"    listen 127.0.0.1:{port};\n"
        "    location / {\n"
        f"      root {directory};\n"
        "      default_type 'text/event-stream; charset=utf-8';\n"
        "      try_files /body.sse =404;\n"
        "      error_page 405 =200 /body.sse;\n"
        "    }\n"
        "  }\n"
        "}\n"
    )
    command = ["nginx", "-c", str(conf), "-p", str(directory), "-e", str(directory / "error.log")]
    return Server(name, command, port, "/", directory / "stdout.log", cwd=directory)


def wrk_script(directory: Path, model: str, key: str) -> Path:
    """The wrk Lua script: the row's streaming request, and the check of every answer."""
    path = directory / f"wrk-{re.sub(r'[^A-Za-z0-9]+', '_', model)}.lua"
    body = json.dumps(_request(model))
    path.write_text(_LUA.format(body=body, key=key, terminal=TERMINAL))
    return path


def run_wrk(
    server: Server, script: Path, *, concurrency: int, seconds: float, events_per_stream: int
) -> dict[str, object]:
    """One wrk run against ``server``: a result shaped like ``load.py``'s JSON (no TTFT)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    command = [
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, math.ceil(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        f"http://{server.host}:{server.port}/v1/messages",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = done.stdout
    if done.returncode != 0 or "requests in" not in out:
        raise RuntimeError(f"wrk failed ({done.returncode}): {out[-1000:]} {done.stderr[-1000:]}")
    requests, elapsed = _requests_in(out)
    bad = _number(r"^BAD (\d+)", out)
    socket_errors = _socket_errors(out)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    ok = max(0, requests - bad)
    events = ok * events_per_stream
    return {
        "client": "wrk",
        "requests": requests,
        "streams_per_s": ok / elapsed,
        "events_per_s": events / elapsed,
        "events": events,
        "errors": bad + socket_errors,
        "outcomes": {"ok": ok},
        "client_cpu_pct": 100 * cpu / elapsed,
        "client_cpu_ms_per_stream": 1000 * cpu / max(requests, 1),
        "seconds": elapsed,
    }


def _requests_in(out: str) -> tuple[int, float]:
    match = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", out)
    if match is None:
        raise RuntimeError(f"unexpected wrk output: {out[-500:]}")
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0}[match.group(3)]
    return int(match.group(1)), float(match.group(2)) * scale


def _number(pattern: str, out: str) -> int:
    match = re.search(pattern, out, re.MULTILINE)
    return int(match.group(1)) if match else 0


def _socket_errors(out: str) -> int:
    """The sum of wrk's ``Socket errors: connect A, read B, write C, timeout D`` line."""
    line = next((ln for ln in out.splitlines() if ln.strip().startswith("Socket errors")), "")
    return sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", line))
