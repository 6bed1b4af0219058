"""The benchmark suite still runs: ``bench/run.py --quick`` end to end (issue 6).

It starts the mock upstream, the bare stack and real ``trio-gateway serve`` processes, runs a
tiny scenario matrix through them and prints the markdown report. The figures are not judged
(the machine is shared); the run must succeed, print its tables, finish every stream without
an error and pass the huge event through intact.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

pytestmark = pytest.mark.slow

ROOT: Final = Path(__file__).resolve().parents[1]


def test_quick_bench_runs_and_prints_its_tables() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = result.stdout
    assert "### Goals" in report
    columns = "mock | mock chat | bare | bare merged | trio_gateway pass | trio_gateway translated"
    assert f"| scenario | {columns} |" in report
    # The errors / client-CPU tables: every cell reads "0 / N %".
    health = re.findall(r"^\| [^|]*c=\d+ \|(.*)\|$", report, re.MULTILINE)
    cells = [cell.strip() for line in health for cell in line.split("|") if "%" in cell]
    assert cells
    assert all(cell.startswith("0 / ") for cell in cells), cells
    assert re.search(r"^\| 64 MiB single event passes intact.*\*\*PASS\*\*", report, re.MULTILINE)
    assert re.search(r"^\| trio_gateway pass \| 1 tok, gap 1000 ms, c=20 \|", report, re.MULTILINE)
    if shutil.which("wrk") and shutil.which("nginx"):  # the native scaling rows ran
        assert "two workers: cores" in report
        assert re.search(r"The machine itself, in the same run: .* ran it at \d\.\d\dx", report)
