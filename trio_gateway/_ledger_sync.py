"""The ledger's WAL syncer: the fsync of billing evidence, off the writer thread and the lock.

Theory of operation: in WAL mode a commit appends frames to the ``-wal`` file. With
``synchronous=FULL`` SQLite fsyncs that file inside ``COMMIT``, while it holds the
database's write lock, and the single writer thread waits for it: every write-ahead row
queued meanwhile (each on a request's path to its first token) waited behind that fsync,
and so did the other workers' writers, for the lock. Here the writer commits every batch
with ``synchronous=NORMAL`` and hands the batches that need durability (settlements,
checkpoints, rejections; write-ahead rows under ``write_ahead_sync = "full"``) to this
thread, which fsyncs the ``-wal`` file and then reports them durable. The writer goes on
with the next batch meanwhile. Under load the fsyncs are spaced at least ``min_interval``
apart, each covering every batch committed meanwhile, unless a task waits for one
(:meth:`WalSyncer.hurry`): a settlement nobody waits for is durable against a power loss a
few milliseconds later, and the fsyncs (with their thread wake-ups) per request fall from
about one to a fraction. The WAL is one file that only grows between checkpoints
(SQLite syncs it before each checkpoint in any mode), and an fsync covers the whole inode:
every frame committed before the fsync started, which is what ``FULL`` gives per commit.

Invariants:
    * Batches are reported durable in commit order, each only after an fsync that started
      after its ``COMMIT`` returned; a batch that needs none, after every earlier one.
    * An fsync waits for the interval only while nobody waits for a batch it would cover:
      :meth:`hurry` with a seq still queued or not yet submitted starts it at once, and the
      thread stops waiting when ``stop`` is called.
    * A failed fsync is retried with backoff, nothing reported durable before one succeeds,
      until it succeeds or the writer is abandoned.
    * The file synced is the current ``-wal``: its inode is checked before each fsync and
      the file reopened if SQLite replaced it.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Final

__all__ = ["WalSyncer"]

logger = logging.getLogger("trio_gateway.ledger")

#: Retry backoff of a failed fsync: first and largest delay (seconds).
_FIRST_BACKOFF: Final = 0.01
_MAX_BACKOFF: Final = 1.0
#: Least time from the start of one fsync to the start of the next, unless hurried.
MIN_INTERVAL: Final = 0.005


class WalSyncer:
    """One daemon thread that fsyncs ``wal_path`` for the batches :meth:`submit` hands it,
    then calls ``on_durable(last_seq)`` (on this thread; must neither block nor raise).
    Fsyncs start at least ``min_interval`` seconds apart (default :data:`MIN_INTERVAL`)
    unless :meth:`hurry` is called."""

    def __init__(
        self,
        wal_path: str,
        *,
        on_durable: Callable[[int], None],
        abandon: threading.Event,
        min_interval: float | None = None,
    ) -> None:
        self.wal_path = wal_path
        self._on_durable = on_durable
        self._abandon = abandon
        self._fd = os.open(wal_path, os.O_RDONLY | os.O_CLOEXEC)  # raises: no WAL, no syncer
        self._changed = threading.Condition()
        self._queue: deque[tuple[int, bool]] = deque()  # (last_seq, needs an fsync)
        self._busy = False  # a taken part of the queue is being synced
        self._stopping = False
        self._min_interval = MIN_INTERVAL if min_interval is None else min_interval
        self._last_sync = -math.inf  # time.monotonic() at the start of the last fsync
        self._reported = 0  # the last seq reported durable
        self._hurried = 0  # a task waits for every op up to this seq to be durable
        self._thread = threading.Thread(target=self._run, name="ledger-wal-sync", daemon=True)
        self.fsyncs = 0

    def start(self) -> None:
        self._thread.start()

    def must_wait(self, needs_sync: bool) -> bool:
        """Whether a batch just committed must go through :meth:`submit` to be durable: it
        needs an fsync, or an earlier batch is still waiting for one."""
        with self._changed:
            return needs_sync or self._busy or bool(self._queue)

    def submit(self, last_seq: int, *, needs_sync: bool) -> None:
        """Queue a committed batch, in commit order (the writer thread, or the trio thread
        for an op it committed while the writer had nothing outstanding)."""
        with self._changed:
            self._queue.append((last_seq, needs_sync))
            self._changed.notify_all()

    def hurry(self, seq: int) -> None:
        """A task waits for op ``seq`` to be durable: sync it without waiting for the
        interval (now if it is queued, else as soon as it is submitted)."""
        with self._changed:
            if seq > self._hurried:
                self._hurried = seq
                self._changed.notify_all()

    def stop(self, timeout: float) -> bool:
        """Sync what is queued (unless abandoned), then end the thread; closes the file.
        Returns whether the thread ended within ``timeout``. Idempotent."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        if self._thread.ident is not None:
            self._thread.join(timeout)
        ended = not self._thread.is_alive()
        if ended and self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        return ended

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._queue) or self._stopping)
                if not self._queue:
                    return  # stopping, nothing left
                needs_sync = any(needs for _, needs in self._queue)
                if needs_sync:
                    self._space_out()  # what queues meanwhile joins this fsync
                last_seq = self._queue[-1][0]
                self._queue.clear()
                self._busy = True
            try:
                if needs_sync and not self._sync():
                    return  # abandoned: the owner logs what is left
                self._reported = last_seq
                self._on_durable(last_seq)
            finally:
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()

    def _space_out(self) -> None:
        """Wait (holding ``_changed``) until ``min_interval`` after the last fsync began,
        while nobody is hurrying and the syncer is not stopping; more batches queue meanwhile."""
        until = self._last_sync + self._min_interval
        while not self._stopping and self._hurried <= self._reported:
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            self._changed.wait(remaining)

    def _sync(self) -> bool:
        """fsync the current WAL file, retrying failures; False if abandoned meanwhile."""
        delay = _FIRST_BACKOFF
        while True:
            try:
                self._last_sync = time.monotonic()
                if self._reopen_if_replaced():
                    os.fsync(self._fd)
                    self.fsyncs += 1
            except OSError as error:
                logger.warning("ledger: fsync of the WAL failed (%s); retrying", error)
                if self._abandon.wait(delay):
                    return False
                delay = min(delay * 2, _MAX_BACKOFF)
            else:
                return True

    def _reopen_if_replaced(self) -> bool:
        """Point the fd at the current WAL file; False if there is none (SQLite deleted it
        after a checkpoint, which synced the database file: nothing left to sync)."""
        try:
            inode = os.stat(self.wal_path).st_ino
        except FileNotFoundError:
            return False
        if inode != os.fstat(self._fd).st_ino:
            fd = os.open(self.wal_path, os.O_RDONLY | os.O_CLOEXEC)
            os.close(self._fd)
            self._fd = fd
        return True
