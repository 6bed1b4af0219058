"""Attempt records: one per upstream attempt, opened before the upstream call and settled
exactly once.

Until the SQLite ledger lands (a later issue), :class:`MemoryLedger` keeps the records in
memory, where tests inspect them, and every settle writes one structured log line. The
write-ahead / settle-once contract is already the real one: ``open`` before the upstream
call, ``settle`` afterwards, and a second ``settle`` of the same (request id, attempt) is a
no-op.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

from ._protocol._names import Protocol
from ._protocol._usage import Usage, UsageSource

logger = logging.getLogger("trio_gateway.ledger")

Outcome = Literal[
    "in_flight",
    "completed",
    "client_disconnected",
    "upstream_error",
    "upstream_timeout",
    "interrupted",
    "rejected",
]


def utc_now() -> str:
    """The current UTC time as ISO 8601 with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(slots=True, kw_only=True)
class AttemptRecord:
    """One upstream attempt, with the ledger fields of DESIGN §5."""

    request_id: str
    attempt: int
    key: str
    model: str
    upstream: str
    upstream_model: str
    client_protocol: Protocol
    upstream_protocol: Protocol
    stream: bool
    started_at: str = field(default_factory=utc_now)
    status: int | None = None
    outcome: Outcome = "in_flight"
    usage_source: UsageSource = "none"
    usage: Usage = field(default_factory=Usage)
    cost_usd: Decimal | None = None
    ttft_ms: float | None = None
    duration_ms: float | None = None
    finished_at: str | None = None

    def as_json(self) -> dict[str, object]:
        """The record as the JSON object of ``usage --json`` (DESIGN §5 field names)."""
        usage = self.usage
        return {
            "request_id": self.request_id,
            "attempt": self.attempt,
            "key": self.key,
            "model": self.model,
            "upstream": self.upstream,
            "upstream_model": self.upstream_model,
            "client_protocol": self.client_protocol,
            "upstream_protocol": self.upstream_protocol,
            "stream": self.stream,
            "status": self.status,
            "outcome": self.outcome,
            "usage_source": self.usage_source,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_read_tokens": usage.cache_read_tokens,
            "cache_write_5m_tokens": usage.cache_write_5m_tokens,
            "cache_write_1h_tokens": usage.cache_write_1h_tokens,
            "reasoning_tokens": usage.reasoning_tokens,
            "cost_usd": None if self.cost_usd is None else str(self.cost_usd),
            "ttft_ms": None if self.ttft_ms is None else round(self.ttft_ms, 3),
            "duration_ms": None if self.duration_ms is None else round(self.duration_ms, 3),
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


class MemoryLedger:
    """Attempt records kept in memory; settle is idempotent per (request id, attempt)."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, int], AttemptRecord] = {}
        self._settled: set[tuple[str, int]] = set()

    def open(self, record: AttemptRecord) -> None:
        """Write the record ahead as ``in_flight``, before the upstream call."""
        self._records.setdefault((record.request_id, record.attempt), record)

    def settle(self, record: AttemptRecord) -> bool:
        """Settle ``record`` once; returns False (and changes nothing) if already settled."""
        key = (record.request_id, record.attempt)
        if key in self._settled:
            return False
        self._settled.add(key)
        self._records[key] = record
        logger.info(json.dumps(record.as_json(), separators=(",", ":")))
        return True

    @property
    def records(self) -> list[AttemptRecord]:
        """All records, in the order they were opened."""
        return list(self._records.values())

    def in_flight(self) -> list[AttemptRecord]:
        """Records opened but not yet settled."""
        return [r for k, r in self._records.items() if k not in self._settled]
