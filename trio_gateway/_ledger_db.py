"""The thread side of the usage ledger: SQLite schema, the writer thread, recovery, reads.

Theory of operation: :class:`Writer` owns one daemon thread and this process's only writing
connection. The trio side hands it :class:`Op` objects (one parameterised statement each)
through a bounded :class:`queue.Queue`. The thread takes the first op blocking, drains what
else is queued (up to ``batch_size``), runs the batch in one ``BEGIN IMMEDIATE`` …
``COMMIT`` (one fsync for the group) and reports it through ``on_batch``, which the trio
side queues, waking the trio thread only when a task there waits for it: the thread never
waits on trio (not imported here).

Invariants:

- Ops commit in the order they were queued (one FIFO queue, one thread), so a settle can
  never overtake the write-ahead insert of its row.
- No op is dropped because the database is busy, locked, full or failing I/O: the batch is
  retried with backoff (``_TRANSIENT``) until it commits or the owner stops the writer. Only
  an op SQLite refuses for good (a constraint, a schema mismatch) is dropped; it is retried
  alone first, so it cannot take the rest of its batch with it, and it is logged.
- Every transaction is ``BEGIN IMMEDIATE``: the write lock is taken up front, so a busy
  database is waited for (``busy_timeout``) instead of failing mid-transaction
  (RELIABILITY §3.3). The writer polls for the lock itself (``_begin``: 50 µs doubling to
  1 ms) instead of SQLite's busy handler, whose first waits are 1, 2, 5 and 10 ms: with two
  workers on one file, those sleeps left a worker's requests waiting on their write-ahead
  rows while the other worker's commit had long finished (``bench/README.md``).
- Durability: ``journal_mode=WAL``. Commits survive an application crash in any
  ``synchronous`` mode; an fsync of the WAL also keeps them across a power loss or kernel
  crash. A batch with a settlement, checkpoint or rejection (billing evidence) is made
  durable before it is reported so (``Batch.durable``); a batch of only write-ahead rows
  under ``write_ahead_sync = "normal"`` (``Op.full`` False) is reported at its commit: it
  survives a process crash at once, and a power loss from the next fsync on (the WAL is
  one sequential file, so that fsync covers every earlier frame). The write-ahead commit
  is on every request's path to its first token, and an fsync measured about 375 µs here
  against 43 µs without (``bench/README.md``). In WAL mode the fsync is not SQLite's
  ``FULL`` inside ``COMMIT`` but a :class:`~trio_gateway._ledger_sync.WalSyncer` thread's,
  after the commit: the writer and the write lock go on meanwhile. Without a WAL file
  (``:memory:``) SQLite syncs in ``COMMIT`` (``PRAGMA synchronous`` per batch).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Final, TypeAlias

from ._config import Price
from ._ledger_sync import WalSyncer
from ._protocol._pricing import cost_usd
from ._protocol._usage import Usage

logger = logging.getLogger("trio_gateway.ledger")

#: Schema migrations: version N is ``_MIGRATIONS[N - 1]``, applied in order, all pending
#: versions in one transaction. Append new versions; never edit a released one.
_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """CREATE TABLE attempts (
            request_id TEXT NOT NULL, attempt INTEGER NOT NULL,
            key TEXT NOT NULL, model TEXT NOT NULL,
            upstream TEXT NOT NULL, upstream_model TEXT NOT NULL,
            client_protocol TEXT NOT NULL, upstream_protocol TEXT NOT NULL,
            stream INTEGER NOT NULL CHECK (stream IN (0, 1)), status INTEGER,
            outcome TEXT NOT NULL, usage_source TEXT NOT NULL,
            input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
            cache_read_tokens INTEGER NOT NULL, cache_write_5m_tokens INTEGER NOT NULL,
            cache_write_1h_tokens INTEGER NOT NULL, reasoning_tokens INTEGER NOT NULL,
            cost_usd TEXT, cost_picousd INTEGER,
            ttft_ms REAL, duration_ms REAL,
            started_at TEXT NOT NULL, finished_at TEXT,
            owner TEXT NOT NULL, price TEXT, checkpoint_at TEXT,
            PRIMARY KEY (request_id, attempt)
        )""",
        "CREATE INDEX attempts_by_key ON attempts (key, started_at)",
        "CREATE INDEX attempts_in_flight ON attempts (owner) WHERE outcome = 'in_flight'",
    ),
)
SCHEMA_VERSION: Final = len(_MIGRATIONS)

#: SQLite primary result codes worth waiting out: another writer (busy, locked), WAL-index
#: races (protocol), and what an operator can fix (I/O errors, a full disk, permissions).
#: Anything else (an SQL error, a constraint, corruption) would fail again: see ``_commit``.
_TRANSIENT: Final = frozenset({
    sqlite3.SQLITE_BUSY,
    sqlite3.SQLITE_LOCKED,
    sqlite3.SQLITE_PROTOCOL,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_CANTOPEN,
})  # fmt: skip
#: Retry backoff of a batch that hit a transient error: first and largest delay (seconds).
_FIRST_BACKOFF: Final = 0.01
_MAX_BACKOFF: Final = 1.0
#: Polling for the write lock held by another connection: first and largest sleep (seconds).
_FIRST_POLL: Final = 0.00005
_MAX_POLL: Final = 0.001
#: Cost columns hold picodollars: exact for any price with at most 6 decimals per million
#: tokens (every real price table); finer costs leave ``cost_picousd`` NULL.
_PICO: Final = 12

#: The five per-million prices, stored as one JSON object of decimal strings (``price``).
PRICE_FIELDS: Final = ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h")

#: The DESIGN §5 fields, in ``AttemptRecord.as_json()`` order; all are columns of the table.
ROW_FIELDS: Final = (
    "request_id", "attempt", "key", "model", "upstream", "upstream_model", "client_protocol",
    "upstream_protocol", "stream", "status", "outcome", "usage_source", "input_tokens",
    "output_tokens", "cache_read_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens",
    "reasoning_tokens", "cost_usd", "ttft_ms", "duration_ms", "started_at", "finished_at",
)  # fmt: skip

_TOKENS: Final = (
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_5m_tokens",
    "cache_write_1h_tokens", "reasoning_tokens",
)  # fmt: skip
_INSERT_COLUMNS: Final = (*ROW_FIELDS, "cost_picousd", "owner", "price")
_SETTLE_COLUMNS: Final = (
    "outcome", "status", "usage_source", *_TOKENS, "cost_usd", "cost_picousd", "ttft_ms",
    "duration_ms", "finished_at",
)  # fmt: skip
_THIS_ROW_IN_FLIGHT: Final = (
    " WHERE request_id = :request_id AND attempt = :attempt AND outcome = 'in_flight'"
)

#: The write-ahead row (and a rejection row); a repeat of the same attempt changes nothing
#: (RELIABILITY I1). Statements are built from the constant column names above; values only
#: ever travel as named parameters.
INSERT_SQL: Final = (
    f"INSERT INTO attempts ({', '.join(_INSERT_COLUMNS)})"
    f" VALUES ({', '.join(':' + name for name in _INSERT_COLUMNS)})"
    " ON CONFLICT (request_id, attempt) DO NOTHING"
)
#: Progress on a row still in flight (RELIABILITY I3).
CHECKPOINT_SQL: Final = (
    "UPDATE attempts SET "
    + ", ".join(f"{name} = :{name}" for name in (*_TOKENS, "usage_source", "checkpoint_at"))
    + _THIS_ROW_IN_FLIGHT
)
#: The final state; settles once in SQL too: a second settle matches no row (B7).
SETTLE_SQL: Final = (
    "UPDATE attempts SET "
    + ", ".join(f"{name} = :{name}" for name in _SETTLE_COLUMNS)
    + _THIS_ROW_IN_FLIGHT
)

_INTERRUPT_SQL: Final = (
    "UPDATE attempts SET outcome = 'interrupted', finished_at = :now, cost_usd = :cost_usd,"
    " cost_picousd = :cost_picousd" + _THIS_ROW_IN_FLIGHT
)


class LedgerError(Exception):
    """The ledger database cannot be opened or has a schema this version does not know."""


@dataclass(slots=True, eq=False)
class Op:
    """One statement for the writer thread: ``seq`` is its place in the queue order,
    ``params`` (named; values never go into ``sql``) can be swapped until the thread
    claims it, ``error`` is set if SQLite refused it for good (it was dropped)."""

    seq: int
    sql: str
    params: Mapping[str, object]
    claimed: bool = False
    error: str | None = None
    #: Commit with ``synchronous=FULL`` (False: a write-ahead row under ``normal``).
    full: bool = True


@dataclass(frozen=True, slots=True)
class Batch:
    """What the threads report: every op up to ``last_seq`` is committed (``ops`` of them
    in this batch, after ``retries``), and with ``durable`` also synced where it needs to
    be (``_ledger_sync``). A durable report of the syncer carries ``ops = 0``."""

    last_seq: int
    ops: int
    retries: int
    durable: bool = True


OnBatch: TypeAlias = Callable[[Batch | None], None]


class Writer:
    """The writer thread and its queue ``ops`` (``None`` there: stop; module docstring)."""

    def __init__(
        self, path: str, *, owner: str, busy_timeout: float, batch_size: int, queue_size: int
    ) -> None:
        self.path = path
        self.owner = owner
        self.ops: queue.Queue[Op | None] = queue.Queue(queue_size)
        self._busy_timeout = busy_timeout
        self._batch_size = batch_size
        self._claim_lock = threading.Lock()
        self._abandon = threading.Event()
        self._committed = threading.Condition()
        self._durable_seq = 0  # every op up to it is committed and durable
        #: Every op up to it is committed and handed to the syncer if it needs to be: read
        #: by the trio side (``Ledger._may_group``) to see that nothing is outstanding.
        self.committed_seq = 0
        self._finished = False
        self._thread: threading.Thread | None = None
        self._full = True  # the connection's synchronous level (open_database: FULL)
        self._syncer: WalSyncer | None = None

    def start(self, *, on_started: Callable[[int | Exception], None], on_batch: OnBatch) -> None:
        """Start the thread: it opens the database, migrates, recovers, then writes.

        ``on_started`` gets the number of rows recovery interrupted, or the error that
        stopped the thread; ``on_batch`` every committed batch, then ``None`` when the
        thread stops. Both run on the writer thread and must neither block nor raise.
        """
        self._thread = threading.Thread(
            target=self._run, args=(on_started, on_batch), name="ledger-writer", daemon=True
        )
        self._thread.start()

    def replace_params(self, op: Op, params: Mapping[str, object]) -> bool:
        """Swap the parameters of a queued op; False if the thread has already taken it.
        (The thread holds this lock only to mark a batch taken, never across SQLite.)"""
        with self._claim_lock:
            if op.claimed:
                return False
            op.params = params
            return True

    def wait_committed(self, seq: int, timeout: float) -> bool:
        """Block (a worker thread, never trio's) until op ``seq`` is committed and durable,
        or ``timeout``."""
        self.hurry(seq)
        with self._committed:
            return self._committed.wait_for(
                lambda: self._durable_seq >= seq or self._finished, timeout
            )

    def hurry(self, seq: int) -> None:
        """Somebody waits for op ``seq`` to be durable: the WAL syncer fsyncs it without
        spacing that fsync out (``WalSyncer.hurry``)."""
        syncer = self._syncer
        if syncer is not None:
            syncer.hurry(seq)

    def stop(self, timeout: float, *, abandon: bool) -> bool:
        """Stop the thread: after what is queued now, or (``abandon``) after the current
        batch or retry wait. Waits up to ``timeout``; returns whether the thread ended."""
        if abandon:
            self._abandon.set()
        try:
            self.ops.put_nowait(None)
        except queue.Full:
            self._abandon.set()  # cannot queue the stop: stop after the current batch
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self, on_started: Callable[[int | Exception], None], on_batch: OnBatch) -> None:
        connection = None
        try:
            try:
                connection = open_database(self.path, busy_timeout=self._busy_timeout)
                migrate(connection)
                recovered = recover(connection, owner=self.owner)
                connection.execute("PRAGMA busy_timeout = 0")  # _begin polls instead
                self._syncer = self._start_syncer(connection, on_batch)
            except Exception as error:
                logger.exception("ledger: cannot open %s", self.path)
                on_started(error)
                return
            on_started(recovered)
            self._serve(connection, on_batch)
        except Exception:
            logger.exception("ledger: the writer thread failed")
        finally:
            if self._syncer is not None and not self._syncer.stop(self._busy_timeout + 1):
                logger.error("ledger: the WAL syncer did not stop")
            if connection is not None:
                connection.close()
            on_batch(None)  # before waking thread waiters, as for every batch
            with self._committed:
                self._finished = True
                self._committed.notify_all()

    def _serve(self, connection: sqlite3.Connection, on_batch: OnBatch) -> None:
        while not self._abandon.is_set():
            batch, stop = self._next_batch()
            if batch:
                retries = self._commit(connection, batch)
                if retries is None:
                    return  # abandoned while retrying: the owner logs what is left
                self._report(batch, retries, on_batch)
            if stop:
                return

    def _report(self, batch: list[Op], retries: int, on_batch: OnBatch) -> None:
        last, needs_sync = batch[-1].seq, any(op.full for op in batch)
        waits = self._must_wait(needs_sync)
        # Report to trio first, then wake thread waiters: a waiter that resumes trio code
        # then finds this batch already applied on the trio side.
        on_batch(Batch(last_seq=last, ops=len(batch), retries=retries, durable=not waits))
        self._after_commit(last, needs_sync=needs_sync, waits=waits)

    @property
    def syncs_the_wal(self) -> bool:
        """Whether commits are fsynced by a WAL syncer (the file is in WAL mode); known
        once the thread has started."""
        return self._syncer is not None

    def committed_elsewhere(self, seq: int, *, needs_sync: bool) -> bool:
        """Book op ``seq``, committed by another connection of this process (the trio
        thread's) while this thread had nothing outstanding: hand it to the syncer if it
        needs an fsync or an earlier batch still waits for one. Returns whether it is
        durable already; if not, the syncer reports it through ``on_batch``."""
        waits = self._must_wait(needs_sync)
        self._after_commit(seq, needs_sync=needs_sync, waits=waits)
        return not waits

    def _must_wait(self, needs_sync: bool) -> bool:
        """Whether a batch just committed becomes durable only through the syncer."""
        return self._syncer is not None and self._syncer.must_wait(needs_sync)

    def _after_commit(self, seq: int, *, needs_sync: bool, waits: bool) -> None:
        """After ops up to ``seq`` are committed (and reported): hand them to the syncer,
        or mark them durable; then let the trio side commit the next op itself."""
        if waits:
            assert self._syncer is not None
            self._syncer.submit(seq, needs_sync=needs_sync)
        else:
            self._durable(seq)
        self.committed_seq = seq  # last: nothing is outstanding from here on

    def _durable(self, last_seq: int) -> None:
        with self._committed:
            self._durable_seq = last_seq
            self._committed.notify_all()

    def _start_syncer(self, connection: sqlite3.Connection, on_batch: OnBatch) -> WalSyncer | None:
        """In WAL mode: commit with NORMAL from now on and fsync in a ``WalSyncer``. Without
        a WAL file (``:memory:``, another journal mode) SQLite keeps syncing in COMMIT."""
        (mode,) = connection.execute("PRAGMA journal_mode").fetchone()
        if mode != "wal" or self.path == ":memory:":
            return None

        def on_durable(last_seq: int) -> None:
            on_batch(Batch(last_seq=last_seq, ops=0, retries=0))
            self._durable(last_seq)

        try:
            syncer = WalSyncer(self.path + "-wal", on_durable=on_durable, abandon=self._abandon)
        except OSError as error:
            logger.warning("ledger: no WAL file to sync (%s); SQLite syncs in COMMIT", error)
            return None
        connection.execute("PRAGMA synchronous = NORMAL")
        self._full = False
        syncer.start()
        return syncer

    def _next_batch(self) -> tuple[list[Op], bool]:
        first = self.ops.get()
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < self._batch_size:
            try:
                op = self.ops.get_nowait()
            except queue.Empty:
                break
            if op is None:
                return batch, True
            batch.append(op)
        return batch, False

    def _commit(self, connection: sqlite3.Connection, batch: list[Op]) -> int | None:
        """Commit ``batch``; returns the number of retries, or None if abandoned meanwhile."""
        with self._claim_lock:
            for op in batch:
                op.claimed = True
            params = [op.params for op in batch]
        full = any(op.full for op in batch) and self._syncer is None
        if full is not self._full:  # between transactions, so it applies to the next one
            connection.execute(
                "PRAGMA synchronous = FULL" if full else "PRAGMA synchronous = NORMAL"
            )
            self._full = full
        retries, refused = self._retrying(connection, batch, params)
        if retries is None or refused is None:
            return retries
        for op, op_params in zip(batch, params, strict=True):  # isolate the refused op(s)
            more, refused = self._retrying(connection, [op], [op_params])
            if more is None:
                return None
            retries += more
            if refused is not None:
                op.error = str(refused)
                logger.error("ledger: SQLite refused an op (%s); it is dropped", refused)
        return retries

    def _retrying(
        self, connection: sqlite3.Connection, ops: list[Op], params: list[Mapping[str, object]]
    ) -> tuple[int | None, sqlite3.Error | None]:
        """Run ``ops`` in one transaction, retrying transient errors with backoff.

        Returns ``(retries, None)`` once committed, ``(retries, error)`` if SQLite refused
        for good, ``(None, None)`` if the writer was abandoned while waiting.
        """
        retries, delay = 0, _FIRST_BACKOFF
        while True:
            try:
                _transaction(connection, ops, params, self._busy_timeout)
            except sqlite3.Error as error:
                if _primary_code(error) not in _TRANSIENT:
                    return retries, error
                if retries == 0:
                    logger.warning("ledger: database busy or failing (%s); retrying", error)
                retries += 1
                if self._abandon.wait(delay):
                    return None, None
                delay = min(delay * 2, _MAX_BACKOFF)
            else:
                return retries, None


def _transaction(
    connection: sqlite3.Connection,
    ops: list[Op],
    params: list[Mapping[str, object]],
    busy_timeout: float,
) -> None:
    with _immediate(connection, poll_for=busy_timeout):
        for op, op_params in zip(ops, params, strict=True):
            connection.execute(op.sql, op_params)


@contextmanager
def _immediate(
    connection: sqlite3.Connection, *, poll_for: float = 0.0
) -> Generator[None, None, None]:
    """One ``BEGIN IMMEDIATE`` … ``COMMIT``; rolled back if anything in it fails.
    ``poll_for``: how long :func:`_begin` polls for the write lock (0: SQLite's handler)."""
    if connection.in_transaction:  # a failed rollback may have left one open
        connection.rollback()
    _begin(connection, poll_for)
    try:
        yield
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.rollback()
        raise


def _begin(connection: sqlite3.Connection, poll_for: float) -> None:
    """``BEGIN IMMEDIATE``, retried on ``SQLITE_BUSY`` for ``poll_for`` seconds with short
    sleeps (``_FIRST_POLL`` doubling to ``_MAX_POLL``); then the last error is raised."""
    deadline = time.monotonic() + poll_for
    sleep = _FIRST_POLL
    while True:
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            if not is_busy(error) or time.monotonic() >= deadline:
                raise
            time.sleep(sleep)
            sleep = min(sleep * 2, _MAX_POLL)
        else:
            return


def _primary_code(error: sqlite3.Error) -> int | None:
    code = getattr(error, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


# ------------------------------------------------------------------------- schema


def open_database(path: str, *, busy_timeout: float) -> sqlite3.Connection:
    """Open the writing connection: WAL, ``synchronous=FULL`` (module docstring), the busy
    timeout, and explicit transactions only (``isolation_level=None``)."""
    connection = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    try:
        (mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode != "wal" and path != ":memory:":
            logger.warning("ledger: journal_mode is %s, not wal", mode)
        connection.execute("PRAGMA synchronous = FULL")
    except BaseException:
        connection.close()
        raise
    return connection


def open_direct(path: str) -> sqlite3.Connection | None:
    """Open the trio thread's connection for the ops it commits itself
    (``Ledger._commit_group``), or None if the database is not in WAL mode or cannot be
    opened (logged).

    It never waits for a lock (``busy_timeout`` 0: a taken lock fails at once), never runs
    a checkpoint (``wal_autocheckpoint`` 0: the writer's connection does them, so the
    trio side leaves it every ``_DIRECT_RUN``-th op), and commits
    without an fsync (``synchronous = NORMAL``: in WAL mode the commit is in the WAL file,
    whose next fsync by the WAL syncer covers it). Opened on a worker thread
    (``check_same_thread`` off), then used on the trio thread only.
    """
    connection = None
    try:
        connection = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
        (mode,) = connection.execute("PRAGMA journal_mode").fetchone()
        if mode == "wal":
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.execute("PRAGMA wal_autocheckpoint = 0")
            return connection
    except sqlite3.Error as error:
        logger.warning("ledger: no connection for the trio thread's own commits (%s)", error)
    if connection is not None:
        connection.close()
    return None


def commit_group(connection: sqlite3.Connection, ops: Sequence[Op]) -> None:
    """Commit ``ops`` in one transaction on ``connection`` (the trio thread's, from
    :func:`open_direct`, which never waits for the lock); rolled back if anything fails.

    Raises:
        sqlite3.Error: nothing was committed; :func:`is_busy` tells a taken lock.
    """
    with _immediate(connection):
        for op in ops:
            connection.execute(op.sql, op.params)


def is_busy(error: sqlite3.Error) -> bool:
    """Whether ``error`` is SQLite's ``SQLITE_BUSY``: the write lock is held elsewhere."""
    return _primary_code(error) == sqlite3.SQLITE_BUSY


def migrate(connection: sqlite3.Connection) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION`, all pending steps in one transaction.

    Raises:
        LedgerError: the database was written by a newer version (its schema is unknown).
    """
    with _immediate(connection):
        connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        current = connection.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0
        if current > SCHEMA_VERSION:
            raise LedgerError(
                f"ledger schema version {current} is newer than this gateway's {SCHEMA_VERSION}"
            )
        for steps in _MIGRATIONS[current:]:
            for statement in steps:
                connection.execute(statement)
        if current < SCHEMA_VERSION:
            connection.execute("DELETE FROM schema_version")
            connection.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))


# ----------------------------------------------------------------------- recovery


def recover(connection: sqlite3.Connection, *, owner: str) -> int:
    """Mark ``interrupted`` (and return how many) the ``in_flight`` rows of gone owners,
    priced from the row's last checkpointed usage and the price stored with it.

    Gone: written on this host by a pid that is not alive, or by this very pid under another
    owner (an earlier run with the same pid, as pid 1 in a container). Rows of other hosts
    and of live processes (other workers on the file) stay. Limitation: a dead owner whose
    pid a live process reuses keeps its rows ``in_flight`` until that process ends too.
    """
    now, interrupted = _utc_now(), 0
    with _immediate(connection):
        rows = connection.execute(
            "SELECT request_id, attempt, owner, price, input_tokens, output_tokens,"
            " cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens, reasoning_tokens"
            " FROM attempts WHERE outcome = 'in_flight'"
        ).fetchall()
        for request_id, attempt, row_owner, price, *tokens in rows:
            if not _owner_is_gone(row_owner, me=owner):
                continue
            cost = cost_columns(_price_usage(Usage(*tokens), price))
            row = {"request_id": request_id, "attempt": attempt, "now": now, **cost}
            interrupted += connection.execute(_INTERRUPT_SQL, row).rowcount
    return interrupted


def _owner_is_gone(owner: str, *, me: str) -> bool:
    parts = owner.rsplit(":", 2)  # host:pid:boot id; a host name has no colon
    if len(parts) != 3 or parts[0] != socket.gethostname():
        return False
    try:
        pid = int(parts[1])
    except ValueError:
        return False
    if pid == os.getpid():
        return owner != me
    return not _pid_is_alive(pid)


def _pid_is_alive(pid: int) -> bool:
    if sys.platform == "win32":
        return True  # os.kill(pid, 0) would send CTRL_C_EVENT there; never guess "dead"
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True  # exists, owned by someone else
    except (OverflowError, OSError):  # ProcessLookupError, or not a possible pid
        return False
    return True


def _price_usage(usage: Usage, stored: str | None) -> Decimal | None:
    """The cost of ``usage`` at the price stored with the row; None without a price."""
    if stored is None:
        return None
    try:
        parts: object = json.loads(stored)
        if isinstance(parts, dict) and all(isinstance(parts.get(n), str) for n in PRICE_FIELDS):
            return cost_usd(usage, Price(**{n: Decimal(parts[n]) for n in PRICE_FIELDS}))
    except (ValueError, InvalidOperation):
        pass
    logger.error("ledger: unreadable price %r on an interrupted row", stored)
    return None


def cost_columns(cost: Decimal | None) -> dict[str, object]:
    """``cost_usd`` (exact decimal text) and ``cost_picousd`` (exact integer, or NULL)."""
    if cost is None:
        return {"cost_usd": None, "cost_picousd": None}
    pico: int | None = None
    if cost.is_finite():
        scaled = cost.scaleb(_PICO)
        if scaled == scaled.to_integral_value():
            pico = int(scaled)
    return {"cost_usd": str(cost), "cost_picousd": pico}


def _utc_now() -> str:
    """The current UTC time as ``AttemptRecord.started_at`` writes it (ms, +00:00)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# -------------------------------------------------------------------------- reads


def _normalise_since(since: str) -> str:
    """``since`` in the stored form, so text comparison is time comparison."""
    moment = datetime.fromisoformat(since.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    exact_ms = moment.microsecond % 1000 == 0
    return moment.isoformat(timespec="milliseconds" if exact_ms else "microseconds")


@contextmanager
def _reading(path: str) -> Generator[sqlite3.Connection | None, None, None]:
    """A read-only connection of its own (WAL: it reads while the gateway writes), or
    ``None`` when the file has no ledger table yet."""
    if path == ":memory:":
        raise ValueError("an in-memory ledger cannot be read from another connection")
    if not Path(path).is_file():
        raise FileNotFoundError(f"ledger database not found: {path}")
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=5.0)) as connection:
        query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'attempts'"
        yield connection if connection.execute(query).fetchone() else None


def read_rows(
    path: str, *, key: str | None = None, since: str | None = None
) -> list[dict[str, object]]:
    """Read ledger rows as ``AttemptRecord.as_json()`` objects (the 23 DESIGN §5 fields).

    Synchronous: for the CLI, or through ``trio.to_thread`` (the admin route).

    Args:
        path: the ledger database file.
        key: only this key's rows; ``None`` = every key.
        since: only rows whose ``started_at`` is at or after this ISO 8601 instant (a
            value without an offset is UTC); ``None`` = all time.

    Returns:
        The rows, ordered by ``started_at``, then ``attempt``, then insertion.

    Raises:
        FileNotFoundError: there is no database at ``path``.
        ValueError: ``since`` is not ISO 8601, or ``path`` is ``:memory:``.
    """
    clauses = ["1"]
    params: dict[str, object] = {"key": key, "since": None}
    if key is not None:
        clauses.append("key = :key")
    if since is not None:
        clauses.append("started_at >= :since")
        params["since"] = _normalise_since(since)
    with _reading(path) as connection:
        if connection is None:
            return []
        cursor = connection.execute(
            f"SELECT {', '.join(ROW_FIELDS)} FROM attempts WHERE {' AND '.join(clauses)}"
            " ORDER BY started_at, attempt, rowid",
            params,
        )
        return [_row_json(row) for row in cursor]


def _row_json(row: tuple[object, ...]) -> dict[str, object]:
    obj = dict(zip(ROW_FIELDS, row, strict=True))
    obj["stream"] = bool(obj["stream"])  # ttft/duration were stored rounded, as as_json()
    return obj


def spent_since(path: str, *, key: str, since: str) -> Decimal:
    """The exact sum of ``key``'s settled costs on rows started at or after ``since``.

    Settled means any outcome but ``in_flight`` and ``rejected`` (``interrupted`` rows carry
    the cost recovery gave them). Summed as integer picodollars in Python (no float, no
    64-bit overflow), plus the decimal text of any cost finer than a picodollar.

    Raises:
        FileNotFoundError: there is no database at ``path``.
        ValueError: ``since`` is not ISO 8601, or ``path`` is ``:memory:``.
    """
    pico, finer = 0, Decimal(0)
    with _reading(path) as connection:
        if connection is None:
            return finer
        rows = connection.execute(
            "SELECT cost_picousd, cost_usd FROM attempts"
            " WHERE key = :key AND started_at >= :since AND cost_usd IS NOT NULL"
            " AND outcome NOT IN ('in_flight', 'rejected')",
            {"key": key, "since": _normalise_since(since)},
        )
        for cost_pico, cost_text in rows:
            if cost_pico is not None:
                pico += cost_pico
            else:
                finer += Decimal(cost_text)
    return Decimal(pico).scaleb(-_PICO) + finer
