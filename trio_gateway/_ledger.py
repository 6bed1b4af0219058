"""The usage ledger: one SQLite row per upstream attempt, written ahead and settled once.

Theory of operation: :class:`Ledger` is the trio side. It turns each call into an op, which
it commits itself when that cannot wait (below) or hands to the writer thread of
``_ledger_db`` (one connection, batched ``BEGIN IMMEDIATE`` transactions, WAL), so a slow or
locked database delays settlement, never a stream:

- :meth:`Ledger.write_ahead` (before the upstream call) inserts the row as ``in_flight``
  and *awaits its commit*: a row exists for every attempt the upstream may have seen, even
  if the process is killed right after (RELIABILITY I1, I2). Only new requests wait here.
- :meth:`Ledger.checkpoint`, :meth:`Ledger.settle` and :meth:`Ledger.record_rejection`
  never block and never await: they queue an op and return. The queue is bounded; when it
  is full their ops wait, in order, in a trio-side overflow deque that is moved into the
  queue as the thread frees space. That overflow stays bounded because a full queue or a
  non-empty overflow also holds back :meth:`Ledger.write_ahead`, so no new attempts start;
  rejections beyond a second queue's worth are dropped and counted.
- At :meth:`Ledger.start`, rows left ``in_flight`` by a dead process become
  ``interrupted``, priced from their last checkpoint (``_ledger_db.recover``).
- When the writer thread has nothing outstanding (every op so far committed), an op is
  committed on the trio thread instead, on a connection of its own that never waits for a
  lock, never checkpoints and never fsyncs (``_ledger_db.open_direct``), then goes to the
  WAL syncer's fsync as for the writer's batches. That replaces two thread hand-offs per
  op, and the GIL contention of a second thread running SQLite beside the streams: at c=64
  it cost more CPU than the writer's batching saved (``bench/README.md``).
- Such ops form a *group*, committed in one ``BEGIN IMMEDIATE`` … ``COMMIT``. A
  write-ahead row commits the group after the checkpoint it owes anyway, so the ops other
  tasks added in that scheduler round, and the settlements since the last write-ahead
  row, share its transaction. A group with no write-ahead row is committed by a timer
  task ``_GROUP_WAIT`` after its first op. A group is committed at once when it reaches
  ``_GROUP_MAX`` ops, when the ledger is closing, and when no other attempt is in flight:
  then no write-ahead row is coming soon, and at concurrency 1 waiting for the next
  request's would put this commit on the way to its first token. While a group is open
  every new op joins it, so the order holds. At c=64 this cut the gateway's CPU per
  stream by a fifth (the WAL's locks, frames and fsyncs per request: ``bench/README.md``).
- If the lock is taken (another worker, any other connection) or SQLite fails, the
  group's ops are queued for the writer as usual, in the same order. A commit that took
  longer than ``_DIRECT_SLOW`` (a stalled disk) sends the ops of the next
  ``_DIRECT_PAUSE`` seconds to the writer, so a slow disk stalls the event loop for at
  most one commit per pause.
- The threads' reports (a batch committed, a batch synced) are queued for the trio side,
  which applies them when it next looks (a waiting task, ``pending``, ``statistics``).
  They wake the trio thread only for a task that waits, an overflow that needs room, or
  after ``_REPORTS_HELD`` of them: at concurrency 1, waking it for every report cost two
  wake-ups per request (a settlement's commit and its fsync) that nothing waited for.

Invariants: ops commit in the order they are queued; a (request id, attempt) is settled at
most once, by this process's memory and by SQL (``WHERE outcome = 'in_flight'``); memory
is bounded (``keep`` records, a bounded set of settled keys, the queue and the overflow).
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import secrets
import socket
import sqlite3
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache, partial
from typing import Final, Literal, TypeVar

import trio

from ._config import Price
from ._errors import ServiceUnavailable
from ._ledger_db import (
    CHECKPOINT_SQL,
    INSERT_SQL,
    PRICE_FIELDS,
    SETTLE_SQL,
    Batch,
    LedgerError,
    Op,
    Writer,
    commit_group,
    cost_columns,
    is_busy,
    open_direct,
    read_rows,
    spent_since,
)
from ._protocol._names import Protocol
from ._protocol._usage import Usage, UsageSource

__all__ = [
    "AttemptRecord",
    "Ledger",
    "LedgerError",
    "LedgerStatistics",
    "Outcome",
    "read_rows",
    "spent_since",
    "utc_now",
]

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

#: Ops per transaction: one fsync per batch, and a bound on how long one batch holds the lock.
_BATCH_SIZE: Final = 512
#: Queued ops before settlements spill into the overflow (an op is about 2 KB).
_QUEUE_SIZE: Final = 100_000
#: SQLite's own wait for a lock before the writer backs off and retries (seconds).
_BUSY_TIMEOUT: Final = 5.0
#: How long ``aclose`` waits for the queue to drain before giving up (seconds).
_CLOSE_FLUSH: Final = 10.0
#: A commit on the trio thread slower than this (seconds) sends the ops of the next
#: ``_DIRECT_PAUSE`` seconds to the writer thread (``Ledger._commit_group``).
_DIRECT_SLOW: Final = 0.01
_DIRECT_PAUSE: Final = 1.0
#: At most about this many ops in a row are committed on the trio thread; the next goes to
#: the writer, whose commit checkpoints the WAL when it is due (``Ledger._may_group``).
_DIRECT_RUN: Final = 100
#: An op taken for the trio thread's group waits at most this long (seconds) for a
#: write-ahead row to be committed with; then the group's timer commits it.
_GROUP_WAIT: Final = 0.005
#: Most ops in one transaction on the trio thread.
_GROUP_MAX: Final = 64
#: Reports the threads queue before they wake trio although no task waits (bounds that
#: queue when nothing waits for long, e.g. a stream of rejections).
_REPORTS_HELD: Final = 64
#: Settled keys remembered to refuse a second settle without SQL (beyond: SQL's guard).
_SETTLED_MEMORY: Final = 16_384
#: Outcomes logged as warnings (upstream faults, RELIABILITY: operators alert on these).
_FAULTS: Final = frozenset({"upstream_error", "upstream_timeout"})

_Key = tuple[str, int]
_T = TypeVar("_T")
_State = Literal["new", "running", "closing", "closed"]


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


@dataclass(frozen=True, slots=True)
class LedgerStatistics:
    """A snapshot of the ledger's queue, for metrics and tests.

    Attributes:
        pending: ops queued (or in the overflow) and not yet committed.
        overflow: ops waiting in the trio-side overflow for room in the queue.
        batches: transactions committed.
        committed_ops: ops committed (or refused for good by SQLite, and logged).
        retries: transactions retried because the database was busy or failing.
        dropped_rejections: rejection rows dropped because the overflow was full.
    """

    pending: int
    overflow: int
    batches: int
    committed_ops: int
    retries: int
    dropped_rejections: int


def _key(record: AttemptRecord) -> _Key:
    return (record.request_id, record.attempt)


@lru_cache(maxsize=256)
def _price_json(price: Price | None) -> str | None:
    """The ``price`` column: the five prices as exact decimal strings (for recovery).
    Cached: a gateway has a few prices, and every write-ahead row stores one."""
    if price is None:
        return None
    return json.dumps({name: str(getattr(price, name)) for name in PRICE_FIELDS})


def _row_params(
    record: AttemptRecord, fields: dict[str, object] | None = None
) -> dict[str, object]:
    """The row's parameters: ``fields`` (``record.as_json()``, if the caller has it) and the
    cost in picodollars."""
    if fields is None:
        fields = record.as_json()
    return fields | {"cost_picousd": cost_columns(record.cost_usd)["cost_picousd"]}


class Ledger:
    """The SQLite (WAL) usage ledger of one gateway (theory of operation above).

    Args:
        path: the SQLite file, or ``":memory:"`` (tests: nothing outlives the process, so
            :meth:`write_ahead` does not wait for the commit there).
        owner: this process in the rows it writes ahead; recovery uses it to tell live
            writers from dead ones. Default ``"{hostname}:{pid}:{random boot id}"``. Two
            live ledgers in one process must not share a file with different owners: each
            would take the other's rows for a previous run's.
        keep: how many recent records :attr:`records` keeps in memory.
        queue_size: bound of the queue to the writer thread.
        batch_size: most ops in one transaction.
        busy_timeout: SQLite's wait for a lock before the writer backs off and retries.
        write_ahead_sync: ``"normal"`` or ``"full"``: the ``synchronous`` level of a commit
            holding only write-ahead rows (``_ledger_db``'s docstring; settlements always
            use FULL).
    """

    def __init__(
        self,
        path: str,
        *,
        owner: str | None = None,
        keep: int = 2048,
        queue_size: int = _QUEUE_SIZE,
        batch_size: int = _BATCH_SIZE,
        busy_timeout: float = _BUSY_TIMEOUT,
        write_ahead_sync: Literal["normal", "full"] = "full",
    ) -> None:
        if keep < 0 or queue_size < 1 or batch_size < 1:
            raise ValueError("keep must be >= 0, queue_size and batch_size >= 1")
        self.path = path
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(6)}"
        self._keep = keep
        self._queue_size = queue_size
        self._busy_timeout = busy_timeout
        self._durable = path != ":memory:"
        self._write_ahead_full = write_ahead_sync == "full"
        self._writer = Writer(
            path,
            owner=self.owner,
            busy_timeout=busy_timeout,
            batch_size=batch_size,
            queue_size=queue_size,
        )
        self._state: _State = "new"
        self._started = self._writer_alive = False
        self._overflow: deque[Op] = deque()
        self._progress = trio.lowlevel.ParkingLot()  # woken by the threads' reports and at close
        #: The threads' reports (``Batch``; ``None``: the writer stopped), appended there and
        #: applied here (``_apply_reports``). The threads wake trio for them only when a task
        #: waits on one (``_waiting``), the overflow needs room, or many have accumulated.
        self._reports: deque[Batch | None] = deque()
        self._waiting = 0
        self._token: trio.lowlevel.TrioToken | None = None
        #: The trio thread's own connection, for ops the idle writer need not take
        #: (``_commit_group``); only with a WAL syncer to fsync what it commits.
        self._direct: sqlite3.Connection | None = None
        #: Ops taken for that connection and not yet committed: consecutive seqs, the
        #: oldest uncommitted ops of all (the writer has nothing outstanding before them).
        self._group: list[Op] = []
        #: The sleep of the group's timer task (``_run_timer``); its deadline is set when
        #: an op joins a group and the timer is not already running.
        self._timer = trio.CancelScope()
        self._timer_stop = trio.CancelScope()
        self._direct_run = 0  # ops committed on it since the last one left to the writer
        self._direct_paused_until = 0.0  # time.monotonic() before which ops go to the writer
        self._next_seq = 1
        self._committed_seq = 0  # every op up to it is committed (visible)
        self._durable_seq = 0  # ... and synced where it needs to be (``_ledger_sync``)
        self._pending = 0
        self._records: OrderedDict[_Key, AttemptRecord] = OrderedDict()
        self._open: dict[_Key, AttemptRecord] = {}
        self._settled: OrderedDict[_Key, None] = OrderedDict()
        self._checkpoints: dict[_Key, Op] = {}
        self._batches = self._committed_ops = self._retries = self._dropped = 0

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> int:
        """Start the writer thread: open the database (WAL, ``synchronous=FULL``), migrate
        the schema, then recover rows a dead process left ``in_flight``.

        Returns:
            The number of rows recovery marked ``interrupted``.

        Raises:
            LedgerError: the database cannot be opened or prepared.
            RuntimeError: called twice.

        Cancellation: the thread keeps starting; :meth:`aclose` still stops it.
        """
        if self._state != "new":
            raise RuntimeError("Ledger.start() may be called once")
        token = self._token = trio.lowlevel.current_trio_token()
        started = trio.Event()
        result: list[int | Exception] = []

        def started_on_trio(value: int | Exception) -> None:
            result.append(value)
            started.set()

        self._writer.start(
            on_started=partial(_call_soon, token, started_on_trio),
            on_batch=self._from_threads,
        )
        self._state, self._writer_alive = "running", True
        await started.wait()
        if isinstance(result[0], Exception):
            self._state, self._writer_alive = "closed", False
            raise LedgerError(f"cannot open the ledger at {self.path}: {result[0]}") from result[0]
        self._started = True
        if self._writer.syncs_the_wal:
            self._direct = await trio.to_thread.run_sync(open_direct, self.path)
            if self._direct is not None:
                trio.lowlevel.spawn_system_task(self._run_timer, name="ledger-group-timer")
        return result[0]

    async def aclose(self) -> None:
        """Commit everything queued, then stop the writer thread.

        Gives up after about 10 s of real time (a locked or failing database), logging how
        many ops were not written; then waits a few seconds more for the thread to stop.
        The waits run in a worker thread against the real clock, because the database is
        real even when trio's clock is not (``autojump_clock``).

        Cancellation: shielded and bounded (as above).
        """
        if self._state in ("closing", "closed"):
            return
        if self._state == "new":
            self._close()
            return
        self._state = "closing"
        self._progress.unpark_all()  # write_ahead waiting for room now refuses
        self._commit_group()  # from here on, ops taken for the trio thread commit at once
        with trio.CancelScope(shield=True):
            flushed = await self._drain(deadline=time.monotonic() + _CLOSE_FLUSH)
            stop = partial(self._writer.stop, self._busy_timeout + 1, abandon=not flushed)
            ended = await trio.to_thread.run_sync(stop)
        self._close(None if ended else "the writer thread did not stop")

    async def _drain(self, *, deadline: float) -> bool:
        while self.pending and self._writer_alive:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            wait = partial(self._writer.wait_committed, self._next_seq - 1, remaining)
            await trio.to_thread.run_sync(wait)
        return self.pending == 0

    def _close(self, problem: str | None = None) -> None:
        self._state = "closed"
        self._timer_stop.cancel()
        if self._direct is not None:
            self._direct.close()
            self._direct = None
        self._progress.unpark_all()
        if problem is not None:
            logger.error("ledger %s: %s", self.path, problem)
        if self._pending:
            logger.error("ledger %s closed with %d ops not written", self.path, self._pending)

    # -------------------------------------------------------------------- writes

    async def write_ahead(self, record: AttemptRecord, *, price: Price | None) -> None:
        """Insert ``record``'s row as ``in_flight`` and wait until it is committed.

        Call it before the upstream call. The price is stored with the row, so recovery
        can price the row's last checkpoint. A repeat for the same attempt changes nothing.

        Raises:
            ServiceUnavailable: the ledger is closing, closed, or SQLite refused the row.
            RuntimeError: :meth:`start` was not awaited.

        Cancellation: if cancelled while waiting for room (a locked database with a full
        queue), nothing was queued. If cancelled while waiting for the commit, the row is
        still committed later; settle it as usual (or recovery will).
        """
        if self._state == "new":
            raise RuntimeError("Ledger.start() was not awaited")
        if self._overflow or self._writer.ops.full():
            await self._wait_for_room()
        if not self._is_writing():
            raise ServiceUnavailable("the usage ledger is closed")
        params = _row_params(record) | {
            "outcome": "in_flight",
            "owner": self.owner,
            "price": _price_json(price),
        }
        op = self._enqueue(INSERT_SQL, params, full=self._write_ahead_full)
        key = _key(record)
        self._open[key] = record
        self._remember(record)
        if not self._durable:
            await trio.lowlevel.checkpoint()
            return
        if not await self._wait_committed(op.seq, durable=op.full) or op.error is not None:
            self._open.pop(key, None)
            raise ServiceUnavailable("the usage ledger cannot record new requests")

    def checkpoint(self, record: AttemptRecord) -> None:
        """Queue an update of the row's usage (and ``checkpoint_at``) while it is in flight.

        Never blocks. A checkpoint of the same row still waiting in the queue is replaced,
        not duplicated. Ignored once the record is settled.
        """
        key = _key(record)
        if key in self._settled or self._state == "closed":
            return
        params = {
            name: value
            for name, value in record.as_json().items()
            if name.endswith("_tokens") or name in ("request_id", "attempt", "usage_source")
        }
        params["checkpoint_at"] = utc_now()
        queued = self._checkpoints.get(key)
        if queued is not None and self._writer.replace_params(queued, params):
            return
        self._checkpoints[key] = self._enqueue(CHECKPOINT_SQL, params)

    def settle(self, record: AttemptRecord) -> bool:
        """Queue the row's final state (outcome, status, usage, cost, timings).

        Never blocks. Settles once: in SQL the update only matches a row still
        ``in_flight`` (RELIABILITY B7), so a settle repeated after a restart changes
        nothing. Sets ``finished_at`` if the record has none, and logs the record as one
        JSON line.

        Returns:
            False (and queues nothing) if this process already settled the record.

        Raises:
            ValueError: the record's outcome is still ``in_flight``.
        """
        if record.outcome == "in_flight":
            raise ValueError("settle() needs the attempt's final outcome")
        key = _key(record)
        if key in self._settled:
            return False
        self._mark_settled(key)
        self._open.pop(key, None)
        self._checkpoints.pop(key, None)
        if record.finished_at is None:
            record.finished_at = utc_now()
        self._remember(record)
        # One structured line per settled attempt (docs/operations.md); upstream faults are
        # warnings. Fields: names, counts and times only: never a key or prompt content.
        level = logging.WARNING if record.outcome in _FAULTS else logging.INFO
        fields = record.as_json()
        logger.log(level, "attempt settled", extra={"fields": fields})
        if self._state == "closed":
            logger.error("ledger %s is closed: settle of %s not written", self.path, key)
        else:
            self._enqueue(SETTLE_SQL, _row_params(record, fields))
        return True

    def record_rejection(self, record: AttemptRecord) -> None:
        """Queue a ``rejected`` row: a request refused before any upstream call.

        Callers pass attempt 0, upstream ``""`` and the refusal's status (403, 429). Never
        blocks; the outcome is set to ``rejected``. Dropped (and counted in
        :meth:`statistics`) only when the overflow already holds a full queue's worth.
        """
        record.outcome = "rejected"
        if record.finished_at is None:
            record.finished_at = utc_now()
        self._mark_settled(_key(record))
        self._remember(record)
        logger.info("request rejected", extra={"fields": record.as_json()})
        if self._state == "closed" or len(self._overflow) >= self._queue_size:
            self._dropped += 1
            if self._dropped % 1000 == 1:
                logger.warning("ledger: %d rejection rows dropped (queue full)", self._dropped)
            return
        self._enqueue(INSERT_SQL, _row_params(record) | {"owner": self.owner, "price": None})

    async def flush(self) -> None:
        """Wait until every op queued before this call is committed.

        Raises:
            LedgerError: the writer stopped with those ops not written.
            RuntimeError: :meth:`start` was not awaited.

        Cancellation: nothing is lost; the ops are committed anyway.
        """
        if self._state == "new":
            raise RuntimeError("Ledger.start() was not awaited")
        await trio.lowlevel.checkpoint()
        if not await self._wait_committed(self._next_seq - 1, durable=True):
            raise LedgerError(f"the ledger stopped with {self._pending} ops not written")

    # ------------------------------------------------------------------ reading

    @property
    def records(self) -> list[AttemptRecord]:
        """The most recent ``keep`` records (written ahead, settled or rejected), in the
        order they were opened."""
        return list(self._records.values())

    def in_flight(self) -> list[AttemptRecord]:
        """Records written ahead and not yet settled by this process."""
        return list(self._open.values())

    @property
    def pending(self) -> int:
        """Ops queued (or in the overflow) and not yet committed."""
        self._apply_reports()
        return self._pending

    def statistics(self) -> LedgerStatistics:
        """Counters of the queue and the writer (see :class:`LedgerStatistics`)."""
        self._apply_reports()
        return LedgerStatistics(
            pending=self._pending,
            overflow=len(self._overflow),
            batches=self._batches,
            committed_ops=self._committed_ops,
            retries=self._retries,
            dropped_rejections=self._dropped,
        )

    # ----------------------------------------------------------------- internals

    def _enqueue(self, sql: str, params: dict[str, object], *, full: bool = True) -> Op:
        """Take the next seq for this op and add it to the trio thread's group
        (``_commit_group``) or queue it for the writer; either way
        ``_wait_committed(op.seq)`` waits for it."""
        op = Op(seq=self._next_seq, sql=sql, params=params, full=full)
        self._next_seq += 1
        self._pending += 1
        group = self._group
        if group or self._may_group(op):
            group.append(op)  # behind the group's ops, so in order
            if len(group) >= _GROUP_MAX or self._state != "running" or not self._open:
                # With no other attempt in flight, no write-ahead row is coming soon: at
                # c=1 waiting for the next request's put this commit on its first token.
                self._commit_group()
            elif self._timer.deadline == math.inf:
                self._timer.deadline = trio.current_time() + _GROUP_WAIT
            return op
        self._queue_for_writer(op)
        return op

    def _may_group(self, op: Op) -> bool:
        """Whether ``op`` may start a group for the trio thread's connection: there is one,
        the writer has nothing outstanding (``Writer.committed_seq`` is the op before, so
        the group keeps the queue's order and the watermarks stay true), no slow commit
        paused this path, and the writer's turn to checkpoint the WAL has not come."""
        if (
            self._direct is None
            or self._overflow
            or self._writer.committed_seq != op.seq - 1
            or time.monotonic() < self._direct_paused_until
        ):
            return False
        if self._direct_run >= _DIRECT_RUN:
            # This connection never checkpoints: the writer's commit of this op does, once
            # the WAL is past SQLite's wal_autocheckpoint (1000 pages). Without it, a quiet
            # gateway's WAL grew without bound (250 MB after 12 k requests).
            self._direct_run = 0
            return False
        return True

    def _commit_group(self) -> None:
        """Commit the group in one transaction on the trio thread's connection, which never
        waits for the lock, never checkpoints and never fsyncs; ops that need durability go
        to the WAL syncer like a batch of the writer. If the lock is taken or SQLite fails,
        the ops are queued for the writer instead, in order. A commit slower than
        ``_DIRECT_SLOW`` (the disk stalls, and so did the event loop) sends the ops of the
        next ``_DIRECT_PAUSE`` seconds to the writer thread, which waits out a slow disk.
        """
        group = self._group
        connection = self._direct
        if not group or connection is None:
            return
        self._group = []
        began = time.monotonic()
        try:
            commit_group(connection, group)
        except sqlite3.Error as error:
            if not is_busy(error):  # a taken lock is the writer's to wait for; log the rest
                logger.warning("ledger: %d ops go to the writer thread (%s)", len(group), error)
            for op in group:
                self._queue_for_writer(op)
            return
        now = time.monotonic()
        if now - began > _DIRECT_SLOW:
            self._direct_paused_until = now + _DIRECT_PAUSE
            logger.warning(
                "ledger: a commit on the event loop took %.1f ms; the writer thread takes the "
                "ops of the next %.0f s",
                1000 * (now - began),
                _DIRECT_PAUSE,
            )
        needs_sync = False
        for op in group:
            op.claimed = True
            needs_sync = needs_sync or op.full
        last = group[-1].seq
        self._direct_run += len(group)
        self._pending -= len(group)
        self._batches += 1
        self._committed_ops += len(group)
        self._committed_seq = last
        if self._writer.committed_elsewhere(last, needs_sync=needs_sync):
            self._durable_seq = last
        if self._waiting:
            self._progress.unpark_all()

    async def _run_timer(self) -> None:
        """The group's timer (a system task from :meth:`start` to :meth:`_close`): commits a
        group that no write-ahead row committed within ``_GROUP_WAIT`` of its first op."""
        with self._timer_stop:
            while True:
                with self._timer:
                    await trio.sleep_forever()
                self._timer = trio.CancelScope()
                try:
                    self._commit_group()
                except Exception:  # a system task must not raise; the ops stay pending
                    logger.exception("ledger: the group's commit failed")

    def _queue_for_writer(self, op: Op) -> None:
        """Queue ``op`` for the writer thread, or behind the overflow if its queue is full
        or the overflow is not empty: nothing overtakes the overflow, so the order holds."""
        if self._overflow or not self._offer(op):
            self._overflow.append(op)

    def _offer(self, op: Op) -> bool:
        try:
            self._writer.ops.put_nowait(op)
        except queue.Full:
            return False
        return True

    def _from_threads(self, batch: Batch | None) -> None:
        """On the writer or syncer thread, after each committed or synced batch (``None``:
        the writer stopped): queue the report, and wake trio only if something there needs
        it now. Waking trio for every report cost two wake-ups of the trio thread per
        request (the settlement's commit and its fsync) that no task waited for.

        No report is missed: a waiting task counts itself in ``_waiting`` *before* it
        applies the reports and checks its condition, and this appends *before* it reads
        ``_waiting`` (each step atomic under the GIL). So either the task's check sees this
        report, or this sees the task and wakes it.
        """
        reports = self._reports
        reports.append(batch)
        if batch is None or self._waiting or self._overflow or len(reports) >= _REPORTS_HELD:
            assert self._token is not None
            _call_soon(self._token, self._on_reports, None)

    def _on_reports(self, _: None) -> None:
        """On the trio thread, woken by :meth:`_from_threads`."""
        self._apply_reports()
        self._progress.unpark_all()

    def _apply_reports(self) -> None:
        """Apply the threads' reports queued so far (on the trio thread)."""
        reports = self._reports
        while reports:
            batch = reports.popleft()
            if batch is None:
                self._writer_alive = False
                if self._state == "running" and self._started:
                    self._close("the writer thread stopped")
                continue
            self._committed_seq = max(self._committed_seq, batch.last_seq)
            if batch.durable:
                self._durable_seq = max(self._durable_seq, batch.last_seq)
            if batch.ops:
                self._pending -= batch.ops
                self._batches += 1
                self._committed_ops += batch.ops
                self._retries += batch.retries
        while self._overflow and self._offer(self._overflow[0]):
            self._overflow.popleft()

    def _is_writing(self) -> bool:
        return self._state == "running" and self._writer_alive

    async def _until(self, done: Callable[[], bool]) -> None:
        """Until ``done()``, checked after applying the threads' reports and again after
        each wake-up. A checkpoint either way."""
        self._waiting += 1  # before the first check: see _from_threads
        try:
            self._apply_reports()
            if done():
                await trio.lowlevel.checkpoint()
                return
            while True:
                await self._progress.park()
                self._apply_reports()
                if done():
                    return
        finally:
            self._waiting -= 1

    async def _wait_for_room(self) -> None:
        """Until the queue has room and the overflow is empty, or the ledger stops writing."""
        await self._until(
            lambda: not (self._is_writing() and (self._overflow or self._writer.ops.full()))
        )

    async def _wait_committed(self, seq: int, *, durable: bool) -> bool:
        """Until op ``seq`` is committed (and ``durable``: synced too); False if the
        ledger closed or its writer stopped first. A checkpoint unless it is already: a
        lone op the event loop committed at once (:meth:`_enqueue`) returns without one,
        as its caller's next step is the upstream request, a checkpoint of its own, and one
        more here cost a scheduler round on the way to the first token."""

        def reached() -> bool:
            return (self._durable_seq if durable else self._committed_seq) >= seq

        if reached():
            return True
        if self._group and self._group[0].seq <= seq:
            # The op is in the trio thread's group: let the other tasks of this scheduler
            # round add theirs, then commit them all in one transaction (unless one of
            # them, or the timer, has). The checkpoint is the one this wait owes anyway.
            await trio.lowlevel.checkpoint()
            if self._group and self._group[0].seq <= seq:
                self._commit_group()
            if reached():
                return True
        if durable and self._durable_seq < seq:
            self._writer.hurry(seq)
        await self._until(lambda: reached() or self._state == "closed" or not self._writer_alive)
        return reached()

    def _remember(self, record: AttemptRecord) -> None:
        self._records[_key(record)] = record
        while len(self._records) > self._keep:
            self._records.popitem(last=False)

    def _mark_settled(self, key: _Key) -> None:
        self._settled[key] = None
        while len(self._settled) > max(self._keep, _SETTLED_MEMORY):
            self._settled.popitem(last=False)


def _call_soon(token: trio.lowlevel.TrioToken, callback: Callable[[_T], None], value: _T) -> None:
    """Hand ``value`` to ``callback`` on the trio thread; from the writer thread, never
    blocking. After the trio run has ended there is nobody left to tell."""
    try:
        token.run_sync_soon(callback, value)
    except trio.RunFinishedError:
        pass
