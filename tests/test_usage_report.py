"""``trio-gateway usage``: since parsing, JSON lines, per-key summaries, the table, and the
command on a real SQLite ledger file (DESIGN §1, §5, §8)."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Final

import pytest

from trio_gateway._ledger import AttemptRecord, Outcome, utc_now
from trio_gateway._protocol._usage import Usage
from trio_gateway._usage_report import (
    LEDGER_FIELDS,
    TOKEN_KINDS,
    KeySummary,
    format_json_lines,
    format_table,
    parse_since,
    run_usage,
    sum_usd,
    summarise,
)

#: The ledger's own columns besides the DESIGN §5 fields; never shown to users.
INTERNAL_COLUMNS: Final = {
    "cost_picousd": "INTEGER",
    "owner": "TEXT",
    "price": "TEXT",
    "checkpoint_at": "TEXT",
}


def row(
    request_id: str,
    *,
    key: str = "alice",
    attempt: int = 1,
    started_at: str = "2025-03-01T10:00:00.000+00:00",
    cost: str | None = None,
    outcome: Outcome = "completed",
    model: str = "claude-sonnet-4-5",
    usage: Usage | None = None,
) -> dict[str, object]:
    """One ledger row, as the ledger's own record type renders it."""
    record = AttemptRecord(
        request_id=request_id,
        attempt=attempt,
        key=key,
        model=model,
        upstream="anthropic",
        upstream_model=model,
        client_protocol="anthropic",
        upstream_protocol="anthropic",
        stream=True,
        started_at=started_at,
        status=200,
        outcome=outcome,
        usage_source="reported",
        usage=usage or Usage(),
        cost_usd=None if cost is None else Decimal(cost),
        ttft_ms=12.5,
        duration_ms=345.25,
        finished_at=started_at,
    )
    return record.as_json()


def write_ledger(path: Path, rows: Iterable[Mapping[str, object]]) -> None:
    """Create a ledger database file with the ``attempts`` table, as the gateway does
    (the DESIGN §5 columns, ``stream`` as 0/1, plus the ledger's internal columns)."""
    columns = [*LEDGER_FIELDS, *INTERNAL_COLUMNS]
    con = sqlite3.connect(path)
    try:
        declared = ", ".join(
            [
                *(f"{name}" for name in LEDGER_FIELDS),
                *(f"{n} {t}" for n, t in INTERNAL_COLUMNS.items()),
            ]
        )
        con.execute(f"CREATE TABLE attempts ({declared})")
        for entry in rows:
            values = [entry.get(name) for name in LEDGER_FIELDS]
            values[LEDGER_FIELDS.index("stream")] = int(bool(entry["stream"]))
            values += [0, "owner-1", "{}", None]
            placeholders = ", ".join("?" for _ in columns)
            con.execute(
                f"INSERT INTO attempts ({', '.join(columns)}) VALUES ({placeholders})", values
            )
        con.commit()
    finally:
        con.close()


# ---------------------------------------------------------------------------- fields


def test_ledger_fields_are_the_records_fields_in_order() -> None:
    assert tuple(row("req_1")) == LEDGER_FIELDS
    assert len(LEDGER_FIELDS) == 23


def test_token_kinds_are_the_metric_labels() -> None:
    assert list(TOKEN_KINDS) == [
        "input",
        "output",
        "cache_read",
        "cache_write_5m",
        "cache_write_1h",
        "reasoning",
    ]
    assert set(TOKEN_KINDS.values()) <= set(LEDGER_FIELDS)


# ---------------------------------------------------------------------------- since


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-01-31", "2025-01-31T00:00:00.000+00:00"),
        ("2025-01-31T12:00:00Z", "2025-01-31T12:00:00.000+00:00"),
        ("2025-01-31T12:00:00+00:00", "2025-01-31T12:00:00.000+00:00"),
        ("2025-01-31T13:30:00+01:30", "2025-01-31T12:00:00.000+00:00"),
        ("2025-01-01T00:30:00+01:00", "2024-12-31T23:30:00.000+00:00"),
        ("2025-01-31T12:00:00", "2025-01-31T12:00:00.000+00:00"),
        ("2025-01-31 12:00", "2025-01-31T12:00:00.000+00:00"),
        ("2025-01-31T12:00:00.123456Z", "2025-01-31T12:00:00.123+00:00"),
        ("  2025-01-31\n", "2025-01-31T00:00:00.000+00:00"),
        ("2025-01-31T12:00:00.000+00:00", "2025-01-31T12:00:00.000+00:00"),
    ],
)
def test_parse_since(text: str, expected: str) -> None:
    assert parse_since(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "yesterday",
        "2025-13-01",
        "2025-02-30",
        "2025-01-31T25:00:00",
        "1 day ago",
        "1700000000",
        "2025-01-31T12:00:00+25:00",
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
    ],
)
def test_parse_since_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="ISO 8601") as caught:
        parse_since(text)
    assert repr(text.strip()) in str(caught.value)


def test_parse_since_echoes_a_bounded_excerpt() -> None:
    with pytest.raises(ValueError, match="ISO 8601") as caught:
        parse_since("x" * 10_000)
    assert len(str(caught.value)) < 300


def test_parse_since_compares_as_text_with_ledger_timestamps() -> None:
    now = utc_now()
    assert parse_since(now) == now
    assert parse_since("2025-01-31T23:59:59.999Z") < parse_since("2025-02-01")


# ---------------------------------------------------------------------------- JSON lines


def test_json_lines_are_the_design_fields_in_order_and_compact() -> None:
    first = row("req_1", cost="0.0123")
    second = row("req_2", cost=None, outcome="upstream_error")
    text = format_json_lines([first, second])
    lines = text.split("\n")
    assert lines[-1] == ""
    assert len(lines) == 3
    for line, source in zip(lines[:2], [first, second], strict=True):
        assert ": " not in line
        assert ", " not in line
        parsed = json.loads(line)
        assert list(parsed) == list(LEDGER_FIELDS)
        assert parsed == source


def test_json_lines_drop_internal_columns_and_restore_booleans() -> None:
    stored = {**row("req_1"), "stream": 1, **dict.fromkeys(INTERNAL_COLUMNS, "secret-ish")}
    unary = {**row("req_2"), "stream": 0}
    lines = [json.loads(line) for line in format_json_lines([stored, unary]).splitlines()]
    assert [list(line) for line in lines] == [list(LEDGER_FIELDS)] * 2
    assert lines[0]["stream"] is True
    assert lines[1]["stream"] is False
    assert "secret-ish" not in format_json_lines([stored])


def test_json_lines_write_costs_in_plain_notation() -> None:
    # str(Decimal) of one token at 0.15 $/M is "1.5E-7"; a decimal string is plain.
    line = format_json_lines([{**row("req_1"), "cost_usd": "1.5E-7"}])
    assert json.loads(line)["cost_usd"] == "0.00000015"
    assert json.loads(line, parse_float=Decimal)["cost_usd"] == "0.00000015"


def test_json_lines_missing_fields_are_null() -> None:
    line = format_json_lines([{"request_id": "req_1", "key": "alice"}])
    parsed = json.loads(line)
    assert list(parsed) == list(LEDGER_FIELDS)
    assert parsed["model"] is None
    assert parsed["cost_usd"] is None


def test_json_lines_are_ascii_and_escape_control_characters() -> None:
    text = format_json_lines([row("req_1", model="mock-\x1b[2J-é")])
    assert text.isascii()
    assert "\x1b" not in text
    assert json.loads(text)["model"] == "mock-\x1b[2J-é"


def test_no_rows_is_empty_output() -> None:
    assert format_json_lines([]) == ""


@pytest.mark.parametrize("bad", ["abc", "NaN", "Infinity", "", 1.5, True])
def test_a_corrupt_cost_is_refused_not_dropped(bad: object) -> None:
    with pytest.raises(ValueError, match="cost_usd"):
        format_json_lines([{**row("req_1"), "cost_usd": bad}])
    with pytest.raises(ValueError, match="cost_usd"):
        summarise([{**row("req_1"), "cost_usd": bad}])


# ---------------------------------------------------------------------------- summaries


def test_summarise_per_key() -> None:
    rows = [
        # bob: one request failed over (two attempts), one in flight without a cost
        row(
            "req_b1",
            key="bob",
            attempt=1,
            outcome="upstream_error",
            cost="0",
            usage=Usage(),
        ),
        row(
            "req_b1",
            key="bob",
            attempt=2,
            cost="0.01215",
            usage=Usage(
                input_tokens=50,
                output_tokens=100,
                cache_read_tokens=10_000,
                cache_write_5m_tokens=2_000,
            ),
        ),
        row("req_b2", key="bob", outcome="in_flight"),
        # alice: two requests
        row(
            "req_a1",
            cost="0.0051",
            usage=Usage(cache_write_5m_tokens=400, cache_write_1h_tokens=600),
        ),
        row(
            "req_a2",
            cost="0.0303",
            usage=Usage(input_tokens=100, output_tokens=2_000, reasoning_tokens=1_500),
        ),
    ]
    alice, bob = summarise(rows)
    assert alice == KeySummary(
        key="alice",
        requests=2,
        attempts=2,
        tokens={
            "input": 100,
            "output": 2_000,
            "cache_read": 0,
            "cache_write_5m": 400,
            "cache_write_1h": 600,
            "reasoning": 1_500,
        },
        cost_usd=Decimal("0.0354"),
        unpriced=0,
        outcomes={"completed": 2},
    )
    assert bob == KeySummary(
        key="bob",
        requests=2,
        attempts=3,
        tokens={
            "input": 50,
            "output": 100,
            "cache_read": 10_000,
            "cache_write_5m": 2_000,
            "cache_write_1h": 0,
            "reasoning": 0,
        },
        cost_usd=Decimal("0.01215"),
        unpriced=1,
        outcomes={"completed": 1, "in_flight": 1, "upstream_error": 1},
    )
    assert list(alice.tokens) == list(TOKEN_KINDS)


def test_summarise_nothing() -> None:
    assert summarise([]) == []


def test_cost_sums_are_exact_decimals() -> None:
    tenths = [row(f"req_{i}", cost="0.1") for i in range(10)]
    (summary,) = summarise(tenths)
    assert type(summary.cost_usd) is Decimal
    assert summary.cost_usd == Decimal(1)  # ten binary-float 0.1s sum to 0.9999999999999999


def test_cost_sums_do_not_round_at_28_digits() -> None:
    # The default decimal context keeps 28 significant digits and would drop the picodollar.
    big, tiny = Decimal("10000000000000000000000000000"), Decimal("0.000000000001")
    assert big + tiny == big  # what the default context does
    assert sum_usd([big, tiny]) == Decimal("10000000000000000000000000000.000000000001")
    assert sum_usd([]) == 0


# ---------------------------------------------------------------------------- table


def _table_rows() -> list[dict[str, object]]:
    return [
        row("req_a1", cost="0.0051", usage=Usage(cache_write_1h_tokens=600)),
        row(
            "req_b1",
            key="bob",
            cost="1.5E-7",
            started_at="2025-03-01T11:00:00.000+00:00",
            usage=Usage(input_tokens=1),
        ),
    ]


def test_table_summary_then_rows() -> None:
    rows = _table_rows()
    lines = format_table(rows, summarise(rows)).splitlines()
    assert lines[0].split() == [
        "key",
        "requests",
        "attempts",
        *TOKEN_KINDS,
        "cost_usd",
        "unpriced",
        "outcomes",
    ]
    assert " ".join(lines[1].split()) == "alice 1 1 0 0 0 0 600 0 0.0051 0 completed=1"
    assert " ".join(lines[2].split()) == "bob 1 1 1 0 0 0 0 0 0.00000015 0 completed=1"
    assert " ".join(lines[3].split()) == "(all keys) 2 2 1 0 0 0 600 0 0.00510015 0 completed=2"
    assert lines[4] == ""
    assert lines[5].split()[:3] == ["started_at", "request_id", "attempt"]
    assert lines[6].split()[:4] == ["2025-03-01T10:00:00.000+00:00", "req_a1", "1", "alice"]
    assert "0.00000015" in lines[7]
    assert "E-7" not in "\n".join(lines)
    assert len(lines) == 8


def test_table_columns_line_up() -> None:
    rows = _table_rows()
    lines = format_table(rows, summarise(rows)).splitlines()
    # numbers are right-aligned: each summary line ends its cost column at the same place
    cost_ends = {
        line.index(cost) + len(cost)
        for line, cost in zip(lines[1:4], ["0.0051", "0.00000015", "0.00510015"], strict=True)
    }
    assert len(cost_ends) == 1


def test_table_with_one_key_has_no_total_line() -> None:
    rows = [row("req_a1", cost="0.0051")]
    text = format_table(rows, summarise(rows))
    assert "(all keys)" not in text


def test_table_escapes_control_characters() -> None:
    rows = [row("req_a1", model="mock-\x1b[2J\x07", key="ali\nce")]
    text = format_table(rows, summarise(rows))
    assert "\x1b" not in text
    assert "\x07" not in text
    assert "mock-\\x1b[2J\\x07" in text
    assert "ali\\nce" in text
    assert len(text.splitlines()) == 5


def test_table_without_rows() -> None:
    assert format_table([], []) == "no ledger rows match\n"


def test_table_shows_missing_values_as_dashes() -> None:
    rows = [{**row("req_a1"), "status": None, "duration_ms": None}]
    last = format_table(rows, summarise(rows)).splitlines()[-1]
    assert re.search(r"alice\s+claude-sonnet-4-5\s+anthropic\s+-\s+completed", last)
    assert last.endswith(" -")


# ---------------------------------------------------------------------------- the command


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    path = tmp_path / "trio-gateway.db"
    write_ledger(
        path,
        [
            row("req_1", started_at="2025-03-01T09:00:00.000+00:00", cost="0.01"),
            row("req_2", key="bob", started_at="2025-03-02T09:00:00.000+00:00", cost="0.02"),
            row("req_3", started_at="2025-03-03T09:00:00.000+00:00", cost="0.03", attempt=2),
            row(
                "req_3",
                started_at="2025-03-03T09:00:00.000+00:00",
                outcome="upstream_error",
                cost="0",
            ),
        ],
    )
    return path


def _ids(text: str) -> list[tuple[object, object]]:
    return [(obj["request_id"], obj["attempt"]) for obj in map(json.loads, text.splitlines())]


def test_run_usage_json_all(ledger: Path) -> None:
    text = run_usage(str(ledger), key=None, since=None, as_json=True)
    assert _ids(text) == [("req_1", 1), ("req_2", 1), ("req_3", 1), ("req_3", 2)]
    for line in text.splitlines():
        parsed = json.loads(line)
        assert list(parsed) == list(LEDGER_FIELDS)
        assert parsed["stream"] is True


def test_run_usage_filters(ledger: Path) -> None:
    assert _ids(run_usage(str(ledger), key="bob", since=None, as_json=True)) == [("req_2", 1)]
    assert _ids(run_usage(str(ledger), key=None, since="2025-03-02", as_json=True)) == [
        ("req_2", 1),
        ("req_3", 1),
        ("req_3", 2),
    ]
    # 10:00 at +01:00 is 09:00 UTC: the bound is inclusive
    assert _ids(
        run_usage(str(ledger), key="alice", since="2025-03-03T10:00:00+01:00", as_json=True)
    ) == [("req_3", 1), ("req_3", 2)]
    assert run_usage(str(ledger), key="carol", since=None, as_json=True) == ""


def test_run_usage_table(ledger: Path) -> None:
    text = run_usage(str(ledger), key=None, since=None, as_json=False)
    lines = text.splitlines()
    assert lines[1].split()[:3] == ["alice", "2", "3"]
    assert "0.04" in lines[1]
    assert "completed=2 upstream_error=1" in lines[1]
    assert lines[2].split()[:3] == ["bob", "1", "1"]
    assert "(all keys)" in lines[3]
    assert (
        run_usage(str(ledger), key="carol", since=None, as_json=False) == "no ledger rows match\n"
    )


def test_run_usage_missing_database_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "trio-gateway.db"
    with pytest.raises(FileNotFoundError, match="ledger database not found") as caught:
        run_usage(str(missing), key=None, since=None, as_json=True)
    assert str(missing) in str(caught.value)
    assert not missing.exists()
    assert not missing.parent.exists()
    # a mistyped path next to a real ledger is not silently created either
    beside = tmp_path / "trio-gatway.db"
    with pytest.raises(FileNotFoundError):
        run_usage(str(beside), key=None, since=None, as_json=False)
    assert not beside.exists()


def test_run_usage_bad_since(ledger: Path) -> None:
    with pytest.raises(ValueError, match="ISO 8601"):
        run_usage(str(ledger), key=None, since="last tuesday", as_json=True)
