"""The bench's tables, goal verdicts and charts, from the samples of one invocation.

Theory of operation: a :class:`Sample` is one load run (``load.py``'s JSON) of one
:class:`Row` (a scenario: tokens, gap between events, concurrency, protocol) against one
:class:`Column` (a server and a mode), plus the server's CPU seconds and peak RSS around it.
:func:`render_report` groups the samples by (group, row, column), takes the median over the
repeats of every figure, and prints markdown: the goals with PASS/FAIL, then one table per
group with each column's ratio to the baseline (the mock called directly) in the same row.
``plot_dir`` adds PNG charts when matplotlib is installed (the ``bench`` extra); without it
the report says so and carries on.

Invariants:
    * a figure is the median over the repeats that measured it; errors are summed;
    * added TTFT is the median over repeats of (gateway - mock) measured in the same repeat;
    * sizes are decimal: 1 KB = 1 000 bytes, 1 MB = 1 000 000 bytes.
"""

from __future__ import annotations

import itertools
import math
import os
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

__all__ = ["Column", "Row", "Sample", "render_report"]

KB: Final = 1000
MB: Final = 1000 * 1000
_PROTOCOL_NAMES: Final = {"/v1/chat/completions": "Chat", "/v1/responses": "Responses"}


@dataclass(frozen=True)
class Row:
    """One scenario: ``tokens`` text deltas ``gap`` seconds apart at ``concurrency`` streams."""

    tokens: int
    gap: float
    concurrency: int
    seconds: float = 0.0  # 0: the bench's per-run default
    ramp: float = 0.0
    measure_after: float = 0.0
    path: str = "/v1/messages"
    token_pace: bool = False  # the gap only before content deltas (the mock's token_pace)

    @property
    def label(self) -> str:
        """The row's name in the tables."""
        protocol = _PROTOCOL_NAMES.get(self.path, "")
        prefix = f"{protocol} " if protocol else ""
        gap = f"{'token ' if self.token_pace else ''}gap {self.gap * 1000:g} ms"
        return f"{prefix}{self.tokens} tok, {gap}, c={self.concurrency}"

    @property
    def spec(self) -> str:
        """The mock scenario of the row (the model name after ``mock-``)."""
        pace = "+token_pace" if self.token_pace else ""
        return f"text:tokens={self.tokens},interval={self.gap:g}{pace}"


@dataclass(frozen=True)
class Column:
    """A server and a mode: a column of the tables.

    Attributes:
        label: the column's name.
        server: the server's name.
        kind: ``baseline`` (the mock), ``bare`` (the bare stack) or ``gateway``.
        gateway: which gateway (for the goals), or ``""``.
        mode: ``pass`` (same protocol) or ``translated`` (``via-chat/``), for gateways.
        path_prefix: prepended to the API path (``/merged`` for the merging bare stack).
        model_prefix: prepended to the model name (``via-chat/`` for translated).
        gap0_only: run only rows without a gap (merging changes nothing when paced).
        path: the API path, instead of the row's (``mock chat``: the Chat endpoint).
        baseline: the column its ratios and added TTFT are taken against: the mock's endpoint
            in the upstream's protocol (``mock chat`` for translated columns).
    """

    label: str
    server: str
    kind: str
    gateway: str = ""
    mode: str = ""
    path_prefix: str = ""
    model_prefix: str = ""
    gap0_only: bool = False
    path: str = ""
    baseline: str = "mock"


@dataclass
class Sample:
    """One run: the load generator's JSON and the server's figures around it."""

    group: str
    row: str
    column: str
    repeat: int
    load: dict[str, object]
    server_cpu_s: float = math.nan
    server_peak_rss: int = 0
    server_rss: int = 0
    #: Cores busy machine-wide during the run (every process: /proc/stat), of ``os.cpu_count()``.
    machine_busy: float = math.nan
    idle: dict[str, float] = field(default_factory=dict)
    large: dict[str, object] = field(default_factory=dict)

    def num(self, name: str) -> float:
        """A top-level number of the load result (NaN if absent)."""
        value = self.load.get(name)
        return float(value) if isinstance(value, int | float) else math.nan

    def stat(self, name: str, key: str) -> float:
        """A percentile of a load statistic, e.g. ``stat("ttft_ms", "p99")``."""
        stats = self.load.get(name)
        value = stats.get(key) if isinstance(stats, dict) else None
        return float(value) if isinstance(value, int | float) else math.nan

    @property
    def ok(self) -> int:
        """Streams that completed normally."""
        outcomes = self.load.get("outcomes")
        value = outcomes.get("ok", 0) if isinstance(outcomes, dict) else 0
        return int(value) if isinstance(value, int) else 0

    @property
    def cpu_per_stream_ms(self) -> float:
        """Server CPU milliseconds per completed stream (NaN under 20 completed streams)."""
        return 1000 * self.server_cpu_s / self.ok if self.ok >= 20 else math.nan

    @property
    def cpu_per_event_us(self) -> float:
        """Server CPU microseconds per event the client received (NaN under 100 events)."""
        events = self.num("events")
        return 1e6 * self.server_cpu_s / events if events >= 100 else math.nan

    def brief(self) -> str:
        """One log line."""
        text = (
            f"{self.num('events_per_s'):8.0f} ev/s {self.num('streams_per_s'):7.1f} st/s "
            f"TTFT p50 {self.stat('ttft_ms', 'p50'):7.2f} p99 {self.stat('ttft_ms', 'p99'):7.2f}"
            f" err {self.num('errors'):.0f} client {self.num('client_cpu_pct'):3.0f}%"
        )
        if not math.isnan(self.server_cpu_s):
            text += f" srv {self.server_cpu_s:5.2f}s {self.server_peak_rss / MB:5.0f}MB"
        first_error = self.load.get("first_error")
        if first_error:
            text += f" [{first_error}]"
        return text


Getter = Callable[[Sample], float]


def _median(values: Iterable[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan


class _Index:
    def __init__(self, samples: Sequence[Sample]) -> None:
        self.cells: dict[tuple[str, str, str], list[Sample]] = {}
        for sample in samples:
            self.cells.setdefault((sample.group, sample.row, sample.column), []).append(sample)

    def get(self, group: str, row: str, column: str) -> list[Sample]:
        return self.cells.get((group, row, column), [])

    def med(self, group: str, row: str, column: str, getter: Getter) -> float:
        return _median(getter(s) for s in self.get(group, row, column))

    def errors(self, group: str, row: str, column: str) -> int:
        return sum(int(s.num("errors")) for s in self.get(group, row, column))

    def added(self, group: str, row: str, column: str, base: str, getter: Getter) -> float:
        """Median over repeats of (column - base) in the same repeat."""
        base_by_repeat = {s.repeat: getter(s) for s in self.get(group, row, base)}
        return _median(
            getter(s) - base_by_repeat[s.repeat]
            for s in self.get(group, row, column)
            if s.repeat in base_by_repeat
        )

    def ratio(self, group: str, row: str, column: str, base: str, getter: Getter) -> float:
        """Median over repeats of column / base in the same repeat (runs of one repeat are
        back to back, so the machine's drift cancels)."""
        base_by_repeat = {s.repeat: getter(s) for s in self.get(group, row, base)}
        return _median(
            getter(s) / base_by_repeat[s.repeat]
            for s in self.get(group, row, column)
            if base_by_repeat.get(s.repeat)
        )

    def rows(self, group: str) -> list[str]:
        seen: dict[str, None] = {}
        for g, row, _ in self.cells:
            if g == group:
                seen[row] = None
        return list(seen)

    def columns(self, group: str, order: Sequence[Column]) -> list[Column]:
        present = {c for g, _, c in self.cells if g == group}
        return [c for c in order if c.label in present]


def _fmt(value: float, digits: int = 0) -> str:
    if math.isnan(value):
        return "-"
    if digits == 0 and abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _signed(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:+.2f}"


def _ratio(value: float, base: float) -> str:
    if math.isnan(value) or math.isnan(base):
        return ""
    if base == 0 or not 0.02 <= value / base <= 20:
        return " (n/m)" if value else ""  # the baseline itself is saturated
    return f" ({value / base:.2f}x)"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(lines) + "\n"


# --- goals ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Goal:
    text: str
    limit: float
    higher_is_better: bool
    unit: str
    measure: Callable[[_Index, str], float]
    trio_only: bool = False

    def verdict(self, value: float) -> str:
        if math.isnan(value):
            return "n/a"
        ok = value >= self.limit if self.higher_is_better else value <= self.limit
        return "PASS" if ok else "FAIL"


_ROW_C1: Final = Row(20, 0.0, 1).label
_ROW_THROUGHPUT: Final = Row(500, 0.0, 64).label
_ROW_SHORT: Final = Row(20, 0.0, 64).label
_ROW_PACED: Final = Row(20, 0.05, 128, token_pace=True).label
_ROW_PEER: Final = Row(20, 0.0, 32).label


def _ttft(key: str) -> Getter:
    return lambda s: s.stat("ttft_ms", key)


def _streams(s: Sample) -> float:
    return s.num("streams_per_s")


def _events(s: Sample) -> float:
    return s.num("events_per_s")


_NATIVE_ONE: Final = "trio_gateway wrk+nginx pass"
_NATIVE_TWO: Final = "trio_gateway wrk+nginx x2 pass"


def _scaling(index: _Index, row: str, getter: Getter) -> float:
    """Two workers over one with the native harness (see ``_Index.ratio``)."""
    return index.ratio("scaling", row, _NATIVE_TWO, _NATIVE_ONE, getter)


def _ms_per_request(sample: Sample, cpu_s: float) -> float:
    return 1000 * cpu_s / max(sample.num("requests"), 1.0)


def _scaling_ceiling_table(index: _Index) -> str:
    """What two workers could reach on this machine at best, per native scaling row.

    The ceiling: both cores run nothing but the two workers, at one worker's gateway CPU per
    stream ``g1``, and the harness (wrk and nginx) at its CPU per stream in the two-worker
    run ``h2``: ``2 cores / (g1 + h2)`` streams/s, over the one-worker rate. It ignores that
    two busy processes each run slower than one alone (``g2 / g1``), so it is an upper
    bound. The same at the two workers' own CPU per stream, ``2 / (g2 + h2)``, is what both
    cores give once that slowdown is counted: a measured rate near it means the cores were
    busy with the workers and the shortfall is each worker's slowdown, not idle time.
    Medians over repeats of the per-repeat figures."""
    lines = []
    for row in index.rows("scaling"):
        ones = {s.repeat: s for s in index.get("scaling", row, _NATIVE_ONE)}
        per_repeat = []
        for two in index.get("scaling", row, _NATIVE_TWO):
            one = ones.get(two.repeat)
            if one is None or not one.num("streams_per_s"):
                continue
            g1 = _ms_per_request(one, one.server_cpu_s)
            g2 = _ms_per_request(two, two.server_cpu_s)
            h2 = two.num("client_cpu_ms_per_stream") + two.num("upstream_cpu_ms_per_stream")
            rate1 = one.num("streams_per_s")
            per_repeat.append((
                rate1,
                one.server_cpu_s / one.num("seconds"),
                g1,
                two.server_cpu_s / two.num("seconds"),
                g2,
                h2,
                2000 / (g1 + h2) / rate1,
                2000 / (g2 + h2) / rate1,
                two.num("streams_per_s") / rate1,
            ))  # fmt: skip
        if per_repeat:
            med = [_median(column) for column in zip(*per_repeat, strict=True)]
            lines.append([
                row,
                _fmt(med[0], 1),
                _fmt(med[1], 2),
                _fmt(med[2], 2),
                _fmt(med[3], 2),
                _fmt(med[4], 2),
                _fmt(med[5], 3),
                f"{med[6]:.2f}x",
                f"{med[7]:.2f}x",
                f"{med[8]:.2f}x",
            ])  # fmt: skip
    if not lines:
        return ""
    header = [
        "scenario",
        "one worker: streams/s",
        "its cores",
        "its CPU ms/stream (g1)",
        "two workers: cores",
        "their CPU ms/stream (g2)",
        "wrk + nginx CPU ms/stream (h2)",
        "ceiling 2 / (g1 + h2) over one worker",
        "at g2: 2 / (g2 + h2) over one worker",
        "measured",
    ]
    return (
        "Two workers against the ceiling of this 2-core machine (native harness): the ceiling "
        "is the rate if both cores ran only the two workers, at one worker's CPU per stream, "
        "and the harness at its own CPU per stream; two busy processes each running slower "
        "than one alone (g2 over g1) is not in it; the next column counts it (medians of the "
        "per-repeat figures):\n\n" + _table(header, lines) + _machine_pair_note(index)
    )


def _machine_pair_note(index: _Index) -> str:
    """The machine's own two-core scaling in the same run (``run.py``'s ``machine`` group):
    a fixed CPU-bound Python loop, two copies at once against one copy alone (the mean of
    a lone copy before and after the pair)."""
    samples = index.get("machine", "cpu loop", "python")
    if not samples:
        return ""
    one = _median(s.num("one_s") for s in samples)
    two = _median(s.num("two_s") for s in samples)
    speedups = sorted(s.num("speedup") for s in samples)
    spread = ", ".join(f"{v:.2f}x" for v in speedups)
    return (
        f"\nThe machine itself, in the same run: one copy of a fixed CPU-bound Python loop took "
        f"{one:.3f} s of CPU alone (before and after the pair) and {two:.3f} s per copy with "
        f"two copies at once, so both cores together ran it at {_median(speedups):.2f}x one "
        f"core's rate (per repeat: {spread}). No code of the gateway's is in that figure.\n"
    )


def _c512_errors(index: _Index, gateway: str) -> float:
    rows = [r for r in index.rows("matrix") if r.endswith("c=512")]
    cells = [(r, f"{gateway} {mode}") for r in rows for mode in ("pass", "translated")]
    if not any(index.get("matrix", r, c) for r, c in cells):
        return math.nan
    return sum(index.errors("matrix", r, c) for r, c in cells)


def _idle(index: _Index, gateway: str) -> float:
    rows = index.rows("idle")
    label = f"{gateway} pass"
    values = [_idle_per_stream(s) for r in rows for s in index.get("idle", r, label)]
    return _median(values) / KB


def _idle_per_stream(sample: Sample) -> float:
    """RSS bytes per open stream (the client connections the server held at the samples
    with at least 95 % of them open; NaN if none had); NaN unless (nearly) all the streams
    got their response head."""
    if sample.idle.get("heads", 0) < 0.95 * sample.idle.get("streams", math.inf):
        return math.nan
    return sample.idle.get("per_stream", math.nan)


def _large(index: _Index, key: str) -> float:
    values: list[float] = []
    for row in index.rows("large"):
        for sample in index.get("large", row, "trio_gateway pass"):
            if sample.large:
                value = sample.large[key]
                if key == "intact":
                    values.append(1.0 if value else 0.0)
                elif isinstance(value, int | float):
                    event = sample.large["event_bytes"]
                    assert isinstance(event, int | float)
                    values.append(float(value) / float(event))
    if not values:
        return math.nan
    return min(values) if key == "intact" else max(values)


def _length_rows(index: _Index) -> list[tuple[int, str]]:
    """(tokens, row label) of the ``length`` group's rows, shortest first."""
    return sorted((int(row.split()[0]), row) for row in index.rows("length"))


def _length_costs(index: _Index, column: str) -> list[tuple[int, float]]:
    """(tokens, median server CPU ms per stream) of the ``length`` group's rows, shortest
    first."""
    return [
        (tokens, index.med("length", row, column, lambda s: s.cpu_per_stream_ms))
        for tokens, row in _length_rows(index)
    ]


def _marginals(costs: Sequence[tuple[int, float]]) -> list[float]:
    """µs of CPU per token added from each length to the next."""
    return [
        1000 * (cost - last_cost) / (tokens - last_tokens)
        for (last_tokens, last_cost), (tokens, cost) in itertools.pairwise(costs)
    ]


def _length_growth(index: _Index, gateway: str) -> float:
    """The CPU per added token of the longest step over that of the shortest: 1 for a
    cost that grows linearly with the stream's length, more if it grows faster."""
    marginals = _marginals(_length_costs(index, f"{gateway} pass"))
    if len(marginals) < 2 or not marginals[0] > 0:
        return math.nan
    return marginals[-1] / marginals[0]


GOALS: Final = (
    _Goal(
        "added TTFT vs the mock, c=1, p50 (20 tok, gap 0, pass-through)",
        2.0,
        False,
        "ms",
        lambda ix, g: ix.added("matrix", _ROW_C1, f"{g} pass", "mock", _ttft("p50")),
    ),
    _Goal(
        "added TTFT vs the mock, c=1, p99",
        5.0,
        False,
        "ms",
        lambda ix, g: ix.added("matrix", _ROW_C1, f"{g} pass", "mock", _ttft("p99")),
    ),
    _Goal(
        "pass-through events/s vs the bare stack (500 tok, gap 0, c=64)",
        0.80,
        True,
        "x",
        lambda ix, g: (
            ix.med("matrix", _ROW_THROUGHPUT, f"{g} pass", _events)
            / ix.med("matrix", _ROW_THROUGHPUT, "bare", _events)
        ),
    ),
    _Goal(
        "translated events/s (500 tok, gap 0, c=64)",
        6000,
        True,
        "ev/s",
        lambda ix, g: ix.med("matrix", _ROW_THROUGHPUT, f"{g} translated", _events),
    ),
    _Goal(
        "paced 20 tok x 50 ms, c=128: new streams/s",
        100,
        True,
        "/s",
        lambda ix, g: ix.med("paced", _ROW_PACED, f"{g} pass", _streams),
    ),
    _Goal(
        "paced c=128: TTFT p99 (the mock's first token comes 50 ms after its head)",
        150,
        False,
        "ms",
        lambda ix, g: ix.med("paced", _ROW_PACED, f"{g} pass", _ttft("p99")),
    ),
    _Goal(
        "paced c=128: errors (all repeats)",
        0,
        False,
        "",
        lambda ix, g: (
            float(ix.errors("paced", _ROW_PACED, f"{g} pass"))
            if ix.get("paced", _ROW_PACED, f"{g} pass")
            else math.nan
        ),
    ),
    _Goal(
        "streams/s vs the LiteLLM proxy (20 tok, gap 0, c=32, same run)",
        10,
        True,
        "x",
        lambda ix, g: (
            ix.med("peer", _ROW_PEER, f"{g} pass", _streams)
            / ix.med("peer", _ROW_PEER, "litellm pass", _streams)
            if ix.get("peer", _ROW_PEER, "litellm pass")
            else math.nan
        ),
        trio_only=True,
    ),
    _Goal("512 open streams: errors (all c=512 runs)", 0, False, "", _c512_errors),
    _Goal(
        "gateway CPU per 20-token pass-through stream (c=64)",
        3.0,
        False,
        "ms",
        lambda ix, g: ix.med("matrix", _ROW_SHORT, f"{g} pass", lambda s: s.cpu_per_stream_ms),
    ),
    _Goal(
        "peak RSS at c=128 (paced run, fresh process)",
        120,
        False,
        "MB",
        lambda ix, g: ix.med("paced", _ROW_PACED, f"{g} pass", lambda s: s.server_peak_rss / MB),
    ),
    _Goal("RSS per idle open stream (1 000 open)", 40, False, "KB", _idle),
    _Goal(
        "two workers vs one: events/s, 500 tok, gap 0, c=64 (wrk + nginx harness)",
        1.8,
        True,
        "x",
        lambda ix, g: _scaling(ix, _ROW_THROUGHPUT, _events),
        trio_only=True,
    ),
    _Goal(
        "two workers vs one: streams/s, 20 tok, gap 0, c=64 (wrk + nginx harness)",
        1.8,
        True,
        "x",
        lambda ix, g: _scaling(ix, _ROW_SHORT, _streams),
        trio_only=True,
    ),
    _Goal(
        "CPU per request vs stream length: per added token, longest step / shortest step "
        "(1 = linear; length group)",
        1.25,
        False,
        "x",
        _length_growth,
        trio_only=True,
    ),
    _Goal(
        "64 MiB single event passes intact (1 = yes)",
        1,
        True,
        "",
        lambda ix, g: _large(ix, "intact"),
        trio_only=True,
    ),
    _Goal(
        "64 MiB event: peak RSS growth / event size",
        2.0,
        False,
        "x",
        lambda ix, g: _large(ix, "growth"),
        trio_only=True,
    ),
)


def _goals_table(index: _Index, columns: Sequence[Column]) -> str:
    gateways = list(
        dict.fromkeys(c.gateway for c in columns if c.gateway and "x2" not in c.gateway)
    )
    header = ["goal", "target"]
    for gateway in gateways:
        header += [gateway, "verdict"]
    rows = []
    for goal in GOALS:
        limit = f"{'>=' if goal.higher_is_better else '<='} {goal.limit:g} {goal.unit}".strip()
        cells = [goal.text, limit]
        for gateway in gateways:
            if goal.trio_only and gateway != "trio_gateway":
                cells += ["-", ""]
                continue
            value = goal.measure(index, gateway)
            digits = 2 if goal.unit in {"x", "ms"} else 1 if goal.unit == "KB" else 0
            cells += [_fmt(value, digits), f"**{goal.verdict(value)}**"]
        rows.append(cells)
    return _table(header, rows)


# --- group tables -----------------------------------------------------------------------------


def _metric_table(
    index: _Index,
    group: str,
    order: Sequence[Column],
    cell: Callable[[str, Column], str],
) -> str:
    columns = index.columns(group, order)
    rows = [[row, *(cell(row, c) for c in columns)] for row in index.rows(group)]
    return _table(["scenario", *(c.label for c in columns)], rows)


def _group_tables(index: _Index, group: str, order: Sequence[Column]) -> str:
    def streams_per_s(s: Sample) -> float:
        return s.num("streams_per_s")

    def rate(getter: Getter, digits: int) -> Callable[[str, Column], str]:
        def cell(row: str, col: Column) -> str:
            value = index.med(group, row, col.label, getter)
            if col.kind == "baseline" or col.baseline == col.label:
                return _fmt(value, digits)
            base = index.med(group, row, col.baseline, getter)
            return _fmt(value, digits) + _ratio(value, base)

        return cell

    def latency(name: str) -> Callable[[str, Column], str]:
        def p50(s: Sample) -> float:
            return s.stat(name, "p50")

        def p99(s: Sample) -> float:
            return s.stat(name, "p99")

        def cell(row: str, col: Column) -> str:
            text = (
                f"{_fmt(index.med(group, row, col.label, p50), 2)} / "
                f"{_fmt(index.med(group, row, col.label, p99), 2)}"
            )
            if (
                col.kind != "baseline"
                and col.baseline != col.label
                and index.get(group, row, col.baseline)
            ):
                a50 = index.added(group, row, col.label, col.baseline, p50)
                a99 = index.added(group, row, col.label, col.baseline, p99)
                text += f" ({_signed(a50)} / {_signed(a99)})"
            return text

        return cell

    def server(row: str, col: Column) -> str:
        per_event = index.med(group, row, col.label, lambda s: s.cpu_per_event_us)
        per_stream = index.med(group, row, col.label, lambda s: s.cpu_per_stream_ms)
        peak = index.med(group, row, col.label, lambda s: s.server_peak_rss / MB or math.nan)
        if math.isnan(per_event):
            return "-"
        return f"{_fmt(per_event)} µs, {_fmt(per_stream, 2)} ms, {_fmt(peak)} MB"

    def health(row: str, col: Column) -> str:
        errors = index.errors(group, row, col.label)
        client = index.med(group, row, col.label, lambda s: s.num("client_cpu_pct"))
        busy = index.med(group, row, col.label, lambda s: s.machine_busy)
        return f"{errors} / {_fmt(client)} % / {_fmt(busy, 2)}"

    first_event = [
        "\nTime to the first SSE event of any kind, p50 / p99 in ms (added vs the baseline):\n\n",
        _metric_table(index, group, order, latency("ttfe_ms")),
    ]
    parts = [
        "Events/s received by the client (ratio to the column's baseline in the same row; n/m: "
        "not meaningful, the baseline is saturated):\n\n",
        _metric_table(index, group, order, rate(_events, 0)),
        "\nCompleted streams/s (ratio to the baseline):\n\n",
        _metric_table(index, group, order, rate(streams_per_s, 1)),
        "\nTTFT (first content event) p50 / p99 in ms (added vs the baseline: the median over "
        "repeats of the difference within a repeat):\n\n",
        _metric_table(index, group, order, latency("ttft_ms")),
        *(first_event if group == "paced" else []),
        "\nServer CPU per event received and per completed stream (when at least 20 completed), "
        "peak RSS during the run:\n\n",
        _metric_table(index, group, order, server),
        "\nErrors (sum over repeats) / load generator CPU (% of one core) / cores busy on the "
        f"whole machine during the run (of {os.cpu_count()}):\n\n",
        _metric_table(index, group, order, health),
    ]
    return "".join(parts)


def _idle_table(index: _Index) -> str:
    rows = []
    for row in index.rows("idle"):
        columns = sorted({c for g, r, c in index.cells if g == "idle" and r == row})
        for col in columns:
            samples = [s for s in index.get("idle", row, col) if s.idle]
            if not samples:
                continue

            def med(key: str, samples: list[Sample] = samples) -> float:
                return _median(s.idle.get(key, math.nan) for s in samples)

            rows.append(
                [
                    col,
                    row,
                    _fmt(med("rss_before") / MB, 1),
                    _fmt(med("rss_open") / MB, 1),
                    _fmt(_median(_idle_per_stream(s) for s in samples) / KB, 1),
                    _fmt(med("heads")),
                    _fmt(med("open_seen")),
                    str(index.errors("idle", row, col)),
                ]
            )
    header = [
        "server",
        "scenario",
        "RSS before (MB)",
        "RSS with streams open (MB)",
        "per stream (KB; - unless 95 % were open)",
        "streams with a response head",
        "client connections seen",
        "errors",
    ]
    return _table(header, rows)


def _length_table(index: _Index) -> str:
    columns = [
        c for c in ("bare", "trio_gateway pass") if index.get("length", index.rows("length")[0], c)
    ]
    header = ["tokens"]
    table: dict[int, list[str]] = {}
    for col in columns:
        header += [f"{col}: ms per stream", "µs per token", "µs per added token", "errors"]
        costs = _length_costs(index, col)
        added = [math.nan, *_marginals(costs)]
        for (tokens, row), (_, cost), marginal in zip(
            _length_rows(index), costs, added, strict=True
        ):
            table.setdefault(tokens, [str(tokens)]).extend(
                [
                    _fmt(cost, 2),
                    _fmt(1000 * cost / tokens, 1),
                    _fmt(marginal, 2),
                    str(index.errors("length", row, col)),
                ]
            )
    return _table(header, [table[tokens] for tokens in sorted(table)])


def _large_table(index: _Index) -> str:
    rows = []
    for row in index.rows("large"):
        for col in sorted({c for g, r, c in index.cells if g == "large" and r == row}):
            for sample in index.get("large", row, col):
                info = sample.large
                growth = info.get("growth")
                error = f"{sample.num('errors'):.0f} {sample.load.get('first_error') or ''}"
                rows.append(
                    [
                        col,
                        str(sample.repeat + 1),
                        _fmt(sample.num("largest_event") / MB, 1),
                        str(info.get("intact", "-")),
                        _fmt(sample.stat("total_ms", "p50")),
                        _fmt(sample.server_peak_rss / MB) if sample.server_peak_rss else "-",
                        _fmt(float(growth) / MB) if isinstance(growth, int | float) else "-",
                        error.strip(),
                    ]
                )
    header = [
        "through",
        "repeat",
        "largest event (MB)",
        "intact",
        "total ms",
        "peak RSS (MB)",
        "peak growth (MB)",
        "errors",
    ]
    return _table(header, rows)


def _client_note(samples: Sequence[Sample]) -> str:
    worst = max(samples, key=lambda s: s.num("client_cpu_pct"), default=None)
    if worst is None:
        return ""
    text = (
        f"Load generator: at most {worst.num('client_cpu_pct'):.0f} % of one core in any run "
        f"({worst.group}, {worst.row}, {worst.column}).\n"
    )
    native = [s for s in samples if s.load.get("client") == "wrk"]
    if native:
        wrk = max(s.num("client_cpu_ms_per_stream") for s in native)
        nginx = max(s.num("upstream_cpu_ms_per_stream") for s in native)
        gateway = min(s.cpu_per_stream_ms for s in native)
        text += (
            f"\nNative harness (wrk + nginx): at most {wrk:.3f} ms (wrk) and {nginx:.3f} ms "
            f"(nginx) of CPU per stream in any run, against at least {gateway:.2f} ms for "
            "the gateway.\n"
        )
    return text


# --- plots ------------------------------------------------------------------------------------


def _plots(index: _Index, order: Sequence[Column], directory: Path) -> str:
    try:
        import matplotlib as mpl

        mpl.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "(plots skipped: matplotlib is not installed; `pip install -e '.[bench]'`)\n"
    directory.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    columns = index.columns("matrix", order)
    rows = [r for r in index.rows("matrix") if "gap 0 ms" in r]
    if columns and rows:
        fig, ax = plt.subplots(figsize=(12, 5))
        width = 0.8 / len(columns)
        for i, col in enumerate(columns):
            values = [index.med("matrix", r, col.label, _events) for r in rows]
            ax.bar([x + i * width for x in range(len(rows))], values, width, label=col.label)
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(rows))], rows, rotation=15)
        ax.set_yscale("log")
        ax.set_ylabel("events/s (log)")
        ax.set_title("Events/s, back-to-back events (median of repeats)")
        ax.legend(fontsize=8, ncol=2)
        fig.tight_layout()
        fig.savefig(directory / "events_per_s.png", dpi=90)
        plt.close(fig)
        written.append("events_per_s.png")
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
        for ax, gap in zip(axes, ("gap 0 ms", "gap 10 ms"), strict=True):
            picked = [r for r in index.rows("matrix") if r.startswith("20 tok") and gap in r]
            conc = [int(r.rsplit("c=", 1)[1]) for r in picked]
            lines = [c for c in columns if c.label != "bare merged"]
            for number, col in enumerate(lines):
                for key, style in (("p50", "-"), ("p99", ":")):
                    values = [index.med("matrix", r, col.label, _ttft(key)) for r in picked]
                    if not all(math.isnan(v) for v in values):
                        ax.plot(
                            conc,
                            values,
                            style,
                            marker="o",
                            color=f"C{number}",
                            label=f"{col.label} {key}",
                        )
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("concurrent streams")
            ax.set_title(f"TTFT, 20-token streams, {gap}")
        axes[0].set_ylabel("ms (log)")
        for ax in axes:
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7, ncol=2)
                break
        fig.tight_layout()
        fig.savefig(directory / "ttft.png", dpi=90)
        plt.close(fig)
        written.append("ttft.png")
        cpu_rows = [r for r in index.rows("matrix") if "c=64" in r]
        cpu_cols = list(columns)
        if cpu_rows and cpu_cols:
            fig, ax = plt.subplots(figsize=(11, 4.5))
            width = 0.8 / len(cpu_cols)
            for i, col in enumerate(cpu_cols):
                values = [
                    index.med("matrix", r, col.label, lambda s: s.cpu_per_event_us)
                    for r in cpu_rows
                ]
                ax.bar(
                    [x + i * width for x in range(len(cpu_rows))], values, width, label=col.label
                )
            ax.set_xticks(
                [x + 0.4 - width / 2 for x in range(len(cpu_rows))], cpu_rows, rotation=10
            )
            ax.set_yscale("log")
            ax.set_ylabel("server CPU µs per event received (log)")
            ax.set_title("Server CPU per event, c=64 (median of repeats)")
            ax.legend(fontsize=8, ncol=2)
            fig.tight_layout()
            fig.savefig(directory / "cpu_per_event.png", dpi=90)
            plt.close(fig)
            written.append("cpu_per_event.png")
    idle = [
        (c, _median(_idle_per_stream(s) for s in index.get("idle", r, c)) / KB)
        for g, r, c in index.cells
        if g == "idle"
    ]
    if idle:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.bar([c for c, _ in idle], [v for _, v in idle])
        ax.axhline(40, color="red", linestyle="--", label="goal 40 KB")
        ax.set_ylabel("KB of RSS per open idle stream")
        ax.set_title("Idle streams held open")
        ax.legend()
        fig.tight_layout()
        fig.savefig(directory / "idle_rss.png", dpi=90)
        plt.close(fig)
        written.append("idle_rss.png")
    return "".join(f"![{name}]({directory.name}/{name})\n" for name in written)


# --- the report -------------------------------------------------------------------------------

_TITLES: Final = {
    "paced": "Paced streams (20 tokens 50 ms apart, c=128, first on a fresh process)",
    "matrix": "Scenario matrix (Anthropic client; pass-through = mock-text, "
    "translated = via-chat/mock-text)",
    "protocols": "Other client protocols, pass-through",
    "peer": "Against another gateway (one worker each, same harness)",
    "scaling": "One vs two gateway workers: `fast` and `x2` with the bench's Python client "
    "and the bare stack's merged endpoint as the upstream; `wrk+nginx` with the native "
    "harness (bench/native.py), which leaves the cores to the gateway",
}


def render_report(
    samples: Sequence[Sample],
    columns: Sequence[Column],
    *,
    env: Mapping[str, str],
    repeats: int,
    settings: Mapping[str, object],
    plot_dir: Path | None = None,
) -> str:
    """The whole markdown report."""
    index = _Index(samples)
    out = ["## Results\n\n"]
    out += [f"- {key}: {value}\n" for key, value in env.items()]
    out.append(
        f"- figures are medians of {repeats} run(s); {settings.get('seconds')} s per matrix run\n\n"
    )
    out += ["### Goals (one worker unless noted)\n\n", _goals_table(index, columns), "\n"]
    if plot_dir is not None:
        out += ["### Charts\n\n", _plots(index, columns, plot_dir), "\n"]
    for group, title in _TITLES.items():
        if index.rows(group):
            out += [f"### {title}\n\n", _group_tables(index, group, columns), "\n"]
        if group == "scaling" and (ceiling := _scaling_ceiling_table(index)):
            out += [ceiling, "\n"]
    if index.rows("length"):
        concurrency = index.rows("length")[0].rsplit("c=", 1)[-1]
        out += [
            f"### Cost per request against stream length (gap 0, c={concurrency}, "
            "pass-through, whole streams only)\n\n"
            "Server CPU per completed stream (medians over repeats); each length runs a fixed "
            "number of streams to their end (`load.py --max-requests`), about the same number "
            "of events per length. The goal compares the CPU per added token of the last step "
            "with that of the first.\n\n",
            _length_table(index),
            "\n",
        ]
    if index.rows("idle"):
        out += ["### Idle streams held open (fresh process each)\n\n", _idle_table(index), "\n"]
    if index.rows("large"):
        out += ["### One huge SSE event\n\n", _large_table(index), "\n"]
    out.append(_client_note(samples))
    return "".join(out)
