"""The ledger's threads and the trio thread.

- The WAL syncer (``_ledger_sync``): billing evidence is fsynced off the writer thread and
  outside SQLite's write lock, so a request's write-ahead row never waits for the fsync of
  another request's settlement, and ``flush`` still returns only once it is durable.
- The threads' reports wake the trio thread only when a task there waits for one.
- The trio thread commits single ops itself, at any load, never waiting for the lock,
  never overtaking an op the writer still holds, and not again soon after a slow commit.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Literal

import pytest
import trio
import trio.testing

from tests.test_ledger import PRICE, database_locked, finish, make_record
from trio_gateway import _ledger, _ledger_db, _ledger_sync
from trio_gateway._ledger import (
    _DIRECT_PAUSE,
    _DIRECT_SLOW,
    _GROUP_WAIT,
    _REPORTS_HELD,
    AttemptRecord,
    Ledger,
    read_rows,
)
from trio_gateway._ledger_sync import WalSyncer


@asynccontextmanager
async def open_ledger(
    path: Path | str, *, write_ahead_sync: Literal["normal", "full"] = "normal"
) -> AsyncGenerator[Ledger, None]:
    ledger = Ledger(str(path), write_ahead_sync=write_ahead_sync)
    await ledger.start()
    try:
        yield ledger
    finally:
        await ledger.aclose()


async def write_ahead_and_settle(ledger: Ledger, request_id: str) -> None:
    record = make_record(request_id)
    await ledger.write_ahead(record, price=PRICE)
    ledger.settle(finish(record))


async def written_ahead(ledger: Ledger, count: int) -> list[AttemptRecord]:
    """``count`` records r0, r1, ... written ahead (committed) in order."""
    records = [make_record(f"r{n}") for n in range(count)]
    for record in records:
        await ledger.write_ahead(record, price=PRICE)
    return records


def syncer_of(ledger: Ledger) -> WalSyncer:
    syncer = ledger._writer._syncer
    assert syncer is not None, "a file ledger in WAL mode syncs in a WalSyncer"
    return syncer


class SlowFsync:
    """``os.fsync`` that takes ``seconds`` (and can fail the first ``failures`` calls)."""

    def __init__(self, seconds: float = 0.0, failures: int = 0) -> None:
        self.seconds, self.failures = seconds, failures
        self.started: list[float] = []
        self.finished: list[float] = []
        self.real: Callable[[int], None] = os.fsync

    def __call__(self, fd: int) -> None:
        self.started.append(time.perf_counter())
        if self.failures:
            self.failures -= 1
            raise OSError(5, "Input/output error")
        time.sleep(self.seconds)
        self.real(fd)
        self.finished.append(time.perf_counter())


async def test_settlements_are_fsynced_by_the_syncer_and_write_ahead_rows_are_not(
    tmp_path: Path,
) -> None:
    async with open_ledger(tmp_path / "l.db") as ledger:
        syncer = syncer_of(ledger)
        records = await written_ahead(ledger, 3)
        await ledger.flush()
        assert syncer.fsyncs == 0  # write-ahead rows under "normal": committed, not synced
        for record in records:
            ledger.settle(finish(record))
        await ledger.flush()
        assert 1 <= syncer.fsyncs <= 3
    assert {row["outcome"] for row in read_rows(str(tmp_path / "l.db"))} == {"completed"}


async def test_a_write_ahead_row_does_not_wait_for_a_settlements_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = SlowFsync(seconds=0.3)
    monkeypatch.setattr(os, "fsync", slow)
    async with open_ledger(tmp_path / "l.db") as ledger:
        await write_ahead_and_settle(ledger, "first")
        while not slow.started:  # the settlement's fsync is under way
            await trio.sleep(0.001)
        before = time.perf_counter()
        await ledger.write_ahead(make_record("second"), price=PRICE)
        waited = time.perf_counter() - before
        assert not slow.finished
        assert waited < 0.15, waited
        await ledger.flush()  # flush returns only once the settlement is durable
        assert slow.finished
        assert time.perf_counter() >= slow.finished[0]


async def test_under_write_ahead_sync_full_the_write_ahead_row_waits_for_its_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = SlowFsync(seconds=0.2)
    monkeypatch.setattr(os, "fsync", slow)
    async with open_ledger(tmp_path / "l.db", write_ahead_sync="full") as ledger:
        await ledger.write_ahead(make_record("r"), price=PRICE)
        assert len(slow.finished) == 1


async def test_a_failing_fsync_is_retried_and_nothing_is_durable_before_it_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    slow = SlowFsync(failures=2)
    monkeypatch.setattr(os, "fsync", slow)
    async with open_ledger(tmp_path / "l.db") as ledger:
        await write_ahead_and_settle(ledger, "r")
        await ledger.flush()
        assert len(slow.started) == 3
        assert len(slow.finished) == 1
        assert syncer_of(ledger).fsyncs == 1
    assert "fsync of the WAL failed" in caplog.text


async def test_without_a_wal_sqlite_keeps_syncing_in_commit() -> None:
    async with open_ledger(":memory:") as ledger:
        assert ledger._writer._syncer is None
        await write_ahead_and_settle(ledger, "r")
        await ledger.flush()


def test_a_replaced_wal_file_is_reopened_and_a_missing_one_needs_no_sync(
    tmp_path: Path,
) -> None:
    wal = tmp_path / "l.db-wal"
    wal.write_bytes(b"old")
    durable: list[int] = []
    syncer = WalSyncer(str(wal), on_durable=durable.append, abandon=threading.Event())
    syncer.start()
    try:
        replacement = tmp_path / "new"
        replacement.write_bytes(b"new")
        os.replace(replacement, wal)
        syncer.submit(7, needs_sync=True)
        deadline = time.monotonic() + 5
        while not durable and time.monotonic() < deadline:
            time.sleep(0.001)
        assert durable == [7]
        assert os.fstat(syncer._fd).st_ino == os.stat(wal).st_ino
        wal.unlink()
        syncer.submit(8, needs_sync=True)
        while len(durable) < 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert durable == [7, 8]
        assert syncer.fsyncs == 1
    finally:
        assert syncer.stop(5)


def test_batches_become_durable_in_commit_order(tmp_path: Path) -> None:
    wal = tmp_path / "l.db-wal"
    wal.write_bytes(b"x")
    durable: list[int] = []
    syncer = WalSyncer(str(wal), on_durable=durable.append, abandon=threading.Event())
    assert not syncer.must_wait(False)  # idle, nothing to sync: durable at once
    assert syncer.must_wait(True)
    syncer.submit(1, needs_sync=True)
    assert syncer.must_wait(False)  # an earlier batch still waits: so does this one
    syncer.submit(2, needs_sync=False)
    syncer.start()  # both were queued before the thread ran: one fsync, one report
    assert syncer.stop(5)
    assert durable == [2]
    assert syncer.fsyncs == 1


def wait_until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Poll ``condition`` from this (non-trio) thread; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


@contextmanager
def started_syncer(
    tmp_path: Path, *, min_interval: float
) -> Generator[tuple[WalSyncer, list[tuple[int, float]]], None, None]:
    """A running syncer of a WAL file, and its reports ``(last_seq, time.monotonic())``."""
    wal = tmp_path / "l.db-wal"
    wal.write_bytes(b"x")
    reports: list[tuple[int, float]] = []
    syncer = WalSyncer(
        str(wal),
        on_durable=lambda seq: reports.append((seq, time.monotonic())),
        abandon=threading.Event(),
        min_interval=min_interval,
    )
    syncer.start()
    try:
        yield syncer, reports
    finally:
        assert syncer.stop(5)


def test_under_load_one_fsync_covers_the_batches_of_its_interval(tmp_path: Path) -> None:
    # Settlements reached the syncer one by one at c=64: about one fsync (and thread
    # wake-up) per request. Spaced out, one fsync covers all that came in meanwhile.
    with started_syncer(tmp_path, min_interval=0.3) as (syncer, reports):
        syncer.submit(1, needs_sync=True)
        wait_until(lambda: len(reports) == 1)  # an idle syncer: synced at once
        for seq in range(2, 12):
            syncer.submit(seq, needs_sync=True)
        wait_until(lambda: len(reports) == 2)
        assert [seq for seq, _ in reports] == [1, 11]
        assert syncer.fsyncs == 2
        assert reports[1][1] - reports[0][1] >= 0.25  # the interval, less the first fsync


def test_a_waiting_task_hurries_the_fsync(tmp_path: Path) -> None:
    with started_syncer(tmp_path, min_interval=3600) as (syncer, reports):
        syncer.submit(1, needs_sync=True)
        wait_until(lambda: len(reports) == 1)
        syncer.submit(2, needs_sync=True)
        time.sleep(0.05)
        assert len(reports) == 1  # spaced out: nobody waits for it
        syncer.hurry(2)
        wait_until(lambda: [seq for seq, _ in reports] == [1, 2])
        # Hurried before it is submitted (a flush whose op is still with the writer):
        syncer.hurry(3)
        syncer.submit(3, needs_sync=True)
        wait_until(lambda: [seq for seq, _ in reports] == [1, 2, 3])
        # An op already durable hurries nothing: the next one waits for the interval.
        syncer.hurry(2)
        syncer.submit(4, needs_sync=True)
        time.sleep(0.05)
        assert len(reports) == 3
        assert syncer.fsyncs == 3


def test_stop_syncs_a_spaced_out_batch_at_once(tmp_path: Path) -> None:
    with started_syncer(tmp_path, min_interval=3600) as (syncer, reports):
        syncer.submit(1, needs_sync=True)
        wait_until(lambda: len(reports) == 1)
        syncer.submit(2, needs_sync=True)
        before = time.monotonic()
        assert syncer.stop(5)
        assert time.monotonic() - before < 1
        assert [seq for seq, _ in reports] == [1, 2]
        assert syncer.fsyncs == 2


async def test_flush_and_a_full_write_ahead_do_not_wait_for_the_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_ledger_sync, "MIN_INTERVAL", 3600)
    async with open_ledger(tmp_path / "l.db", write_ahead_sync="full") as ledger:
        syncer = syncer_of(ledger)
        with trio.fail_after(5):
            for n in range(3):
                record = make_record(f"r{n}")
                await ledger.write_ahead(record, price=PRICE)  # waits for its fsync
                ledger.settle(finish(record))  # nobody waits: spaced out
                await ledger.flush()  # waits: hurried
        assert syncer.fsyncs == 6
        # Settlements nobody waits for share the next fsync.
        records = [make_record(f"s{n}") for n in range(5)]
        with trio.fail_after(5):
            for record in records:
                await ledger.write_ahead(record, price=PRICE)
        for record in records:
            ledger.settle(finish(record))
        await trio.sleep(0.1)
        assert syncer.fsyncs == 11  # each write-ahead row waited for one; no settlement
        with trio.fail_after(5):
            await ledger.flush()
        assert syncer.fsyncs == 12
    assert {row["outcome"] for row in read_rows(str(tmp_path / "l.db"))} == {"completed"}


# ------------------------------------------------- reports from the threads to trio


class ThreadWakeups(trio.abc.Instrument):
    """Counts the steps of trio's ``run_sync_soon`` task: each is a wake-up of the trio
    thread by another thread (here the ledger's writer and syncer)."""

    def __init__(self) -> None:
        self.count = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if "run_sync_soon" in task.name:
            self.count += 1


@contextmanager
def counting_thread_wakeups() -> Generator[ThreadWakeups, None, None]:
    """A :class:`ThreadWakeups` installed on the running trio loop for the block."""
    wakeups = ThreadWakeups()
    trio.lowlevel.add_instrument(wakeups)
    try:
        yield wakeups
    finally:
        trio.lowlevel.remove_instrument(wakeups)


async def until(condition: Callable[[], bool], *, seconds: float = 10.0) -> None:
    """Poll ``condition`` on the trio thread (a timer, never another thread's wake-up)."""
    with trio.fail_after(seconds):
        while not condition():
            await trio.sleep(0.001)


async def settle_one_batch_at_a_time(ledger: Ledger, records: list[AttemptRecord]) -> None:
    """Settle each record in a writer batch of its own, committed and fsynced before the
    next (the trio thread's own commits paused). (Watched on the thread side: reading
    ``pending`` would apply the reports.)"""
    writer = ledger._writer
    ledger._direct_paused_until = math.inf
    try:
        for record in records:
            ledger.settle(finish(record))

            def durable(seq: int = ledger._next_seq - 1) -> bool:
                return writer._durable_seq >= seq

            await until(durable)
    finally:
        ledger._direct_paused_until = 0.0


async def test_settlements_nobody_waits_for_do_not_wake_the_trio_thread(tmp_path: Path) -> None:
    # At concurrency 1 every settlement is a batch of its own: reporting its commit and its
    # fsync to trio at once woke the trio thread twice per request for nothing.
    async with open_ledger(tmp_path / "l.db") as ledger:
        records = await written_ahead(ledger, 20)
        with counting_thread_wakeups() as wakeups:
            await settle_one_batch_at_a_time(ledger, records)  # 40 reports, nobody waiting
        assert wakeups.count == 0
        assert ledger.statistics().committed_ops == 40  # read without a wake-up
        # A task that waits is still woken: the write-ahead commit and flush's fsync.
        await write_ahead_and_settle(ledger, "last")
        with trio.fail_after(10):
            await ledger.flush()
    assert {row["outcome"] for row in read_rows(str(tmp_path / "l.db"))} == {"completed"}


async def test_reports_nobody_waits_for_are_held_in_a_bounded_queue(tmp_path: Path) -> None:
    async with open_ledger(tmp_path / "l.db") as ledger:
        records = await written_ahead(ledger, 100)
        with counting_thread_wakeups() as wakeups:
            for record in records:
                await settle_one_batch_at_a_time(ledger, [record])
                assert len(ledger._reports) <= _REPORTS_HELD
        # 200 reports (a commit and an fsync per settlement): a wake-up per _REPORTS_HELD.
        assert wakeups.count == 200 // _REPORTS_HELD


# ------------------------------------------- write-ahead rows committed on the trio thread


async def test_with_an_idle_writer_a_write_ahead_row_is_committed_without_a_thread_hop(
    tmp_path: Path,
) -> None:
    db = tmp_path / "l.db"
    async with open_ledger(db) as ledger:
        await write_ahead_and_settle(ledger, "earlier")
        await ledger.flush()  # the writer is idle now
        committed = ledger.statistics().committed_ops
        with counting_thread_wakeups() as wakeups:
            record = make_record("now")
            await ledger.write_ahead(record, price=PRICE)
        assert wakeups.count == 0  # committed here: no writer thread reported it
        rows = {row["request_id"]: row["outcome"] for row in read_rows(str(db))}
        assert rows == {"earlier": "completed", "now": "in_flight"}  # visible to others
        assert ledger.statistics().committed_ops == committed + 1
        assert syncer_of(ledger).fsyncs == 1  # "normal": the row itself is not fsynced
        ledger.settle(finish(record))
        await ledger.flush()
    rows = {row["request_id"]: row["outcome"] for row in read_rows(str(db))}
    assert rows == {"earlier": "completed", "now": "completed"}


async def test_a_write_ahead_row_meets_a_taken_lock_without_blocking_the_trio_thread(
    tmp_path: Path,
) -> None:
    db = tmp_path / "l.db"
    async with open_ledger(db) as ledger:
        done = trio.Event()

        async def new_request() -> None:
            await ledger.write_ahead(make_record("locked-out"), price=PRICE)
            done.set()

        async with trio.open_nursery() as nursery:
            async with database_locked(db):
                before = time.perf_counter()
                nursery.start_soon(new_request)
                await trio.sleep(0.2)
                assert time.perf_counter() - before < 0.4  # the trio thread never waited
                assert not done.is_set()  # queued for the writer, which waits for the lock
                assert read_rows(str(db)) == []
            with trio.fail_after(10):
                await done.wait()  # the lock is released: the writer commits the row
        assert [row["outcome"] for row in read_rows(str(db))] == ["in_flight"]


async def test_with_an_idle_writer_a_settlement_is_committed_by_the_groups_timer_and_fsynced_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "l.db"
    fsync = SlowFsync(seconds=0.2)
    async with open_ledger(db) as ledger:
        record, other = make_record("r"), make_record("other")
        await ledger.write_ahead(record, price=PRICE)
        await ledger.write_ahead(other, price=PRICE)  # in flight: more requests may come
        monkeypatch.setattr(os, "fsync", fsync)
        batches = ledger.statistics().batches
        with counting_thread_wakeups() as wakeups:
            ledger.settle(finish(record))  # not async: waits in the group for a write-ahead
            assert ledger.pending == 1
            before = time.monotonic()
            await until(lambda: ledger.pending == 0)  # none came: the timer committed it
        assert time.monotonic() - before >= _GROUP_WAIT * 0.8
        assert wakeups.count == 0  # on the trio thread
        assert ledger.statistics().batches == batches + 1
        rows = {row["request_id"]: row["outcome"] for row in read_rows(str(db))}
        assert rows == {"r": "completed", "other": "in_flight"}
        before = time.perf_counter()
        await ledger.flush()  # but durable only after the syncer's fsync
        assert time.perf_counter() - before >= 0.15
        assert len(fsync.finished) == 1


async def test_a_settlement_is_committed_with_the_next_write_ahead_row(tmp_path: Path) -> None:
    # One transaction instead of two: at c=64 a commit of its own cost about twice the CPU
    # per op of a group of four (BEGIN IMMEDIATE, the WAL frames, the locks).
    db = tmp_path / "l.db"
    async with open_ledger(db) as ledger:
        first = make_record("first")
        await ledger.write_ahead(first, price=PRICE)
        await ledger.write_ahead(make_record("streaming"), price=PRICE)
        stats = ledger.statistics()
        ledger.settle(finish(first))
        await ledger.write_ahead(make_record("second"), price=PRICE)
        after = ledger.statistics()
        assert (after.batches, after.committed_ops) == (stats.batches + 1, stats.committed_ops + 2)
        rows = {row["request_id"]: row["outcome"] for row in read_rows(str(db))}
        assert rows == {"first": "completed", "streaming": "in_flight", "second": "in_flight"}


async def test_with_no_other_attempt_in_flight_an_op_is_committed_at_once(
    tmp_path: Path,
) -> None:
    # No write-ahead row is coming soon: at c=1, waiting for the next request's put this
    # commit on the way to that request's first token (TTFT p50 +0.2 ms in an A/B).
    db = tmp_path / "l.db"
    async with open_ledger(db) as ledger:
        record = make_record("only")
        stats = ledger.statistics()
        await ledger.write_ahead(record, price=PRICE)
        ledger.settle(finish(record))
        assert ledger.pending == 0  # committed before settle returned
        after = ledger.statistics()
        assert (after.batches, after.committed_ops) == (stats.batches + 2, stats.committed_ops + 2)
        assert [row["outcome"] for row in read_rows(str(db))] == ["completed"]


async def test_a_write_ahead_row_committed_at_once_costs_no_scheduler_round(
    tmp_path: Path,
) -> None:
    # Its caller sends the upstream request next, a checkpoint of its own; one more here
    # was a scheduler round on the way to the first token at low load.
    async with open_ledger(tmp_path / "l.db") as ledger:
        record = make_record("alone")
        with trio.testing.assert_no_checkpoints():
            await ledger.write_ahead(record, price=PRICE)
        assert ledger.pending == 0
        ledger.settle(finish(record))
        second, third = make_record("second"), make_record("third")
        await ledger.write_ahead(second, price=PRICE)
        # With another attempt in flight the row joins a group, which waits one round.
        with trio.testing.assert_checkpoints():
            await ledger.write_ahead(third, price=PRICE)


async def test_the_write_ahead_rows_of_one_scheduler_round_share_a_transaction(
    tmp_path: Path,
) -> None:
    db = tmp_path / "l.db"
    async with open_ledger(db) as ledger:
        await ledger.write_ahead(make_record("warm-up"), price=PRICE)
        stats = ledger.statistics()
        with counting_thread_wakeups() as wakeups:
            async with trio.open_nursery() as nursery:
                for n in range(10):
                    nursery.start_soon(
                        partial(ledger.write_ahead, make_record(f"r{n}"), price=PRICE)
                    )
        assert wakeups.count == 0
        after = ledger.statistics()
        assert (after.batches, after.committed_ops) == (stats.batches + 1, stats.committed_ops + 10)
        assert len(read_rows(str(db))) == 11


async def test_with_many_attempts_in_flight_ops_are_still_committed_on_the_trio_thread(
    tmp_path: Path,
) -> None:
    # At c=64 the writer's batches cost more CPU in thread hand-offs and GIL contention
    # than they saved in SQLite work (bench/README.md): load does not send ops to it.
    db = tmp_path / "l.db"
    async with open_ledger(db) as ledger:
        with counting_thread_wakeups() as wakeups:
            records = await written_ahead(ledger, 64)
            for record in records[:32]:
                ledger.settle(finish(record))
            await until(lambda: ledger.pending == 0)  # by the group's timer
        assert wakeups.count == 0  # no writer thread reported any of them
        outcomes = [row["outcome"] for row in read_rows(str(db))]
        assert outcomes.count("completed") == 32
        assert outcomes.count("in_flight") == 32
        for record in records[32:]:
            ledger.settle(finish(record))
        with trio.fail_after(10):
            await ledger.flush()
    assert {row["outcome"] for row in read_rows(str(db))} == {"completed"}


class SlowCommits:
    """The trio thread's connection, with every ``COMMIT`` taking ``seconds`` (a disk that
    stalls)."""

    def __init__(self, connection: Any, seconds: float) -> None:
        self.connection, self.seconds, self.commits = connection, seconds, 0

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == "COMMIT":
            self.commits += 1
            time.sleep(self.seconds)
        return self.connection.execute(sql, *args)

    @property
    def in_transaction(self) -> bool:
        return bool(self.connection.in_transaction)

    def rollback(self) -> None:
        self.connection.rollback()

    def close(self) -> None:
        self.connection.close()


async def test_a_slow_commit_on_the_trio_thread_sends_the_next_ops_to_the_writer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A stalled disk stalls the event loop during a commit there: after one slow commit the
    # writer thread, which may wait, takes the ops of the next _DIRECT_PAUSE seconds.
    db = tmp_path / "l.db"
    async with open_ledger(db) as ledger:
        slow = SlowCommits(ledger._direct, seconds=_DIRECT_SLOW * 2)
        ledger._direct = slow  # type: ignore[assignment]  # the same calls, slower
        first = make_record("first")
        await ledger.write_ahead(first, price=PRICE)
        assert slow.commits == 1  # committed here, slowly
        assert "a commit on the event loop took" in caplog.text
        assert ledger._direct_paused_until > time.monotonic() + _DIRECT_PAUSE / 2
        with counting_thread_wakeups() as wakeups:
            second = make_record("second")
            await ledger.write_ahead(second, price=PRICE)  # the writer commits it
        assert slow.commits == 1
        assert wakeups.count == 1  # its report woke the waiting write-ahead
        ledger._direct_paused_until = time.monotonic() - 1  # the pause is over
        # The writer reports a batch to trio before it marks it committed on its own side.
        await until(lambda: ledger._writer.committed_seq == ledger._next_seq - 1)
        ledger.settle(finish(first))
        await until(lambda: slow.commits == 2)  # on the trio thread again
        ledger.settle(finish(second))
        with trio.fail_after(10):
            await ledger.flush()
    assert {row["outcome"] for row in read_rows(str(db))} == {"completed"}


async def test_while_the_writer_has_an_op_outstanding_later_ops_queue_behind_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The write lock may be free while the writer still holds an op it has taken (here: a
    # slow transaction that has not begun yet). An op committed on the trio thread then
    # would overtake it, and the committed watermark would count the writer's op as done.
    db = tmp_path / "l.db"
    real = _ledger_db._transaction

    def slow_transaction(*args: Any, **kwargs: Any) -> None:
        time.sleep(0.3)
        real(*args, **kwargs)

    async with open_ledger(db) as ledger:
        first, second = make_record("first"), make_record("second")
        for record in (first, second):
            await ledger.write_ahead(record, price=PRICE)
        monkeypatch.setattr(_ledger_db, "_transaction", slow_transaction)
        async with database_locked(db):
            ledger.settle(finish(first))  # `second` in flight: it waits in the group ...
            await trio.sleep(_GROUP_WAIT * 4)  # ... whose timer meets the lock: to the writer
        ledger.settle(finish(second))  # the lock is free, but the writer has `first`
        assert ledger.pending == 2
        outcomes = {row["request_id"]: row["outcome"] for row in read_rows(str(db))}
        assert outcomes == {"first": "in_flight", "second": "in_flight"}
        with trio.fail_after(10):
            await ledger.flush()
        monkeypatch.undo()
        outcomes = {row["request_id"]: row["outcome"] for row in read_rows(str(db))}
        assert outcomes == {"first": "completed", "second": "completed"}
        third = make_record("third")
        with counting_thread_wakeups() as wakeups:
            await ledger.write_ahead(third, price=PRICE)  # the writer is idle again
            ledger.settle(finish(third))
            await until(lambda: ledger.pending == 0)
        assert wakeups.count == 0  # committed on the trio thread
        assert {row["request_id"]: row["outcome"] for row in read_rows(str(db))}["third"] == (
            "completed"
        )


async def test_a_quiet_gateways_wal_is_still_checkpointed(tmp_path: Path) -> None:
    # The trio thread's connection never checkpoints; every _DIRECT_RUN-th op goes to the
    # writer, whose commit checkpoints once the WAL is past 1000 pages, so the WAL file
    # stays bounded (it grew by about 20 KB a request without that).
    db = tmp_path / "l.db"
    async with open_ledger(db) as ledger:
        for n in range(3000):
            await write_ahead_and_settle(ledger, f"r{n}")
        await ledger.flush()
        wal_bytes = (tmp_path / "l.db-wal").stat().st_size
    assert wal_bytes < 8_000_000, wal_bytes
    assert len(read_rows(str(db))) == 3000


async def test_closing_commits_an_open_group_and_ends_its_timer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "l.db"
    monkeypatch.setattr(_ledger, "_GROUP_WAIT", 3600)  # the timer would not commit it
    tasks_before = trio.lowlevel.current_statistics().tasks_living
    ledger = Ledger(str(db), write_ahead_sync="normal")
    await ledger.start()
    assert trio.lowlevel.current_statistics().tasks_living == tasks_before + 1  # the timer
    done, streaming = make_record("done"), make_record("streaming")
    await ledger.write_ahead(done, price=PRICE)
    await ledger.write_ahead(streaming, price=PRICE)
    ledger.settle(finish(done))  # waits in the group: `streaming` is in flight
    assert ledger.pending == 1
    with trio.fail_after(5):
        await ledger.aclose()
    assert ledger.pending == 0
    rows = {row["request_id"]: row["outcome"] for row in read_rows(str(db))}
    assert rows == {"done": "completed", "streaming": "in_flight"}
    await trio.testing.wait_all_tasks_blocked()
    assert trio.lowlevel.current_statistics().tasks_living == tasks_before
