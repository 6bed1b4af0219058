"""The bench's "cost per request grows linearly with stream length" goal (issue 6): the
``length`` group's figures are read into a growth ratio that tells linear from faster."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Final

import pytest

ROOT: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from _report import (  # ruff: ignore[module-import-not-at-top-of-file]
    GOALS,
    Row,
    Sample,
    _Index,
    _length_growth,
    render_report,
)

TOKENS: Final = (20, 500, 2000, 5000)


def samples(cost_ms: dict[int, float], column: str = "trio_gateway pass") -> list[Sample]:
    """One repeat of the length group: 100 whole streams per length at ``cost_ms`` each."""
    out = []
    for tokens, cost in cost_ms.items():
        load: dict[str, object] = {"outcomes": {"ok": 100}, "errors": 0, "events": 100 * tokens}
        sample = Sample("length", Row(tokens, 0.0, 4).label, column, 0, load)
        sample.server_cpu_s = 100 * cost / 1000
        out.append(sample)
    return out


def growth(cost_ms: dict[int, float]) -> float:
    return _length_growth(_Index(samples(cost_ms)), "trio_gateway")


def test_a_linear_cost_gives_one() -> None:
    assert growth({n: 2.0 + 0.005 * n for n in TOKENS}) == pytest.approx(1.0)


def test_a_cost_that_grows_faster_than_the_length_fails_the_goal() -> None:
    # A per-event cost that grows with the stream (e.g. re-joining a growing buffer).
    value = growth({n: 2.0 + 0.005 * n + 1e-6 * n * n for n in TOKENS})
    assert value > 1.25
    goal = next(g for g in GOALS if g.measure is _length_growth)
    assert goal.verdict(value) == "FAIL"
    assert goal.verdict(growth({n: 2.0 + 0.005 * n for n in TOKENS})) == "PASS"


def test_too_few_lengths_or_no_growth_is_not_a_verdict() -> None:
    assert math.isnan(growth({20: 2.0, 500: 4.0}))
    assert math.isnan(growth({20: 2.0, 500: 2.0, 2000: 3.0}))


def test_the_report_has_the_length_table() -> None:
    report = render_report(
        [
            *samples({n: 2.0 + 0.005 * n for n in TOKENS}),
            *samples({n: 1.0 + 0.004 * n for n in TOKENS}, column="bare"),
        ],
        [],
        env={},
        repeats=1,
        settings={"seconds": 1},
    )
    assert "### Cost per request against stream length (gap 0, c=4," in report
    assert "| 5000 | 21.00 | 4.2 | 4.00 | 0 | 27.00 | 5.4 | 5.00 | 0 |" in report
