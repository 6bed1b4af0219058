"""Where the gateway's time goes on the TTFT path: py-spy on one worker at concurrency 1.

Theory of operation: starts the mock upstream and ``trio-gateway serve`` (one worker, the
shipped config pointed at the mock) exactly as ``bench/run.py`` does, warms the gateway up,
then samples it with ``py-spy record --format raw --function --nonblocking`` while
``bench/load.py`` drives 20-token pass-through streams back to back at concurrency 1 (each
stream is mostly set-up and first token, so this is the TTFT path). The collapsed stacks are
summed per function: *self* (the function was the leaf) and *inclusive* (anywhere on the
stack), as a share of all non-idle samples, and printed as markdown tables. Every child
process is killed at the end.

Invariants:
    * bounded: ``--seconds`` of sampling (at most 120), every wait has a limit;
    * needs py-spy (the ``bench`` extra) and permission to ptrace the gateway (same user).

    python bench/profile_ttft.py --seconds 15 --raw /tmp/ttft.raw
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from _procs import Servers, free_port, gateway_config

LOAD: Final = Path(__file__).resolve().parent / "load.py"
_FRAME: Final = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{match.group('func')} ({path})"


_BOILERPLATE: Final = (
    "_run_module_as_main ",
    "_run_code ",
    "<module> ",
    "main (trio_gateway/__main__.py)",
    "run (trio/_core/_run.py)",
    "Thread._bootstrap",
    "Thread.run ",
)


def summarise(raw: str, top: int) -> str:
    """Markdown tables of the top functions by self and by inclusive samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    gateway: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";")]
        if not frames:
            continue
        total += count
        # Stacks from the ledger's writer thread pass through Writer._run; everything else
        # is the trio thread (py-spy's non-blocking samples sometimes lose the stack's root).
        ledger = any(f.startswith("Writer._run ") for f in frames)
        thread = "ledger writer thread" if ledger else "trio thread"
        threads[thread] += count
        own[frames[-1]] += count
        for frame in set(frames):
            if not frame.startswith(_BOILERPLATE):
                inclusive[frame] += count
            if not ledger and "(trio_gateway/" in frame and not frame.startswith(_BOILERPLATE):
                gateway[frame] += count
    if not total:
        return "(no samples)\n"
    split = ", ".join(f"{name} {100 * n / total:.0f} %" for name, n in threads.most_common())
    lines = [f"{total} samples of running threads: {split}\n", "| self % | function |", "|---|---|"]
    lines += [f"| {100 * n / total:.1f} | `{f}` |" for f, n in own.most_common(top)]
    lines += ["", "| inclusive % | function |", "|---|---|"]
    lines += [f"| {100 * n / total:.1f} | `{f}` |" for f, n in inclusive.most_common(top)]
    lines += ["", "| inclusive %, trio thread | gateway function |", "|---|---|"]
    lines += [f"| {100 * n / total:.1f} | `{f}` |" for f, n in gateway.most_common(top)]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Profile and print the tables."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=15.0, help="sampling time")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--model", default="mock-text:tokens=20,interval=0")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--raw", metavar="FILE", help="also keep py-spy's collapsed stacks")
    parser.add_argument(
        "--blocking", action="store_true", help="pause the gateway per sample (exact stacks)"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.seconds <= 120:
        parser.error("1 <= --seconds <= 120")
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    directory = Path(tempfile.mkdtemp(prefix="trio-gateway-profile-"))
    try:
        with Servers(directory) as servers:
            mock_port, port = free_port(), free_port()
            servers.add(
                servers.python(
                    "mock",
                    ["-m", "trio_gateway", "mock-upstream", "--port", str(mock_port)],
                    ready_path="/v1/models",
                    port=mock_port,
                )
            )
            config = gateway_config(directory, port=port, mock_port=mock_port)
            gateway = servers.add(
                servers.python(
                    "gateway",
                    ["-m", "trio_gateway", "serve", "--config", str(config)],
                    ready_path="/readyz",
                    port=port,
                )
            )
            load = [sys.executable, str(LOAD), "--port", str(port), "--model", args.model]
            subprocess.run([*load, "--seconds", "2"], check=True, timeout=60)  # warm-up
            raw = directory / "ttft.raw"
            spy = subprocess.Popen(
                [
                    py_spy,
                    "record",
                    "--pid",
                    str(gateway.pid),
                    "--rate",
                    str(args.rate),
                    "--duration",
                    f"{args.seconds:.0f}",
                    "--format",
                    "raw",
                    "--function",
                    *([] if args.blocking else ["--nonblocking"]),
                    "--output",
                    str(raw),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            try:
                result = subprocess.run(
                    [*load, "--seconds", f"{args.seconds:g}"],
                    check=True,
                    timeout=args.seconds + 60,
                    capture_output=True,
                    text=True,
                )
                _, errors = spy.communicate(timeout=args.seconds + 60)
            finally:
                if spy.poll() is None:
                    spy.kill()
                    spy.wait(timeout=10)
            if spy.returncode != 0 or not raw.exists():
                sys.stderr.write(f"py-spy failed: {errors.decode()[-2000:]}\n")
                return 1
            text = raw.read_text()
            if args.raw:
                Path(args.raw).write_text(text)
            sys.stdout.write(f"load: {result.stdout}\n")
            sys.stdout.write(summarise(text, args.top))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
