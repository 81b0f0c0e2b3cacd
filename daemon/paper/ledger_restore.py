"""Reading a run back from the durable journal: the restore fold, resume polling and plain reads.

Positions, cash, average entry, realized/unrealized PnL are **derived**: :func:`restore` folds the
run's committed journal rows (instruments, fills, funding, marks, orders, risk and resume records)
through :class:`~daemon.paper.inventory.Inventory`, whose fold also ignores duplicate ids. No
mutable "positions" table exists, so a restart cannot disagree with the journal. Each record is
folded by the handler registered for its class in :data:`_FOLDS` (dispatch by type, not by name).

Everything here reads durable (committed) rows only, on the caller's connection.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from daemon.core.instrument import Instrument
from daemon.risk import RiskEvent
from daemon.paper.inventory import BookedFill, Funding, Inventory, Mark
from daemon.paper.ledger_records import RECORD_TYPES, InstrumentRecord, LedgerError, ResumeRequest, decode
from daemon.execution.protocol import OrderEvent


@dataclass
class RestoredState:
    """What a restart needs, folded from the journal of one run. Times are exchange ms."""

    run_id: str
    inventory: Inventory
    instruments: dict[str, Instrument]
    #: next order counter per symbol (continue ids after the highest journalled order)
    next_order_n: dict[str, int] = field(default_factory=dict)
    last_pos: int | None = None
    last_ts_ms: int = 0
    risk_tripped: bool = False
    risk_reason: str = ""
    risk_since_ms: int = 0
    records: int = 0
    last_seq: int = 0


def _fold_instrument(st: RestoredState, rec: InstrumentRecord) -> None:
    ins = rec.instrument()
    st.instruments[rec.symbol] = ins
    st.inventory.add_instrument(ins)


def _fold_fill(st: RestoredState, rec: BookedFill) -> None:
    st.inventory.apply_fill(rec)


def _fold_funding(st: RestoredState, rec: Funding) -> None:
    st.inventory.apply_funding(rec)


def _fold_mark(st: RestoredState, rec: Mark) -> None:
    if rec.mid == rec.mid:
        st.inventory.on_mid(rec.symbol, rec.ts_ms, rec.mid)
    if rec.pos >= 0:
        st.last_pos = rec.pos if st.last_pos is None else max(st.last_pos, rec.pos)


def _fold_order(st: RestoredState, rec: OrderEvent) -> None:
    n = _order_n(rec.order_id)
    if n is not None and n + 1 > st.next_order_n.get(rec.symbol, 1):
        st.next_order_n[rec.symbol] = n + 1


def _fold_risk(st: RestoredState, rec: RiskEvent) -> None:
    if rec.kind == "trip":
        st.risk_tripped, st.risk_reason, st.risk_since_ms = True, rec.detail, rec.ts_ms
    elif rec.kind == "resume":
        st.risk_tripped, st.risk_reason = False, ""


def _fold_resume(st: RestoredState, rec: ResumeRequest) -> None:
    if rec.run_id in ("*", st.run_id):
        st.risk_tripped, st.risk_reason = False, ""


#: record class -> how it changes the restored state (other classes only count as records)
_FOLDS: dict[type, Callable[[RestoredState, Any], None]] = {
    InstrumentRecord: _fold_instrument,
    BookedFill: _fold_fill,
    Funding: _fold_funding,
    Mark: _fold_mark,
    OrderEvent: _fold_order,
    RiskEvent: _fold_risk,
    ResumeRequest: _fold_resume,
}
#: record classes that need their symbol's instrument record earlier in the journal
_NEED_INSTRUMENT = frozenset({BookedFill, Funding, Mark})

_RESUME_KIND = RECORD_TYPES[ResumeRequest].kind
# the run's rows of every folded kind, plus resume requests addressed to the run or to every run
_RESTORE_SQL = (
    "SELECT seq, kind, body FROM journal WHERE (run_id = ? AND kind IN ("
    + ",".join(f"'{RECORD_TYPES[t].kind}'" for t in _FOLDS if t is not ResumeRequest)
    + f")) OR (kind = '{_RESUME_KIND}' AND run_id IN (?, '*')) ORDER BY seq"
)


def fold_rows(run_id: str, rows, horizons_ms=None) -> RestoredState:
    """Fold journal rows ``(seq, kind, body)`` (in seq order) of one run into a :class:`RestoredState`."""
    instruments: dict[str, Instrument] = {}
    inv = Inventory({}, **({"horizons_ms": horizons_ms} if horizons_ms else {}))
    st = RestoredState(run_id, inv, instruments)
    for seq, kind, body in rows:
        st.records += 1
        st.last_seq = seq
        rec = decode(kind, body, seq)
        t = type(rec)
        if t in _NEED_INSTRUMENT and rec.symbol not in instruments:
            raise LedgerError(f"journal row {seq}: {kind} for {rec.symbol} before any instrument record of it")
        fold = _FOLDS.get(t)
        if fold is not None:
            fold(st, rec)
        ts = getattr(rec, "ts_ms", 0)
        if ts > st.last_ts_ms:
            st.last_ts_ms = ts
    return st


def _order_n(order_id: str) -> int | None:
    i = order_id.rfind("-")
    try:
        return int(order_id[i + 1 :])
    except ValueError:
        return None


def restore(conn: sqlite3.Connection, run_id: str) -> RestoredState:
    """Fold the durable journal of ``run_id`` into positions, PnL, order counters, risk state and the
    last event position marker."""
    return fold_rows(run_id, conn.execute(_RESTORE_SQL, (run_id, run_id)))


class ResumeCursor:
    """Delivers each :class:`ResumeRequest` for ``run_id`` (or ``*``) committed after the cursor was
    made, once."""

    def __init__(self, conn: sqlite3.Connection, run_id: str) -> None:
        self._conn = conn
        self.run_id = run_id
        self._seq = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM journal").fetchone()[0]

    def poll(self) -> list[ResumeRequest]:
        """Resume requests committed since the last poll (or since the cursor was made)."""
        rows = self._conn.execute(
            "SELECT seq, body FROM journal WHERE kind = ? AND seq > ? AND run_id IN (?, '*') ORDER BY seq",
            (_RESUME_KIND, self._seq, self.run_id),
        ).fetchall()
        if rows:
            self._seq = rows[-1][0]
        return [decode(_RESUME_KIND, b) for _, b in rows]


def last_position_marker(conn: sqlite3.Connection, run_id: str) -> int | None:
    """Highest durable event position (``Mark.pos``) of the run, or ``None``."""
    return conn.execute("SELECT MAX(pos) FROM journal WHERE run_id = ? AND pos IS NOT NULL", (run_id,)).fetchone()[0]


def read_records(conn: sqlite3.Connection, run_id: str, kind: str | None = None) -> list:
    """Decoded durable records of the run (optionally of one journal ``kind``), in journal order."""
    if kind is None:
        cur = conn.execute("SELECT kind, body FROM journal WHERE run_id = ? ORDER BY seq", (run_id,))
    else:
        cur = conn.execute("SELECT kind, body FROM journal WHERE run_id = ? AND kind = ? ORDER BY seq", (run_id, kind))
    return [decode(k, b) for k, b in cur]


def journal_digest(conn: sqlite3.Connection, run_id: str) -> str:
    """SHA-256 of the run's journal content in order (ids, kinds, times, bodies; not the
    wall-clock session rows): equal digests = equal ledgers."""
    h = hashlib.sha256()
    for rid, kind, sym, ts, pos, body in conn.execute(
        "SELECT rec_id, kind, symbol, ts_ms, pos, body FROM journal WHERE run_id = ? ORDER BY seq", (run_id,)
    ):
        h.update(f"{rid}\x1f{kind}\x1f{sym}\x1f{ts}\x1f{pos}\x1f".encode())
        h.update(body)
        h.update(b"\x1e")
    return h.hexdigest()
