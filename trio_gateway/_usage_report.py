"""The ledger as people and programs read it: ``trio-gateway usage`` and ``GET /admin/usage``.

Theory of operation: the ledger hands back one dict per upstream attempt, shaped like
``AttemptRecord.as_json()`` (DESIGN §5). Everything here is a pure function of those dicts,
except :func:`run_usage`, which reads the database first. Two outputs:

- **JSON lines** (``--json`` and ``/admin/usage``): one compact object per attempt, exactly
  the 23 fields of DESIGN §5 in that order, nothing else (the ledger's internal columns
  never leak out).
- **A table** for people: one line per key (requests, attempts, tokens by kind, cost,
  outcomes), then one line per attempt.

Invariants:

- Money is :class:`~decimal.Decimal`, never a float. Sums are exact (no 28-digit rounding:
  an inexact sum raises instead of rounding), and costs are written in plain notation
  (``0.00000015``, never ``1.5E-7``).
- A row without a cost (no price configured, or still in flight) adds nothing to the cost
  and is counted as ``unpriced``, so a total never hides that it is incomplete.
- Text shown in the table has control characters escaped: model names can come from
  callers (glob-matched names such as ``mock-*``), and an operator's terminal must not
  execute them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import MAX_PREC, Context, Decimal, Inexact, InvalidOperation
from typing import Final

from ._ledger import read_rows

__all__ = [
    "LEDGER_FIELDS",
    "TOKEN_KINDS",
    "KeySummary",
    "format_json_lines",
    "format_table",
    "parse_since",
    "read_ledger",
    "run_usage",
    "sum_usd",
    "summarise",
]

Row = Mapping[str, object]

#: The ledger fields of DESIGN §5, in their output order.
LEDGER_FIELDS: Final[tuple[str, ...]] = (
    "request_id",
    "attempt",
    "key",
    "model",
    "upstream",
    "upstream_model",
    "client_protocol",
    "upstream_protocol",
    "stream",
    "status",
    "outcome",
    "usage_source",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
    "cost_usd",
    "ttft_ms",
    "duration_ms",
    "started_at",
    "finished_at",
)

#: Token kinds, as the ``kind`` label of ``tokens_total`` names them (DESIGN §8), mapped to
#: their ledger field.
TOKEN_KINDS: Final[Mapping[str, str]] = {
    "input": "input_tokens",
    "output": "output_tokens",
    "cache_read": "cache_read_tokens",
    "cache_write_5m": "cache_write_5m_tokens",
    "cache_write_1h": "cache_write_1h_tokens",
    "reasoning": "reasoning_tokens",
}

#: Addition in this context is exact: the precision is unbounded in practice, and a result
#: that would still need rounding raises ``Inexact`` instead of silently losing money.
_EXACT: Final = Context(prec=MAX_PREC, traps=[Inexact, InvalidOperation])

#: Longest piece of a rejected ``since`` value echoed back in the error message.
_ECHO_LIMIT: Final = 64


# ---------------------------------------------------------------------------- since


def parse_since(text: str) -> str:
    """Normalise a ``--since`` / ``?since=`` value to the ledger's timestamp form.

    Accepts an ISO 8601 date (``2025-01-31``, midnight UTC) or date-time
    (``2025-01-31T12:00:00Z``, ``2025-01-31T13:00:00+01:00``, ``2025-01-31 12:00``). A
    date-time without an offset is taken as UTC, the ledger's zone.

    Args:
        text: what the user typed; surrounding whitespace is ignored.

    Returns:
        The instant in UTC, as ``AttemptRecord.started_at`` writes it
        (``2025-01-31T12:00:00.000+00:00``), so the ledger can compare it as text.
        Precision is milliseconds; finer digits are dropped.

    Raises:
        ValueError: ``text`` is not an ISO 8601 date or date-time; the message quotes it.
    """
    value = text.strip()
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat(timespec="milliseconds")
    except (ValueError, OverflowError):
        # OverflowError: an offset that pushes year 1 or 9999 out of range.
        pass
    shown = value if len(value) <= _ECHO_LIMIT else value[:_ECHO_LIMIT] + "…"
    raise ValueError(
        f"invalid since value {shown!r}: expected an ISO 8601 date such as 2025-01-31 "
        "or a date-time such as 2025-01-31T12:00:00Z"
    )


# ---------------------------------------------------------------------------- JSON lines


def _cost(row: Row) -> Decimal | None:
    """The row's ``cost_usd`` as a finite Decimal, ``None`` when the row has no cost.

    Raises:
        ValueError: the stored cost is not a decimal number (a corrupt row: refusing is
            better than dropping money from a total).
    """
    value = row.get("cost_usd")
    if value is None:
        return None
    if isinstance(value, str | int) and not isinstance(value, bool):
        try:
            cost = Decimal(value)
        except InvalidOperation:
            pass
        else:
            if cost.is_finite():
                return cost
    raise ValueError(f"ledger row {row.get('request_id')!r}: cost_usd {value!r} is not a decimal")


def _plain(amount: Decimal) -> str:
    """A Decimal in plain notation (``0.00000015``, never ``1.5E-7``)."""
    return format(amount, "f")


def _as_record(row: Row) -> dict[str, object]:
    """The DESIGN §5 fields of ``row``, in order; absent fields are ``null``."""
    record = {name: row.get(name) for name in LEDGER_FIELDS}
    stream = record["stream"]
    if isinstance(stream, int) and not isinstance(stream, bool):
        record["stream"] = bool(stream)  # SQLite stores booleans as 0/1
    cost = _cost(row)
    if cost is not None:
        record["cost_usd"] = _plain(cost)
    return record


def format_json_lines(rows: Iterable[Row]) -> str:
    """One compact JSON object per row and per line (``usage --json``, ``/admin/usage``).

    Args:
        rows: ledger rows as ``AttemptRecord.as_json()`` dicts; other keys are ignored.

    Returns:
        The lines, each ending in ``\\n``; ``""`` when there are no rows. Each object has
        exactly :data:`LEDGER_FIELDS`, in that order; ``stream`` is a boolean and
        ``cost_usd`` a decimal string in plain notation (or ``null``). Non-ASCII text is
        escaped, so the output is ASCII.

    Raises:
        ValueError: a row's ``cost_usd`` is not a decimal number.
    """
    return "".join(json.dumps(_as_record(row), separators=(",", ":")) + "\n" for row in rows)


# ---------------------------------------------------------------------------- summaries


@dataclass(frozen=True, slots=True, kw_only=True)
class KeySummary:
    """What one key used, over the rows summarised.

    Attributes:
        key: the key's name.
        requests: distinct request ids (a failed-over request is one request).
        attempts: ledger rows (one per upstream attempt).
        tokens: token counts by kind, in :data:`TOKEN_KINDS` order. ``reasoning`` is a part
            of ``output``, not in addition to it.
        cost_usd: the exact sum of the rows' costs.
        unpriced: rows without a cost (no price configured, or still in flight); they add
            nothing to ``cost_usd``.
        outcomes: rows per ``outcome``, sorted by outcome name.
    """

    key: str
    requests: int
    attempts: int
    tokens: Mapping[str, int]
    cost_usd: Decimal
    unpriced: int
    outcomes: Mapping[str, int]


def _count(value: object) -> int:
    """A token count from a row; anything but a non-negative int counts as 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return value


def _summarise_key(key: str, rows: Sequence[Row]) -> KeySummary:
    tokens = {
        kind: sum(_count(row.get(field)) for row in rows) for kind, field in TOKEN_KINDS.items()
    }
    costs = [cost for row in rows if (cost := _cost(row)) is not None]
    outcomes: dict[str, int] = {}
    for row in rows:
        outcome = str(row.get("outcome"))
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return KeySummary(
        key=key,
        requests=len({row.get("request_id") for row in rows}),
        attempts=len(rows),
        tokens=tokens,
        cost_usd=sum_usd(costs),
        unpriced=len(rows) - len(costs),
        outcomes=dict(sorted(outcomes.items())),
    )


def sum_usd(amounts: Iterable[Decimal]) -> Decimal:
    """The exact sum of ``amounts`` (``Decimal(0)`` for none).

    Raises:
        decimal.Inexact: the sum could not be held exactly (never in practice: the context
            has the largest precision decimal allows). It never rounds silently.
    """
    total = Decimal(0)
    for amount in amounts:
        total = _EXACT.add(total, amount)
    return total


def summarise(rows: Iterable[Row]) -> list[KeySummary]:
    """Per-key totals of ledger rows.

    Args:
        rows: ledger rows as ``AttemptRecord.as_json()`` dicts.

    Returns:
        One :class:`KeySummary` per key that has rows, sorted by key name.

    Raises:
        ValueError: a row's ``cost_usd`` is not a decimal number.
    """
    by_key: dict[str, list[Row]] = {}
    for row in rows:
        by_key.setdefault(str(row.get("key")), []).append(row)
    return [_summarise_key(key, by_key[key]) for key in sorted(by_key)]


# ---------------------------------------------------------------------------- table

_SUMMARY_COLUMNS: Final = (
    "key",
    "requests",
    "attempts",
    *TOKEN_KINDS,
    "cost_usd",
    "unpriced",
    "outcomes",
)
#: Per-attempt columns shown as the ledger field of the same name.
_ROW_FIELDS: Final = (
    "started_at",
    "request_id",
    "attempt",
    "key",
    "model",
    "upstream",
    "status",
    "outcome",
)
_ROW_COLUMNS: Final = (*_ROW_FIELDS, *TOKEN_KINDS, "cost_usd", "duration_ms")
#: Columns written left-aligned; every other column is a number, right-aligned.
_TEXT_COLUMNS: Final = frozenset(
    {"key", "outcomes", "started_at", "request_id", "model", "upstream", "outcome"}
)


def _cell(value: object) -> str:
    """Render one table cell; control characters are escaped (never sent to a terminal)."""
    if value is None:
        return "-"
    if isinstance(value, Decimal):
        return _plain(value)
    text = str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _grid(columns: Sequence[str], lines: Sequence[Sequence[str]]) -> list[str]:
    """Lay out a header and lines in aligned columns separated by two spaces."""
    widths = [max(len(cell) for cell in column) for column in zip(columns, *lines, strict=True)]
    out = []
    for line in (columns, *lines):
        cells = [
            cell.ljust(width) if name in _TEXT_COLUMNS else cell.rjust(width)
            for name, cell, width in zip(columns, line, widths, strict=True)
        ]
        out.append("  ".join(cells).rstrip())
    return out


def _summary_line(summary: KeySummary) -> list[str]:
    outcomes = " ".join(f"{name}={count}" for name, count in summary.outcomes.items())
    return [
        _cell(summary.key),
        str(summary.requests),
        str(summary.attempts),
        *(str(summary.tokens[kind]) for kind in TOKEN_KINDS),
        _plain(summary.cost_usd),
        str(summary.unpriced),
        _cell(outcomes),
    ]


def _total(summaries: Sequence[KeySummary]) -> KeySummary:
    outcomes: dict[str, int] = {}
    for summary in summaries:
        for name, count in summary.outcomes.items():
            outcomes[name] = outcomes.get(name, 0) + count
    return KeySummary(
        key="(all keys)",
        requests=sum(s.requests for s in summaries),
        attempts=sum(s.attempts for s in summaries),
        tokens={kind: sum(s.tokens[kind] for s in summaries) for kind in TOKEN_KINDS},
        cost_usd=sum_usd(s.cost_usd for s in summaries),
        unpriced=sum(s.unpriced for s in summaries),
        outcomes=dict(sorted(outcomes.items())),
    )


def _row_line(row: Row) -> list[str]:
    cost = _cost(row)
    return [
        *(_cell(row.get(name)) for name in _ROW_FIELDS),
        *(_cell(row.get(field)) for field in TOKEN_KINDS.values()),
        _cell(cost),
        _cell(row.get("duration_ms")),
    ]


def format_table(rows: Sequence[Row], summaries: Sequence[KeySummary]) -> str:
    """The ledger for people: a per-key summary table, then one line per attempt.

    Args:
        rows: ledger rows as ``AttemptRecord.as_json()`` dicts, in the order to show them.
        summaries: :func:`summarise` of ``rows``; with more than one key, a
            ``(all keys)`` line totals them.

    Returns:
        The text, ending in ``\\n``: the summary, a blank line, the rows. With no rows, a
        single line saying so.

    Raises:
        ValueError: a row's ``cost_usd`` is not a decimal number.
    """
    if not rows:
        return "no ledger rows match\n"
    shown = list(summaries)
    if len(shown) > 1:
        shown.append(_total(shown))
    sections = [
        _grid(_SUMMARY_COLUMNS, [_summary_line(s) for s in shown]),
        _grid(_ROW_COLUMNS, [_row_line(row) for row in rows]),
    ]
    return "\n\n".join("\n".join(section) for section in sections) + "\n"


# ---------------------------------------------------------------------------- command


def read_ledger(path: str, *, key: str | None, since: str | None) -> list[dict[str, object]]:
    """Read ledger rows, refusing a database file that does not exist.

    SQLite would otherwise create an empty database at a mistyped path and report "no
    rows", which reads like "nothing was spent".

    Args:
        path: the ledger database (``[ledger].path``).
        key: only this key's rows; ``None`` = every key.
        since: only rows started at or after this instant, as :func:`parse_since` returns
            it; ``None`` = all time.

    Returns:
        The rows, ordered by ``started_at`` then ``attempt``.

    Raises:
        FileNotFoundError: there is no file at ``path``.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"ledger database not found: {path} (set [ledger].path in the config file; "
            "the gateway creates the database when it starts)"
        )
    return read_rows(path, key=key, since=since)


def run_usage(path: str, *, key: str | None, since: str | None, as_json: bool) -> str:
    """The output of ``trio-gateway usage``.

    Args:
        path: the ledger database (``[ledger].path`` of the config).
        key: ``--key``: only this key's rows.
        since: ``--since`` as typed: an ISO 8601 date or date-time (see
            :func:`parse_since`).
        as_json: ``--json``: JSON lines instead of the table.

    Returns:
        The text to write to standard output as it is (it already ends in a newline, and
        JSON output for no rows is empty).

    Raises:
        ValueError: ``since`` is not an ISO 8601 date or date-time, or a row is corrupt.
        FileNotFoundError: there is no ledger database at ``path``.
    """
    since_iso = None if since is None else parse_since(since)
    rows = read_ledger(path, key=key, since=since_iso)
    if as_json:
        return format_json_lines(rows)
    return format_table(rows, summarise(rows))
