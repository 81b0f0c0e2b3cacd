"""Durable paper ledger: an append-only SQLite (WAL) journal written by a dedicated thread.

What is stored
--------------
One table ``journal`` holds every record, append-only, in commit order (``seq``): order life-cycle
events, fills (:class:`~daemon.paper.inventory.BookedFill`), funding, markouts, periodic marks, risk
events, resume requests and the instruments of the run. Each row has a record id that is unique per
run (``UNIQUE(run_id, rec_id)``); rows are written with ``INSERT OR IGNORE``, so applying the same
record twice is impossible. Bodies are msgpack-encoded msgspec structs (exact floats, NaN kept).

Positions, cash, average entry, realized/unrealized PnL are **derived**: :meth:`Ledger.restore` folds
the run's journal (instruments, fills, funding, marks, risk/resume records) through
:class:`~daemon.paper.inventory.Inventory`, whose fold also ignores duplicate ids. No mutable
"positions" table exists, so a restart cannot disagree with the journal.

Modules
-------
This module is the facade: :class:`Ledger` composes the parts below, and their public names are
re-exported here (``from daemon.paper.ledger import ...`` is the import for users). The parts:

* :mod:`daemon.paper.ledger_records`: the record types, their registry keyed by class (``kind``,
  record id) and the msgpack body encoding/decoding.
* :mod:`daemon.paper.ledger_schema`: the SQLite file: validation, schema and migrations,
  connections (WAL, ``synchronous=FULL``), opening a run (sessions, starts, instrument records),
  read-only opening and ``mmd resume``'s write.
* :mod:`daemon.paper.ledger_writer`: the append queue and the writer thread (batches, durability,
  backlog, error state and retries).
* :mod:`daemon.paper.ledger_restore`: reading a run back: the restore fold, resume polling, records,
  the last position marker and the journal digest.

Runs and sessions
-----------------
``run_id`` names one position book (``sessions`` table, with ``mode`` ``live`` or ``replay``): many
runs can share one ledger file. Opening an existing run *continues* it (a live daemon restarted with
the same run id keeps its positions; a crashed replay re-run with the same run id continues its
journal); every process start is recorded in ``starts``.

Interrupted replays: all ids are deterministic (venue counters, trade ids, event times) and the
writer commits strictly in append order, so the durable journal is always a *prefix* of the record
stream. A replay restarted from the beginning of its recording with the same run id and *fresh*
venue/inventory/gate state (not seeded from :meth:`Ledger.restore`, which would shift the order
counters) regenerates the same records: those already committed are ignored by id, the rest are appended, and the final journal
(:meth:`Ledger.journal_digest`) equals that of an uninterrupted run. :meth:`Ledger.last_position_marker`
returns the last durable event position (``Mark.pos``) if the engine wants to skip work.

Threading and the durability rule
---------------------------------
The engine (single producer) calls :meth:`Ledger.append`, which only puts ``(seq, record)`` on an
in-memory deque: the hot path never touches the disk. The writer thread commits the queue in batches
of at most ``batch_max`` records, at least every ``flush_interval_ms``; **one batch = one
transaction**, so a crash leaves whole batches only. After a commit it advances
:attr:`Ledger.durable_seq` and calls ``on_durable(seq)``.

*Durability rule*: the effects of a record (e.g. a fill the engine acted on) may be reported as
durable only once ``durable_seq >= seq`` of that record (or after :meth:`Ledger.flush` returned
True). Records not yet committed are the only ones a power failure or a SIGKILL can lose; nothing
committed is lost. In steady state that is the current batch: the records appended during the last
``flush_interval_ms`` (at most ``batch_max`` per transaction). The bound is enforced, not hoped for:
when the non-durable backlog exceeds ``max_backlog`` records (default ``8 * batch_max``) or the
writer is in an error state, :attr:`Ledger.problem` is set and the risk gate pauses quoting (no new
fills) until the writer catches up -- the hot path itself never waits. A *replay* must not feed
``problem`` to the gate (timing would then change the results): it may simply block in
:meth:`Ledger.flush` whenever ``backlog > max_backlog``. ``on_durable`` is called from
the writer thread (use ``loop.call_soon_threadsafe`` to hand it to asyncio).

``synchronous=FULL`` (not ``NORMAL``): in WAL mode ``NORMAL`` does not fsync the WAL at commit, so a
power failure may roll back *every* transaction since the last checkpoint (up to
``wal_autocheckpoint`` pages: many batches), which breaks the "at most the last batch" bound. ``FULL``
fsyncs the WAL at each commit; batching keeps that to at most ``1000 / flush_interval_ms`` fsyncs per
second under light load and ``rate / batch_max`` under heavy load (see ``bench/bench_ledger.py``).

Errors
------
At open, a file that is not SQLite, a corrupted SQLite file (``PRAGMA quick_check``), a SQLite file of
another application (foreign ``application_id`` or foreign tables) or of a newer schema is refused
with :class:`LedgerError` (one line) and is never modified: validation happens on a read-only
connection before anything is written. Schema: ``PRAGMA application_id`` = :data:`APPLICATION_ID`,
``PRAGMA user_version`` = schema version, upgraded by :data:`MIGRATIONS`.

In the writer, an ``sqlite3.Error`` (disk full, I/O error, locked) rolls the batch back, keeps it (and
the queue) in memory, sets :attr:`Ledger.error` / increments :attr:`Ledger.write_errors` (the risk gate
and metrics read them), logs, and retries with exponential back-off (``retry_base_ms`` .. 2 s). On
success the error state clears.

Engine API
----------
::

    led = Ledger.open(path, run_id, mode="replay", meta={...}, instruments={sym: Instrument},
                      batch_max=cfg.batch_max, flush_interval_ms=cfg.flush_interval_ms)
    st = led.restore()                 # RestoredState (durable rows only: call it right after open):
                                       #   st.inventory (Inventory), st.next_order_n[sym], st.risk_tripped,
                                       #   st.risk_reason, st.risk_since_ms, st.last_pos
    paper_venue(cfg.venue, ins, next_order_n=st.next_order_n.get(sym, 1))   # daemon/runtime: the
                                       #   account st.inventory is the one owner of position
    seq = led.append(record)           # hot path: a deque append; returns the record's seq. Records:
                                       #   BookedFill (from Inventory.apply_fill), OrderEvent, Funding,
                                       #   Markout, Mark, RiskEvent
    led.durable_seq                    # highest seq committed (fsynced)
    led.problem                        # None, or why quoting should pause (live: RiskGate ledger_error)
    led.flush(timeout=5.0) -> bool     # wait until everything appended so far is durable
    led.poll_resumes() -> list         # ResumeRequest rows written by `mmd resume` since last poll
    led.last_position_marker()         # last durable Mark.pos of this run (or None)
    led.journal_digest()               # equality of two runs' journals
    led.close()                        # drains the queue, commits, stops the writer

A restored inventory's equity peak / max drawdown is folded from marks and fills only (sampled at
``mark_interval_ms``), and markouts of fills younger than 30 s at a crash are not produced again by a
*live* restart (a replay re-run regenerates them). Instrument rules are journalled once per run
(``instrument:{symbol}``); a later change of a symbol's rules within the same run is not recorded.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from daemon.core.instrument import Instrument
from daemon.paper import ledger_restore
from daemon.paper.ledger_records import KIND_TYPES, InstrumentRecord, LedgerError, QuoteAudit, ResumeRequest, decode
from daemon.paper.ledger_restore import ResumeCursor, RestoredState, fold_rows, journal_digest
from daemon.paper.ledger_schema import (
    APPLICATION_ID,
    MIGRATIONS,
    SCHEMA_VERSION,
    open_readonly,
    open_run,
    validate_file,
    write_resume,
)
from daemon.paper.ledger_writer import JournalWriter

__all__ = [
    "APPLICATION_ID",
    "KIND_TYPES",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "InstrumentRecord",
    "Ledger",
    "LedgerError",
    "QuoteAudit",
    "RestoredState",
    "ResumeRequest",
    "decode",
    "fold_rows",
    "journal_digest",
    "open_readonly",
    "validate_file",
    "write_resume",
]


def _writer_state(name: str, doc: str, settable: bool = False) -> property:
    """A property of :class:`Ledger` reading (and, if ``settable``, setting) the writer's ``name``."""

    def get(self: "Ledger"):
        return getattr(self._writer, name)

    def set_(self: "Ledger", value) -> None:
        setattr(self._writer, name, value)

    return property(get, set_ if settable else None, doc=doc)


class Ledger:
    """See the module docstring. Build with :meth:`Ledger.open`: a reader connection (caller
    thread, durable rows only) plus a :class:`~daemon.paper.ledger_writer.JournalWriter` (the append
    queue and its thread), whose state is read through the properties below."""

    _conn: sqlite3.Connection  # reader connection (caller thread)
    _resumes: ResumeCursor
    _writer: JournalWriter

    def __init__(self) -> None:  # use Ledger.open
        self.path = ""
        self.run_id = ""
        self.mode = ""

    @classmethod
    def open(
        cls,
        path: str,
        run_id: str,
        mode: str = "live",
        *,
        meta: dict | None = None,
        instruments: dict[str, Instrument] | None = None,
        batch_max: int = 512,
        flush_interval_ms: int = 50,
        on_durable: Callable[[int], None] | None = None,
        retry_base_ms: int = 50,
        max_backlog: int | None = None,
        logger=None,
        _max_page_count: int | None = None,
    ) -> "Ledger":
        """Validate (read-only) then open or create the ledger at ``path`` and start the writer.
        Raises :class:`LedgerError` for an unusable file, or a run id that exists with another mode."""
        if mode not in ("live", "replay"):
            raise LedgerError(f"ledger mode {mode!r}: allowed live, replay")
        if batch_max < 1 or flush_interval_ms < 1:
            raise LedgerError("batch_max and flush_interval_ms must be >= 1")
        validate_file(path)
        self = cls()
        self.path = path
        self.run_id = run_id
        self.mode = mode
        if logger is None:
            from daemon.logging import get_logger

            logger = get_logger("ledger")
        self.log = logger
        self._conn = open_run(path, run_id, mode, meta, instruments)
        self._resumes = ResumeCursor(self._conn, run_id)
        self._writer = JournalWriter(
            path,
            run_id,
            batch_max=batch_max,
            flush_interval_s=flush_interval_ms / 1000.0,
            retry_base_s=retry_base_ms / 1000.0,
            max_backlog=max_backlog if max_backlog is not None else 8 * batch_max,
            on_durable=on_durable,
            logger=logger,
            max_page_count=_max_page_count,
        )
        self._writer.start()
        return self

    # -- hot path and writer state (see daemon.paper.ledger_writer) --------------------------------

    def append(self, rec) -> int:
        """Queue one record (single producer). O(1), never blocks on disk. Returns its seq.
        Raises ``TypeError`` at once for a record type the journal does not know (e.g. a raw
        ``Fill``: journal the ``BookedFill`` from ``Inventory.apply_fill``)."""
        return self._writer.append(rec)

    appended_seq = _writer_state("appended_seq", "Seq of the last record appended.")
    durable_seq = _writer_state("durable_seq", "Highest seq committed (fsynced).")
    backlog = _writer_state("backlog", "Records appended but not yet durable.")
    max_backlog = _writer_state("max_backlog", "The bound on ``backlog`` (records) above which ``problem`` is set.")
    batch_max = _writer_state("batch_max", "Most records per writer transaction.")
    error = _writer_state("error", "The writer's error (``None`` = healthy; the risk gate and metrics read it).")
    write_errors = _writer_state("write_errors", "Failed writer opens/commits and dropped bad records so far.")
    batches = _writer_state("batches", "Transactions committed so far.")
    records_written = _writer_state("records_written", "Records inserted so far (duplicate ids not counted).")
    healthy = _writer_state("healthy", "The writer is not in an error state.")
    problem = _writer_state(
        "problem",
        """``None`` when healthy; else why quoting should pause: the writer's error, or a backlog of
        non-durable records above ``max_backlog`` (pass it to ``RiskGate.check(ledger_error=...)``:
        no new fills while the not-yet-durable window exceeds its bound).""",
    )
    _max_page_count = _writer_state("max_page_count", "Test hook (settable): the writer connection's "
                                    "``PRAGMA max_page_count``, a full disk.", settable=True)

    # -- durability ----------------------------------------------------------------------------

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Block until every record appended so far is committed. False on timeout (e.g. the
        writer is in an error state: the records stay queued and are retried)."""
        return self._writer.flush(timeout)

    def close(self, timeout: float = 30.0) -> bool:
        """Drain and commit the queue, stop the writer, close. False if records were left
        uncommitted (writer in error state past ``timeout``)."""
        ok = self._writer.close(timeout)
        try:
            self._conn.close()
        except sqlite3.Error:
            pass
        return ok

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reads (caller thread, durable rows only; see daemon.paper.ledger_restore) ---------------

    def restore(self, run_id: str | None = None) -> RestoredState:
        """Fold the durable journal of ``run_id`` (default: this run) into positions, PnL, order
        counters, risk state and the last event position marker."""
        return ledger_restore.restore(self._conn, run_id or self.run_id)

    def last_position_marker(self, run_id: str | None = None) -> int | None:
        """Highest durable event position (``Mark.pos``) of the run, or ``None``."""
        return ledger_restore.last_position_marker(self._conn, run_id or self.run_id)

    def poll_resumes(self) -> list[ResumeRequest]:
        """Resume requests (for this run or ``*``) committed since the last poll or the open."""
        return self._resumes.poll()

    def records(self, kind: str | None = None, run_id: str | None = None) -> list:
        """Decoded durable records of the run (optionally of one kind), in journal order."""
        return ledger_restore.read_records(self._conn, run_id or self.run_id, kind)

    def journal_digest(self, run_id: str | None = None) -> str:
        """SHA-256 of the run's journal content in order (ids, kinds, times, bodies; not the
        wall-clock session rows): equal digests = equal ledgers."""
        return journal_digest(self._conn, run_id or self.run_id)
