"""The ledger's writer: an in-memory queue the engine appends to, committed by a dedicated thread.

This implements the threading and durability rule stated in :mod:`daemon.paper.ledger` (the
producer contract: ``append`` / ``durable_seq`` / ``flush`` / ``problem`` / ``max_backlog``):

* :meth:`JournalWriter.append` (single producer, the engine's thread) only puts ``(seq, record)`` on
  a deque and returns ``seq`` (1, 2, ... in append order): the hot path never touches the disk.
* The thread commits the queue strictly in append order, in batches of at most ``batch_max``
  records, at least every ``flush_interval_s`` seconds (sooner when a batch is full or a flush is
  asked for). **One batch = one transaction** on its own :func:`~daemon.paper.ledger_schema.connect`
  connection (``synchronous=FULL``), plus one ``batches`` row, so a crash leaves whole batches only
  and the durable journal is always a prefix of the append stream. After a commit it advances
  :attr:`JournalWriter.durable_seq` and calls ``on_durable(seq)`` (from the writer thread).
* Backpressure: :attr:`JournalWriter.problem` is set while the non-durable backlog exceeds
  ``max_backlog`` records or the writer is in an error state; the risk gate pauses quoting on it,
  a replay blocks in :meth:`JournalWriter.flush` instead. Nothing here ever blocks :meth:`append`.

Errors: an ``sqlite3.Error`` (disk full, I/O error, locked) rolls the batch back, keeps it (and the
queue) in memory, sets :attr:`JournalWriter.error` / increments :attr:`JournalWriter.write_errors`,
logs ``ledger_write_failed`` once, and retries with exponential back-off (``retry_base_s`` .. 2 s);
on success the error state clears (``ledger_write_recovered``). A record the journal cannot encode
(a programming error) is dropped loudly (``ledger_bad_record``) rather than wedging the writer.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable

from daemon.paper.ledger_records import RECORD_TYPES, LedgerError, record_type, row_of
from daemon.paper.ledger_schema import INSERT_OR_IGNORE, connect, journal_row


class JournalWriter:
    """The queue and writer thread of one ledger file and run. ``flush_interval_s`` and
    ``retry_base_s`` in seconds; ``batch_max`` and ``max_backlog`` in records. Call :meth:`start`
    once, :meth:`close` at the end."""

    def __init__(
        self,
        path: str,
        run_id: str,
        *,
        batch_max: int,
        flush_interval_s: float,
        retry_base_s: float,
        max_backlog: int,
        on_durable: Callable[[int], None] | None,
        logger,
        max_page_count: int | None = None,
    ) -> None:
        self.path = path
        self.run_id = run_id
        self.batch_max = batch_max
        self.flush_interval_s = flush_interval_s
        self.retry_base_s = retry_base_s
        self.max_backlog = max_backlog
        self.on_durable = on_durable
        self.log = logger
        self._q: deque = deque()
        self._seq = 0
        #: highest seq committed (fsynced)
        self.durable_seq = 0
        #: ``None``, or the writer's current error (the risk gate and metrics read it)
        self.error: str | None = None
        self.write_errors = 0
        self.batches = 0
        self.records_written = 0
        #: test hook: ``PRAGMA max_page_count`` for the writer's connection (a "full disk")
        self.max_page_count = max_page_count
        self._stop = False
        self._give_up = False
        self._closed = False
        self._flush_req = False
        self._wake = threading.Event()
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"ledger-writer:{os.path.basename(path)}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    # -- hot path ----------------------------------------------------------------------------

    def append(self, rec) -> int:
        """Queue one record (single producer). O(1), never blocks on disk. Returns its seq.
        Raises ``TypeError`` at once for a record type the journal does not know (e.g. a raw
        ``Fill``: journal the ``BookedFill`` from ``Inventory.apply_fill``)."""
        if type(rec) not in RECORD_TYPES:
            record_type(rec)  # raises the explanatory TypeError
        self._seq = s = self._seq + 1
        self._q.append((s, rec))
        if len(self._q) >= self.batch_max:
            self._wake.set()
        return s

    @property
    def appended_seq(self) -> int:
        return self._seq

    @property
    def backlog(self) -> int:
        """Records appended but not yet durable."""
        return self._seq - self.durable_seq

    @property
    def healthy(self) -> bool:
        return self.error is None

    @property
    def problem(self) -> str | None:
        """``None`` when healthy; else why quoting should pause: the writer's error, or a backlog of
        non-durable records above ``max_backlog`` (pass it to ``RiskGate.check(ledger_error=...)``:
        no new fills while the not-yet-durable window exceeds its bound)."""
        if self.error is not None:
            return self.error
        b = self._seq - self.durable_seq
        if b > self.max_backlog:
            return f"ledger backlog {b} records > {self.max_backlog}"
        return None

    # -- durability ----------------------------------------------------------------------------

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Block until every record appended so far is committed (``timeout`` in s, ``None`` = no
        limit). False on timeout (e.g. the writer is in an error state: the records stay queued and
        are retried) or when the writer thread is gone."""
        target = self._seq
        if self.durable_seq >= target:
            return True
        self._flush_req = True
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self.durable_seq < target:
                if not self._thread.is_alive():
                    return False
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(0.05 if left is None else min(left, 0.05))
        return True

    def close(self, timeout: float = 30.0) -> bool:
        """Drain and commit the queue (waiting up to ``timeout`` s), then stop the thread. False if
        records were left uncommitted (writer in error state past ``timeout``)."""
        if self._closed:
            return True
        ok = self.flush(timeout)
        self._give_up = not ok
        self._stop = True
        self._wake.set()
        self._thread.join(timeout=5.0)
        self._closed = True
        return ok

    # -- writer thread -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            conn = connect(self.path)
        except (sqlite3.Error, LedgerError) as e:
            self.error = f"writer cannot open: {e}"
            self.write_errors += 1
            self.log.error("ledger_writer_open_failed", error=str(e))
            return
        applied_mpc = None
        inflight: list = []
        backoff = self.retry_base_s
        run_id = self.run_id
        q = self._q
        while True:
            if not inflight:
                if len(q) < self.batch_max and not self._flush_req and not self._stop:
                    self._wake.wait(self.flush_interval_s)
                    self._wake.clear()
                n = min(len(q), self.batch_max)
                for _ in range(n):
                    inflight.append(q.popleft())
                if not inflight:
                    self._flush_req = False
                    if self._stop:
                        break
                    continue
            if self.max_page_count != applied_mpc and self.max_page_count is not None:
                try:
                    conn.execute(f"PRAGMA max_page_count = {int(self.max_page_count)}")
                    applied_mpc = self.max_page_count
                except sqlite3.Error:
                    pass
            try:
                rows = [journal_row(run_id, rec) for _, rec in inflight]
            except TypeError as e:
                # a programming error: drop the offending records loudly rather than wedge the writer
                self.error = f"unjournallable record: {e}"
                self.write_errors += 1
                self.log.error("ledger_bad_record", error=str(e))
                good = []
                for s, rec in inflight:
                    try:
                        row_of(rec)
                        good.append((s, rec))
                    except TypeError:
                        pass
                inflight = good
                continue
            try:
                conn.execute("BEGIN IMMEDIATE")
                before = conn.total_changes
                conn.executemany(INSERT_OR_IGNORE, rows)
                inserted = conn.total_changes - before
                conn.execute(
                    "INSERT INTO batches(run_id, first_append, last_append, n_records, n_inserted) VALUES (?,?,?,?,?)",
                    (run_id, inflight[0][0], inflight[-1][0], len(rows), inserted),
                )
                conn.execute("COMMIT")
            except sqlite3.Error as e:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                self.write_errors += 1
                if self.error is None:
                    self.log.error("ledger_write_failed", error=str(e), queued=len(q) + len(inflight))
                self.error = f"{type(e).__name__}: {e}"
                if self._stop and self._give_up:
                    break
                self._wake.wait(backoff)
                self._wake.clear()
                backoff = min(backoff * 2, 2.0)
                continue
            if self.error is not None:
                self.log.info("ledger_write_recovered", after_errors=self.write_errors)
            self.error = None
            backoff = self.retry_base_s
            self.batches += 1
            self.records_written += inserted
            last = inflight[-1][0]
            inflight = []
            with self._cond:
                self.durable_seq = last
                self._cond.notify_all()
            cb = self.on_durable
            if cb is not None:
                try:
                    cb(last)
                except Exception as e:  # a callback bug must not kill the writer
                    self.log.error("ledger_on_durable_failed", error=str(e))
        conn.close()
